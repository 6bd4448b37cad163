// npm run bench:console [-- --hosts N --runs N] — the console's fleet page for a 10,000-host
// fleet: the hosts' signed history written to a fresh topic, the built ledger (TLS, SQLite)
// projecting it, the built console over HTTPS in front, and Debian's chromium (playwright-core)
// timing the first screen: navigation start to first contentful paint, and to the table's last
// row in the DOM. Each run waits for the fleet counts (fetched after the first screen) to arrive
// before the next one starts. Needs KAFKA_BROKERS and /usr/bin/chromium (CHROMIUM_PATH). Progress on stderr;
// the result in bench/results/console-<date>.json and as the last stdout line.
import { createHash, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';
import { devTopicDurability } from '../kafka';
import { LogWriter, writeFleetHistory } from '@rebootless/ledger-store';
import {
  credentialPaths,
  ensureCertificateAuthority,
  issueCertificate,
  mintToken,
  readTokenPrivateKey,
} from '@rebootless/trust';
import { freePort, ServiceProcess } from '../fleet/rig';
import { deleteBenchTopic, machineFacts, reportBenchResult } from './machine';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : undefined;
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} wants a positive whole number, got ${raw}`);
  return n;
}

const HOSTS = flag('hosts', 10_000);
const RUNS = flag('runs', 7);
const say = (line: string) => process.stderr.write(`bench:console: ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function getJson(url: string, ca: Buffer, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, servername: 'localhost', headers: { authorization: `Bearer ${token}` } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      })
      .on('error', reject);
  });
}

async function main() {
  const brokers = kafkaBrokersFromEnv();
  const kafka = kafkaClient(brokers, 'bench-console');
  const topic = `bench.console.${Date.now()}`;
  await ensureEventsTopic({ brokers, topic, partitions: 6, durability: devTopicDurability() });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-console-'));
  const pki = path.join(root, 'pki');
  await ensureCertificateAuthority(pki);
  for (const id of ['ledger', 'console']) await issueCertificate(pki, { kind: 'service', id });
  const services: ServiceProcess[] = [];
  try {
    say(`writing the signed history of ${HOSTS} hosts to ${topic}`);
    const writer = await LogWriter.open(kafka, topic);
    const { serviceKeys, records } = await writeFleetHistory(writer, { events: HOSTS * 4, hosts: HOSTS });
    await writer.close();
    const trusted = [...serviceKeys.entries()].flatMap(([id, keys]) =>
      keys.map((k) => `${id}=${Buffer.from(k).toString('hex')}`),
    );

    const tls = {
      REBOOTLESS_INSECURE: '',
      REBOOTLESS_PKI_DIR: pki,
      EVENTS_TOPIC: topic,
      KAFKA_BROKERS: brokers.join(','),
    };
    const ledgerAddress = `127.0.0.1:${await freePort()}`;
    const ledger = new ServiceProcess('ledger', {
      ...tls,
      LEDGER_GRPC_ADDRESS: ledgerAddress,
      REBOOTLESS_DATA_DIR: path.join(root, 'ledger'),
      LEDGER_TRUSTED_PRODUCERS: trusted.join(','),
      // The scripted history happened in January: its hosts count as heard from for this run.
      LEDGER_ONLINE_WINDOW_SECONDS: '86400',
    });
    services.push(ledger);
    await ledger.waitFor(`ledger ready on ${ledgerAddress}`);
    const consolePort = await freePort();
    const consoleProcess = new ServiceProcess('console', {
      ...tls,
      CONSOLE_HTTP_ADDRESS: `127.0.0.1:${consolePort}`,
      CONSOLE_LEDGER_ADDRESS: ledgerAddress,
    });
    services.push(consoleProcess);
    await consoleProcess.waitFor('console ready on');
    const url = `https://localhost:${consolePort}`;
    const ca = fs.readFileSync(path.join(pki, 'ca.crt'));
    const token = mintToken(readTokenPrivateKey(pki), { sub: 'bench', roles: ['auditor'], ttlSeconds: 3600 });

    say(`${records} records written; waiting for the ledger to project ${HOSTS} hosts`);
    for (;;) {
      const counts = await getJson(`${url}/api/v1/fleet/counts`, ca, token);
      if (Number(counts.body['total']) >= HOSTS) break;
      await new Promise((r) => setTimeout(r, 11_000)); // the counts are cached for 10 s
    }

    const cert = new X509Certificate(fs.readFileSync(credentialPaths(pki, { kind: 'service', id: 'console' }).cert));
    const spki = createHash('sha256')
      .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64');
    const browser = await chromium.launch({
      executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spki}`,
      ],
    });
    const runs: { fcp_ms: number; table_ms: number; rows: number; html_bytes: number }[] = [];
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await page.goto(`${url}/signin`);
      await page.fill('textarea[name=token]', token);
      await Promise.all([page.waitForURL(/\/fleet/), page.click('button[type=submit]')]);
      for (let i = 0; i < RUNS; i++) {
        await page.goto(`${url}/fleet`, { waitUntil: 'domcontentloaded' });
        // Run in the page (strings: this lib compiles without the DOM's types).
        await page.waitForFunction("performance.getEntriesByName('first-contentful-paint').length > 0");
        const timing = (await page.evaluate(`(() => {
          const nav = performance.getEntriesByType('navigation')[0];
          return {
            fcp_ms: performance.getEntriesByName('first-contentful-paint')[0].startTime,
            table_ms: nav.domContentLoadedEventEnd,
            rows: document.querySelectorAll('table.fleet tbody tr').length,
            html_bytes: nav.transferSize,
          };
        })()`)) as (typeof runs)[number];
        runs.push(timing);
        // The counts come after the first screen; let them finish so the next run starts on a quiet machine.
        await page.waitForSelector('#counts [data-count=total]', { timeout: 120_000 });
        say(`run ${i + 1}: first contentful paint ${Math.round(timing.fcp_ms)} ms, ${timing.rows} rows`);
      }
    } finally {
      await browser.close();
    }
    const result = {
      bench: 'console',
      date: new Date().toISOString(),
      machine: machineFacts(),
      settings: {
        hosts: HOSTS,
        runs: RUNS,
        page_size: runs[0]?.rows ?? 0,
        ledger: 'SQLite',
        transport: 'HTTPS + gRPC over TLS',
      },
      first_contentful_paint_ms: {
        median: Math.round(median(runs.map((r) => r.fcp_ms))),
        all: runs.map((r) => Math.round(r.fcp_ms)),
      },
      dom_content_loaded_ms: { median: Math.round(median(runs.map((r) => r.table_ms))) },
      html_bytes: runs[0]?.html_bytes ?? 0,
      targets: { first_screen_ms: 2000 },
    };
    const file = reportBenchResult('console', result);
    say(`wrote ${file}`);
  } finally {
    for (const s of services.reverse()) await s.stop();
    await deleteBenchTopic(kafka, topic);
    fs.rmSync(root, { recursive: true, force: true });
  }
  process.exit(0);
}

main().catch((err: Error) => {
  process.stderr.write(`bench:console: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
