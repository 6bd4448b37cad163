// Debian's Prometheus server (apt: prometheus) as a plain process for tests: a config in a temp
// dir scraping the services' /metrics every second, on a free loopback port, and its HTTP query
// API to read what it scraped, as an operator's dashboards and alerts would.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ScrapeTarget {
  /** The Prometheus job, e.g. "ledger". */
  job: string;
  /** host:port of the service's REBOOTLESS_METRICS_ADDRESS. */
  address: string;
}

export interface RunningPrometheus {
  readonly url: string;
  /** The values of an instant query, by the series' labels; [] when nothing matches. */
  query(expr: string): Promise<{ labels: Record<string, string>; value: number }[]>;
  /** The scrape targets and their health ("up", "down", "unknown"). */
  targets(): Promise<{ job: string; health: string; lastError: string }[]>;
  stop(): Promise<void>;
}

/** The prometheus binary; throws saying how to install it when it is missing. */
export function prometheusBinary(): string {
  const found = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim();
  if (!found) throw new Error('prometheus is not installed: apt-get install -y prometheus (scripts/setup-debian.sh)');
  return found;
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function startPrometheus(targets: readonly ScrapeTarget[]): Promise<RunningPrometheus> {
  const binary = prometheusBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-prometheus-'));
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    ...targets.flatMap((t) => [
      `  - job_name: ${JSON.stringify(t.job)}`,
      '    static_configs:',
      `      - targets: [${JSON.stringify(t.address)}]`,
    ]),
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), config);
  const port = await freeLoopbackPort();
  const child: ChildProcess = spawn(
    binary,
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const api = async (pathAndQuery: string): Promise<unknown> => {
    const response = await fetch(`${url}${pathAndQuery}`);
    const body = (await response.json()) as { status: string; data: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${pathAndQuery}: ${body.error ?? response.status}`);
    return body.data;
  };
  // Ready when its API answers.
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output}`);
    try {
      const ready = await fetch(`${url}/-/ready`);
      if (ready.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready within 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async query(expr) {
      const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as {
        result: { metric: Record<string, string>; value: [number, string] }[];
      };
      return data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
    },
    async targets() {
      const data = (await api('/api/v1/targets')) as {
        activeTargets: { labels: { job: string }; health: string; lastError: string }[];
      };
      return data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError }));
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
