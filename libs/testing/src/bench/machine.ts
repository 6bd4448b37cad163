import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Kafka } from 'kafkajs';
import { REPO_ROOT } from '../process';

/** What a benchmark result must say about where it ran. */
export function machineFacts() {
  return {
    hostname: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

/**
 * Writes a result to bench/results/<name>-<date>.json and prints it as the last stdout line, the
 * way every benchmark reports. Returns the file written.
 */
export function reportBenchResult(name: string, result: { date: string }): string {
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}-${result.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(JSON.stringify(result) + '\n');
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
