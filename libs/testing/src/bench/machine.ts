import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Kafka } from 'kafkajs';
import { REPO_ROOT } from '../process';
import { signHash, signingKeyFromPem, verifyHash } from '@rebootless/events';

/** What a benchmark result must say about where it ran. */
export function machineFacts() {
  return {
    hostname: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    calibration: calibration(),
  };
}

/**
 * What the operations every event costs take on this machine, measured now: Ed25519 seals and
 * their checks, and SHA-256 over a module. Runs on machines of different makes differ by these
 * first (a verify took from 122 to 231 µs on one 2-core machine here within the same hour).
 */
function calibration() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const hash = crypto.randomBytes(32);
  const signature = crypto.sign(null, hash, privateKey);
  const module = crypto.randomBytes(256 * 1024);
  // The fastest of five rounds: what the machine can do; a neighbour's load only adds to it.
  const perOp = (times: number, op: () => void) => {
    let best = Infinity;
    for (let round = 0; round < 5; round++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < times; i++) op();
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / times);
    }
    return Math.round(best / 100) / 10;
  };
  const sign = perOp(500, () => crypto.sign(null, hash, privateKey));
  const verify = perOp(500, () => crypto.verify(null, hash, publicKey, signature));
  // What the services and agents use since ADR 0031 (the two above: OpenSSL, as results before it).
  const key = signingKeyFromPem(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  const sodiumSign = perOp(500, () => signHash(key, hash));
  const sodiumVerify = perOp(500, () => verifyHash(key.rawPublicKey, hash, signature));
  const sha = perOp(40, () => crypto.createHash('sha256').update(module).digest());
  return {
    ed25519_sign_us: sign,
    ed25519_verify_us: verify,
    ed25519_sign_libsodium_us: sodiumSign,
    ed25519_verify_libsodium_us: sodiumVerify,
    sha256_mib_per_s: Math.round(256 / 1024 / (sha / 1e6)),
  };
}

/**
 * Writes a result to bench/results/<name>-<date>.json and prints it as the last stdout line, the
 * way every benchmark reports. Returns the file written.
 */
export function reportBenchResult(name: string, result: { date: string }): string {
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  // A run with a profiler in its processes is named so: its times are not figures.
  const profiled = Object.entries(process.env).some(([k, v]) => k.endsWith('NODE_ARGS') && v?.includes('--cpu-prof'));
  const file = path.join(dir, `${name}-${result.date.replace(/[:.]/g, '-')}${profiled ? '-cpu-prof' : ''}.json`);
  // The services' extra node arguments (a GC setting, say) say what was measured as much as the code.
  const nodeArgs = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => k.endsWith('_NODE_ARGS') && v));
  const written = Object.keys(nodeArgs).length > 0 ? { ...result, node_args: nodeArgs } : result;
  fs.writeFileSync(file, JSON.stringify(written, null, 2) + '\n');
  process.stdout.write(JSON.stringify(written) + '\n');
  return file;
}

/** Drops a benchmark's scratch topic; a broker already gone is no reason to fail the teardown. */
export async function deleteBenchTopic(kafka: Kafka, topic: string): Promise<void> {
  // BENCH_KEEP_TOPIC=1 leaves it for a look at what was written (ledger verify, counts by type).
  if (process.env['BENCH_KEEP_TOPIC'] === '1') {
    console.error(`[bench] topic ${topic} kept (BENCH_KEEP_TOPIC=1)`);
    return;
  }
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
  } catch {
    // the result is already written
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** The size of the first module in an artifact store (<store>/objects/<shard>/<digest>/module.ko), or null. */
export function storedModuleBytes(storeDir: string): number | null {
  const objects = path.join(storeDir, 'objects');
  try {
    for (const shard of fs.readdirSync(objects)) {
      for (const digest of fs.readdirSync(path.join(objects, shard))) {
        return fs.statSync(path.join(objects, shard, digest, 'module.ko')).size;
      }
    }
  } catch {
    // Reported as unknown.
  }
  return null;
}
