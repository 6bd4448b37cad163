import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  ChainHead,
  EnvelopeView,
  SigningKey,
  generateSigningKey,
  readEnvelope,
  signingKeyFromPem,
  signingKeyToPem,
} from '@rebootless/events';

/** Records sent but not yet known to be in the log (the write-ahead part of the state). */
export interface PendingBatch {
  /** When the batch was handed to Kafka (ms); bounds the read that settles it after a crash. */
  at: number;
  /** When the newest of them was handed over, if several batches were under way. */
  lastAt?: number;
  /** The head before the batch, to withdraw it when none of it reached the log. */
  before: { seq: number; hash: string };
  /** Encoded envelopes; each one's Kafka key is its event's stream. */
  records: { seq: number; key: string; value: Buffer }[];
}

/** The JSON head of the state file; pending record values follow it as raw bytes. */
interface StoredChain {
  version: 1 | 2;
  producerId: string;
  epoch: number;
  seq: number;
  hash: string;
  pending?: Omit<PendingBatch, 'records'> & {
    /** Version 2: the size of each record value; its seq and key are read from the envelope. */
    sizes?: number[];
    /** Version 1 (still read): each record's seq, key and size. */
    records?: { seq: number; key: string; bytes: number }[];
  };
}

/**
 * A producer's chain state and signing key in its data directory. Written atomically
 * (temp file, fsync, rename) so a crash leaves either the old state or the new one.
 * Layout: a 4-byte big-endian length, that many bytes of JSON (StoredChain), then the values
 * of the pending records back to back (binary, so writing ahead costs no encoding).
 */
function unreadable(file: string): (why: string) => Error {
  return (why) => new Error(`chain state ${file} is unreadable (${why}); move it away to start a new epoch`);
}

/** The JSON head of a state file and its length. */
function readStoredHead(raw: Buffer, file: string): { s: StoredChain; headLen: number } {
  const headLen = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (headLen < 0 || 4 + headLen > raw.length) throw unreadable(file)('truncated');
  try {
    return { s: JSON.parse(raw.toString('utf8', 4, 4 + headLen)) as StoredChain, headLen };
  } catch (err) {
    throw unreadable(file)((err as Error).message);
  }
}

export class ChainStateFile {
  readonly statePath: string;
  readonly keyPath: string;
  /** saveAsync() writes not yet done; save() must not race them for the file. */
  private writesUnderWay = 0;

  constructor(
    readonly dir: string,
    readonly producerId: string,
  ) {
    const safe = producerId.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.statePath = path.join(dir, `chain-${safe}.state`);
    this.keyPath = path.join(dir, `chain-${safe}.key`);
  }

  /** The chains kept in a data dir, one per producer that wrote from it. */
  static producersIn(dir: string): ChainStateFile[] {
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .filter((f) => /^chain-.*\.state$/.test(f))
      .map((f) => {
        const file = path.join(dir, f);
        return new ChainStateFile(dir, readStoredHead(fs.readFileSync(file), file).s.producerId);
      });
  }

  /** The signing key kept beside the state; throws when there is none. */
  readKey(): SigningKey {
    return signingKeyFromPem(fs.readFileSync(this.keyPath, 'utf8'));
  }

  /** The signing key, created on first use. `created` tells a new key from a kept one. */
  loadOrCreateKey(): { key: SigningKey; created: boolean } {
    fs.mkdirSync(this.dir, { recursive: true });
    if (fs.existsSync(this.keyPath)) return { key: this.readKey(), created: false };
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
    const broken = unreadable(this.statePath);
    const { s, headLen } = readStoredHead(raw, this.statePath);
    if (
      ![1, 2].includes(s.version) ||
      s.producerId !== this.producerId ||
      !Number.isInteger(s.epoch) ||
      !Number.isInteger(s.seq)
    ) {
      throw new Error(
        `chain state ${this.statePath} does not belong to producer ${this.producerId} or has an unknown format`,
      );
    }
    const head = { producerId: s.producerId, epoch: s.epoch, seq: s.seq, hash: Buffer.from(s.hash, 'hex') };
    if (!s.pending) return { head };
    const { sizes, records: stored, ...batch } = s.pending;
    let at = 4 + headLen;
    const next = (size: number): Buffer => {
      const value = raw.subarray(at, at + size);
      at += size;
      if (value.length !== size) throw broken('pending records truncated');
      return value;
    };
    const records =
      s.version === 1
        ? (stored ?? []).map((r) => ({ seq: r.seq, key: r.key, value: next(r.bytes) }))
        : (sizes ?? []).map((size) => {
            const value = next(size);
            let envelope: EnvelopeView;
            try {
              envelope = readEnvelope(value);
            } catch (err) {
              throw broken(`a pending record is not an envelope: ${(err as Error).message}`);
            }
            return { seq: envelope.seq, key: envelope.stream, value };
          });
    return { head, pending: { ...batch, records } };
  }

