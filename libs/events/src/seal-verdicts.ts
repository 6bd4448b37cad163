import { Worker } from 'node:worker_threads';
import type { events } from '@rebootless/contracts';
import { EnvelopeLayout, scanEnvelope } from './wire';

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
// libsodium where this module finds it, as signing.ts (docs/adr/0031); OpenSSL where it cannot.
function sodiumPath(): string | undefined {
  try {
    return require.resolve('sodium-native');
  } catch {
    return undefined;
  }
}

const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
const at = ${JSON.stringify(sodiumPath() ?? null)};
let sodium;
try {
  sodium = at ? require(at) : undefined;
} catch {
  sodium = undefined;
}
const keys = new Map();
function check(key, hash, signature) {
  if (sodium) return sodium.crypto_sign_verify_detached(signature, hash, key);
  const x = Buffer.from(key).toString('base64url');
  let k = keys.get(x);
  if (!k) {
    k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    if (keys.size > 4096) keys.clear();
    keys.set(x, k);
  }
  return verify(null, hash, k, signature);
}
parentPort.on('message', ({ id, data, count }) => {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const o = i * 128;
    out[i] = check(data.subarray(o, o + 32), data.subarray(o + 32, o + 64), data.subarray(o + 64, o + 128)) ? 1 : 0;
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
  private readonly workers: Worker[];
  private readonly verdicts = new Map<string, Verdict>();
  private readonly waiting = new Map<number, { jobs: SealJob[]; done: () => void }>();
  private nextId = 0;
  private failed = false;

  /** `threads`: workers to share each check among (a start reading a whole log uses every core). */
  constructor(threads = 1) {
    this.workers = Array.from({ length: Math.max(1, threads) }, () => {
      const worker = new Worker(WORKER_CODE, { eval: true });
      worker.unref();
      worker.on('message', ({ id, out }: { id: number; out: Uint8Array }) => {
        const w = this.waiting.get(id);
        if (!w) return;
        this.waiting.delete(id);
        w.jobs.forEach((j, i) =>
          this.verdicts.set(sigKey(j.signature), { key: j.key, hash: j.hash, ok: out[i] === 1 }),
        );
        w.done();
      });
      worker.on('error', () => this.fail());
      worker.on('exit', () => this.fail());
      return worker;
    });
  }

  /** Checks the seals given; resolves once their verdicts are in (never rejects: a miss is verified in place). */
  check(jobs: SealJob[]): Promise<void> {
    const valid = jobs.filter((j) => j.key.length === 32 && j.hash.length === 32 && j.signature.length === 64);
    if (this.failed || valid.length === 0) return Promise.resolve();
    // Verdicts nobody asked for (a duplicate's seal, a chain whose key was refused) are dropped
    // now and then, so none piles up.
    if (this.verdicts.size > MAX_VERDICTS) this.verdicts.clear();
    // Shared among the workers, none given fewer than a few dozen (a hand-off costs too).
    const parts = Math.min(this.workers.length, Math.ceil(valid.length / 32));
    const size = Math.ceil(valid.length / parts);
    const checked: Promise<void>[] = [];
    for (let w = 0; w < parts; w++) {
      const part = valid.slice(w * size, (w + 1) * size);
      const data = new Uint8Array(part.length * 128);
      part.forEach((j, i) => {
        data.set(j.key, i * 128);
        data.set(j.hash, i * 128 + 32);
        data.set(j.signature, i * 128 + 64);
      });
      const id = this.nextId++;
      checked.push(
        new Promise<void>((done) => {
          this.waiting.set(id, { jobs: part, done });
          this.workers[w]!.postMessage({ id, data, count: part.length }, [data.buffer]);
        }),
      );
    }
    return Promise.all(checked).then(() => undefined);
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
    await Promise.all(this.workers.map((w) => w.terminate()));
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

const jobLayout = new EnvelopeLayout();

/**
 * The seals among a batch of records, each with the key the verifier will check it with: the
 * epoch's key `keyOf` gives, or the one an epoch start earlier in the batch carries. A guess that
 * proves wrong costs nothing but the worker's time: the verifier takes a verdict only for its own key.
 */
export function sealJobsOf(
  values: readonly (Uint8Array | null)[],
  bodies: readonly (events.EventBody | undefined)[],
  keyOf: (producerId: string, epoch: number) => Uint8Array | undefined,
): SealJob[] {
  const jobs: SealJob[] = [];
  const started = new Map<string, Uint8Array>();
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const body = bodies[i];
    if (!value || !body?.producer) continue;
    const { producerId, epoch } = body.producer;
    const id = `${producerId}\u0000${epoch}`;
    if (body.chainEpochStarted) started.set(id, body.chainEpochStarted.publicKey);
    const l = scanEnvelope(value, jobLayout);
    if (l.signatureEnd <= l.signatureStart) continue;
    const key = started.get(id) ?? keyOf(producerId, epoch);
    if (!key) continue;
    jobs.push({
      key,
      hash: value.subarray(l.hashStart, l.hashEnd),
      signature: value.subarray(l.signatureStart, l.signatureEnd),
    });
  }
  return jobs;
}
