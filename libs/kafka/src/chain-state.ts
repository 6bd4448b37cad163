import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChainHead, SigningKey, generateSigningKey, signingKeyFromPem, signingKeyToPem } from '@rebootless/events';

/** Records sent but not yet known to be in the log (the write-ahead part of the state). */
export interface PendingBatch {
  /** When the batch was handed to Kafka (ms); bounds the read that settles it after a crash. */
  at: number;
  /** The head before the batch, to withdraw it when none of it reached the log. */
  before: { seq: number; hash: string };
  records: { seq: number; key: string; value: string }[];
}

interface StoredChain {
  version: 1;
  producerId: string;
  epoch: number;
  seq: number;
  hash: string;
  pending?: PendingBatch;
}

/**
 * A producer's chain state and signing key in its data directory. Written atomically
 * (temp file, fsync, rename) so a crash leaves either the old state or the new one.
 */
export class ChainStateFile {
  readonly statePath: string;
  readonly keyPath: string;

  constructor(
    readonly dir: string,
    readonly producerId: string,
  ) {
    const safe = producerId.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.statePath = path.join(dir, `chain-${safe}.json`);
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
    let text: string;
    try {
      text = fs.readFileSync(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let s: StoredChain;
    try {
      s = JSON.parse(text) as StoredChain;
    } catch (err) {
      throw new Error(`chain state ${this.statePath} is not valid JSON (${(err as Error).message}); move it away to start a new epoch`);
    }
    if (s.version !== 1 || s.producerId !== this.producerId || !Number.isInteger(s.epoch) || !Number.isInteger(s.seq)) {
      throw new Error(`chain state ${this.statePath} does not belong to producer ${this.producerId} or has an unknown format`);
    }
    return {
      head: { producerId: s.producerId, epoch: s.epoch, seq: s.seq, hash: Buffer.from(s.hash, 'hex') },
      ...(s.pending ? { pending: s.pending } : {}),
    };
  }

  save(head: ChainHead, pending?: PendingBatch): void {
    const s: StoredChain = { version: 1, producerId: head.producerId, epoch: head.epoch, seq: head.seq, hash: head.hash.toString('hex') };
    if (pending) s.pending = pending;
    writeAtomic(this.statePath, JSON.stringify(s), 0o600);
  }
}

function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, data);
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