  save(head: ChainHead, pending?: PendingBatch): void {
    if (this.writesUnderWay > 0)
      throw new Error(`chain state ${this.statePath}: save() while saveAsync() writes are under way`);
    writeAtomic(this.statePath, encodeState(head, pending), 0o600);
  }

  /**
   * Saves as save() does, taking the state as it is now, but writes and syncs the file on a
   * worker thread, so the caller's thread keeps working while the disk syncs. Writes happen one
   * at a time in call order: the file always ends up with the latest state.
   */
  saveAsync(head: ChainHead, pending?: PendingBatch): Promise<void> {
    const data = encodeState(head, pending);
    this.writesUnderWay += 1;
    const done = () => void (this.writesUnderWay -= 1);
    const written = StateWriter.get().write(this.statePath, data, 0o600);
    written.then(done, done);
    return written;
  }
}

function encodeState(head: ChainHead, pending?: PendingBatch): Buffer[] {
  const s: StoredChain = {
    version: 2,
    producerId: head.producerId,
    epoch: head.epoch,
    seq: head.seq,
    hash: head.hash.toString('hex'),
  };
  if (pending) {
    // Sizes only: every record's seq and key are in its envelope, and a list of numbers costs
    // a tenth of a list of objects to write, which is done before every send.
    const { records, ...batch } = pending;
    s.pending = { ...batch, sizes: records.map((r) => r.value.length) };
  }
  const json = Buffer.from(JSON.stringify(s));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return [len, json, ...coalesce(pending?.records.map((r) => r.value) ?? [])];
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

// writeAtomic's steps, for the worker. Inline, so that it runs the same from compiled output
// and from the TypeScript sources under Jest.
const WRITER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
parentPort.on('message', ({ id, file, data, mode }) => {
  try {
    const tmp = file + '.' + process.pid + '.tmp';
    const fd = fs.openSync(tmp, 'w', mode);
    try {
      fs.writevSync(fd, data);
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
    parentPort.postMessage({ id });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

/**
 * Joins buffers that lie back to back in memory into one view. A batch's records do (the chain
 * writes them into one buffer), so the file gets a few large writes, and the message that
 * hands them to the writer thread a few views to copy, not one per record.
 */
function coalesce(parts: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < parts.length) {
    const first = parts[i]!;
    let end = first.byteOffset + first.length;
    for (i++; i < parts.length && parts[i]!.buffer === first.buffer && parts[i]!.byteOffset === end; i++)
      end += parts[i]!.length;
    out.push(Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
  }
  return out;
}

/**
 * Writes state files on a worker thread, one at a time, in the order asked. Doing it there
 * costs the caller one turn of its event loop per write; done with fs.promises from this
 * thread, each of the seven file operations waits for a turn of a busy loop. One per process,
 * started on first use; it keeps the process alive only while writes are under way.
 */
class StateWriter {
  private static current: StateWriter | undefined;
  private readonly worker = new Worker(WRITER_SOURCE, { eval: true });
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private nextId = 0;

  static get(): StateWriter {
    StateWriter.current ??= new StateWriter();
    return StateWriter.current;
  }

  private constructor() {
    this.worker.unref();
    this.worker.on('message', ({ id, error }: { id: number; error?: string }) => {
      const w = this.waiting.get(id);
      this.waiting.delete(id);
      if (this.waiting.size === 0) this.worker.unref();
      if (error === undefined) w?.resolve();
      else w?.reject(new Error(error));
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`state writer thread exited with code ${code}`)));
  }

  write(file: string, data: Buffer[], mode: number): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, file, data, mode });
    });
  }

  /** Fails what is under way; the next write starts a new thread. */
  private fail(err: Error): void {
    if (StateWriter.current === this) StateWriter.current = undefined;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}
