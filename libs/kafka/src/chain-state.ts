import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChainHead, SigningKey, generateSigningKey, signingKeyFromPem, signingKeyToPem } from '@rebootless/events';

/** Records sent but not yet known to be in the log (the write-ahead part of the state). */
export interface PendingBatch {
  /** When the batch was handed to Kafka (ms); bounds the read that settles it after a crash. */
  at: number;
  /** When the newest of them was handed over, if several batches were under way. */
  lastAt?: number;
  /** The head before the batch, to withdraw it when none of it reached the log. */
  before: { seq: number; hash: string };
  records: { seq: number; key: string; value: Buffer }[];
}

/** The JSON head of the state file; pending record values follow it as raw bytes. */
interface StoredChain {
  version: 1;
  producerId: string;
  epoch: number;
  seq: number;
  hash: string;
  pending?: Omit<PendingBatch, 'records'> & { records: { seq: number; key: string; bytes: number }[] };
}

/**
 * A producer's chain state and signing key in its data directory. Written atomically
 * (temp file, fsync, rename) so a crash leaves either the old state or the new one.
 * Layout: a 4-byte big-endian length, that many bytes of JSON (StoredChain), then the values
 * of the pending records back to back (binary, so writing ahead costs no encoding).
 */
export class ChainStateFile {
  readonly statePath: string;
  readonly keyPath: string;

  constructor(
    readonly dir: string,
    readonly producerId: string,
  ) {
    const safe = producerId.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.statePath = path.join(dir, `chain-${safe}.state`);
    this.keyPath = path.join(dir, `chain-${safe}.key`);
  }

  /** The signing key, created on first use. `created` tells a new key from a kept one. */
  loadOrCreateKey(): { key: SigningKey; created: boolean } {
    fs.mkdirSync(this.dir, { recursive: true });
    if (fs.existsSync(this.keyPath)) {
      return { key: signingKeyFromPem(fs.readFileSync(this.keyPath, 'utf8')), created: false };
    }
    const key = generateSigningKey();
    writeAtomic(this.keyPath, signingKeyToPem(key), 0o600);
    return { key, created: true };
  }

  load(): { head: ChainHead; pending?: PendingBatch } | undefined {
    let raw: Buffer;
    try {
      raw = fs.readFileSync(this.statePath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const broken = (why: string) =>
      new Error(`chain state ${this.statePath} is unreadable (${why}); move it away to start a new epoch`);
    const headLen = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
    if (headLen < 0 || 4 + headLen > raw.length) throw broken('truncated');
    let s: StoredChain;
    try {
      s = JSON.parse(raw.toString('utf8', 4, 4 + headLen)) as StoredChain;
    } catch (err) {
      throw broken((err as Error).message);
    }
    if (s.version !== 1 || s.producerId !== this.producerId || !Number.isInteger(s.epoch) || !Number.isInteger(s.seq)) {
      throw new Error(`chain state ${this.statePath} does not belong to producer ${this.producerId} or has an unknown format`);
    }
    const head = { producerId: s.producerId, epoch: s.epoch, seq: s.seq, hash: Buffer.from(s.hash, 'hex') };
    if (!s.pending) return { head };
    let at = 4 + headLen;
    const records = s.pending.records.map((r) => {
      const value = raw.subarray(at, at + r.bytes);
      at += r.bytes;
      if (value.length !== r.bytes) throw broken('pending records truncated');
      return { seq: r.seq, key: r.key, value };
    });
    return { head, pending: { ...s.pending, records } };
  }

  save(head: ChainHead, pending?: PendingBatch): void {
    const s: StoredChain = { version: 1, producerId: head.producerId, epoch: head.epoch, seq: head.seq, hash: head.hash.toString('hex') };
    if (pending) {
      s.pending = { ...pending, records: pending.records.map((r) => ({ seq: r.seq, key: r.key, bytes: r.value.length })) };
    }
    const json = Buffer.from(JSON.stringify(s));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    writeAtomic(this.statePath, [len, json, ...(pending?.records.map((r) => r.value) ?? [])], 0o600);
  }
}

function writeAtomic(file: string, data: string | Buffer[], mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    if (typeof data === 'string') fs.writeSync(fd, data);
    else fs.writevSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dirFd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}
