import * as os from 'node:os';

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
