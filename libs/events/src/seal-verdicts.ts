import { Worker } from 'node:worker_threads';

/** One seal to check ahead: the raw Ed25519 key expected to have signed, the hash, the signature. */
export interface SealJob {
  key: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
}

/** Where ChainVerifier may find a seal already checked; undefined means "verify it yourself". */
export interface SealVerdicts {
  take(key: Uint8Array, hash: Uint8Array, signature: Uint8Array): boolean | undefined;
}

// The worker's code, inline: no file to locate, whether run from dist or from sources under Jest.
const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
const keys = new Map();
parentPort.on('message', ({ id, data, count }) => {
  const buf = Buffer.from(data);
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * 128;
    const x = buf.subarray(at, at + 32).toString('base64url');
    let key = keys.get(x);
    if (!key) {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
      if (keys.size > 4096) keys.clear();
      keys.set(x, key);
    }
    out[i] = verify(null, buf.subarray(at + 32, at + 64), key, buf.subarray(at + 64, at + 128)) ? 1 : 0;
  }
  parentPort.postMessage({ id, out }, [out.buffer]);
});
`;

interface Verdict {
  key: Uint8Array;
  hash: Uint8Array;
  ok: boolean;
}

/**
 * Ed25519 seal checks on a worker thread, ahead of the verifier: an Ed25519 verify costs more
 * than everything else the ledger does with a record, and the worker runs it beside the main
 * thread. A verdict is only ever a cache: the verifier takes one only for exactly the key, hash
 * and signature it would verify, and verifies itself whatever was not checked ahead (a worker
 * that failed, a key known only later), so its findings are the same with or without it.
 */
export class SealWorker implements SealVerdicts {
  private readonly worker: Worker;
  private readonly verdicts = new Map<string, Verdict>();
  private readonly waiting = new Map<number, { jobs: SealJob[]; done: () => void }>();
  private nextId = 0;
  private failed = false;

  constructor() {
    this.worker = new Worker(WORKER_CODE, { eval: true });
    this.worker.unref();
    this.worker.on('message', ({ id, out }: { id: number; out: Uint8Array }) => {
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      w.jobs.forEach((j, i) => this.verdicts.set(sigKey(j.signature), { key: j.key, hash: j.hash, ok: out[i] === 1 }));
      w.done();
    });
    this.worker.on('error', () => this.fail());
    this.worker.on('exit', () => this.fail());
  }

  /** Checks the seals given; resolves once their verdicts are in (never rejects: a miss is verified in place). */
  check(jobs: SealJob[]): Promise<void> {
    const valid = jobs.filter((j) => j.key.length === 32 && j.hash.length === 32 && j.signature.length === 64);
    if (this.failed || valid.length === 0) return Promise.resolve();
    const data = new Uint8Array(valid.length * 128);
    valid.forEach((j, i) => {
      data.set(j.key, i * 128);
      data.set(j.hash, i * 128 + 32);
      data.set(j.signature, i * 128 + 64);
    });
    // Verdicts nobody asked for (a duplicate's seal, a chain whose key was refused) are dropped
    // now and then, so none piles up.
    if (this.verdicts.size > MAX_VERDICTS) this.verdicts.clear();
    const id = this.nextId++;
    return new Promise<void>((done) => {
      this.waiting.set(id, { jobs: valid, done });
      this.worker.postMessage({ id, data, count: valid.length }, [data.buffer]);
    });
  }

  take(key: Uint8Array, hash: Uint8Array, signature: Uint8Array): boolean | undefined {
    if (this.verdicts.size === 0 || signature.length !== 64) return undefined;
    const k = sigKey(signature);
    const v = this.verdicts.get(k);
    if (!v) return undefined;
    this.verdicts.delete(k);
    return Buffer.compare(v.key, key) === 0 && Buffer.compare(v.hash, hash) === 0 ? v.ok : undefined;
  }

  async close(): Promise<void> {
    this.failed = true;
    await this.worker.terminate();
    this.fail();
  }

  private fail(): void {
    this.failed = true;
    for (const w of this.waiting.values()) w.done();
    this.waiting.clear();
  }
}

const MAX_VERDICTS = 100_000;

const sigKey = (signature: Uint8Array) => Buffer.from(signature.buffer, signature.byteOffset, 64).toString('latin1');
