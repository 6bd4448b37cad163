// Two ledgers on one PostgreSQL database (issue 19, "Ledger as a consumer group"): one projects,
// the other stands by in the same consumer group. The projecting one is SIGKILLed mid-replay;
// the other takes its partitions over, resumes from the checkpoint in the database, and the read
// models end equal, row by row, to those of one `ledger rebuild`, with no integrity finding.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainStateFile } from '@rebootless/kafka';
import { LogWriter, READ_MODEL_TABLES, createScratchDatabase, writeFleetHistory } from '@rebootless/ledger-store';
import {
  RunningProcess,
  builtEntry,
  freePort,
  freshEventsTopic,
  startNode,
  testKafka,
  until,
} from '@rebootless/testing';
import { Client } from 'pg';

const kafka = testKafka('ledger-group');
const EVENTS = 60_000;

describe('two ledgers sharing one PostgreSQL database', () => {
  const main = builtEntry('apps/ledger/dist/main.js');
  let topic: string;
  let trusted: string;
  const running: RunningProcess[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  const dirs: string[] = [];
  const tempDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-group-'));
    dirs.push(d);
    return d;
  };
  const dataDirs = { a: '', b: '' };
  const urls = { shared: '', rebuilt: '' };

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-group', 6);
    const writer = await LogWriter.open(kafka, topic);
    const { serviceKeys } = await writeFleetHistory(writer, { events: EVENTS, hosts: 300 });
    await writer.close();
    const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');
    // Each ledger writes its own chain (ledger/a, ledger/b); each vouches for the other's key.
    const keys: string[] = [];
    for (const name of ['a', 'b'] as const) {
      dataDirs[name] = tempDir();
      const { key } = new ChainStateFile(path.join(dataDirs[name], 'chain'), `ledger/${name}`).loadOrCreateKey();
      keys.push(`ledger/${name}=${hex(key.rawPublicKey)}`);
    }
    trusted = [
      `builder=${hex(serviceKeys.get('builder')![0]!)}`,
      `dispatcher=${hex(serviceKeys.get('dispatcher')![0]!)}`,
      ...keys,
    ].join(',');
    for (const name of ['shared', 'rebuilt'] as const) {
      const scratch = await createScratchDatabase(`ledger_group_${name}`);
      urls[name] = scratch.url;
      cleanup.push(scratch.drop);
    }
  }, 300_000);

  afterAll(async () => {
    for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    for (const c of cleanup) await c().catch(() => undefined);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  async function query<T>(url: string, sql: string): Promise<T[]> {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql)).rows as T[];
    } finally {
      await c.end();
    }
  }

  const committed = async () =>
    BigInt(
      (
        await query<{ n: string }>(urls.shared, 'SELECT COALESCE(SUM(next_offset), 0)::text AS n FROM consumer_offsets')
      )[0]!.n,
    );

  async function highWatermarks(): Promise<bigint> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      return (await admin.fetchTopicOffsets(topic)).reduce((n, w) => n + BigInt(w.high), 0n);
    } finally {
      await admin.disconnect();
    }
  }

  const env = (dataDir: string, url: string, extra: Record<string, string> = {}) => ({
    KAFKA_BROKERS: process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092',
    EVENTS_TOPIC: topic,
    REBOOTLESS_DATA_DIR: dataDir,
    LEDGER_TRUSTED_PRODUCERS: trusted,
    DATABASE_URL: url,
    LEDGER_GROUP_SESSION_TIMEOUT_MS: '10000',
    ...extra,
  });

  async function dump(url: string): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const table of READ_MODEL_TABLES)
      out[table] = (await query<{ row: string }>(url, `SELECT t::text AS row FROM ${table} t ORDER BY t::text`)).map(
        (r) => r.row,
      );
    return out;
  }

  it(`the one projecting SIGKILLed mid-replay of ${EVENTS} events: the other takes over from the checkpoint and ends with the rows of one rebuild`, async () => {
    const start = async (name: 'a' | 'b') => {
      const p = startNode(
        main,
        env(dataDirs[name], urls.shared, {
          LEDGER_INSTANCE: name,
          LEDGER_GRPC_ADDRESS: `127.0.0.1:${await freePort()}`,
        }),
      );
      running.push(p);
      return p;
    };
    // Given ledger a projecting, frozen (SIGSTOP) right after its first batch so that however fast
    // this machine replays, a stops mid-replay; and ledger b started after it, in the same group
    const a = await start('a');
    await a.waitFor(/took over the projection of .* \(lease generation 1, group rebootless-ledger\./, 120_000);
    const total = await highWatermarks();
    await until(async () => (await committed()) > 0n, 'a first batch projected', 240_000, 5);
    a.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 300)); // a transaction a had sent ends one way or the other
    const frozenAt = await committed();
    expect(frozenAt).toBeGreaterThan(0n);
    expect(frozenAt).toBeLessThan(total);
    const b = await start('b');
    await b.waitFor(/ledger ready on/, 120_000);

    // When a is SIGKILLed mid-replay
    a.child.kill('SIGKILL');
    await a.exited();

    // Then b takes the partitions over once the group gives up on a, from the checkpoint a committed
    const resumedLine = await b.waitFor(
      /took over the projection of .* \(lease generation 2, .*\): resuming from the checkpoint at ([0-9: ]+) with (\d+) held/,
      120_000,
    );
    // (where a's checkpoint stood: past the start of the log, short of its end)
    const resumedAt = [...resumedLine[1]!.matchAll(/\d+:(\d+)/g)].reduce((n, m) => n + BigInt(m[1]!), 0n);
    expect(resumedAt).toBeGreaterThan(0n);
    expect(resumedAt).toBeLessThan(total);
    await until(async () => (await committed()) === (await highWatermarks()), 'caught up', 400_000, 250).catch(
      (error: unknown) => {
        throw new Error(`${(error as Error).message}; ledger b said:\n${b.output().slice(-4000)}`);
      },
    );
    b.child.kill('SIGKILL');
    await b.exited();

    // And the read models equal those of one rebuild of the same log into another database
    const rebuild = startNode(main, env(tempDir(), urls.rebuilt), ['rebuild', '--json']);
    running.push(rebuild);
    expect((await rebuild.exited()).code).toBe(0);
    const summary = JSON.parse(rebuild.output().trim().split('\n').pop()!) as {
      records: number;
      integrityFindings: number;
    };
    expect(BigInt(summary.records)).toBe(await highWatermarks());
    expect(summary.integrityFindings).toBe(0);
    const [shared, rebuilt] = [await dump(urls.shared), await dump(urls.rebuilt)];
    expect(shared['audit_log']!.length).toBe(summary.records);
    expect(shared['integrity_findings']).toEqual([]);
    for (const table of READ_MODEL_TABLES) {
      expect({ table, rows: shared[table]!.length }).toEqual({ table, rows: rebuilt[table]!.length });
      const differs = shared[table]!.findIndex((row, i) => row !== rebuilt[table]![i]);
      if (differs >= 0)
        expect({ table, row: shared[table]![differs] }).toEqual({ table, row: rebuilt[table]![differs] });
    }
    process.stdout.write(
      `ledger group: a frozen then killed with ${frozenAt}/${total} records projected; b resumed reading at ${resumedAt} and caught up\n`,
    );
  }, 900_000);
});
