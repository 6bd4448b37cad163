// The ledger on PostgreSQL when the database dies under it (issue "Past one machine"): a private
// PostgreSQL cluster, stopped with `pg_ctl stop -m immediate` (no checkpoint, as a crash or a
// pulled plug) while the ledger replays a log, then started again. What an operator checks: the
// ledger either rides it out or exits for its supervisor to restart it, and once caught up its
// read models equal, row by row, those of one uninterrupted replay (`rebuild`).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { LogWriter, READ_MODEL_TABLES, writeFleetHistory } from '@rebootless/ledger-store';
import {
  RunningProcess,
  builtEntry,
  freePort,
  freshEventsTopic,
  startNode,
  testKafka,
  until,
} from '@rebootless/testing';

const kafka = testKafka('ledger-pg-fault');
const EVENTS = 80_000;

/** The newest PostgreSQL server binaries Debian installed (postgresql-NN). */
function pgBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)) : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${root}: apt-get install postgresql`);
  return path.join(root, versions.sort((a, b) => Number(b) - Number(a))[0]!, 'bin');
}

/**
 * A PostgreSQL cluster of its own in a temp dir, on a free loopback port, trust auth. initdb and
 * the server refuse to run as root: as root they run as the `postgres` user.
 */
class PrivatePostgres {
  readonly bin = pgBin();
  readonly dataDir: string;
  constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.dataDir = path.join(dir, 'data');
  }

  private run(tool: string, args: string[]): string {
    const cmd = path.join(this.bin, tool);
    const asRoot = process.getuid?.() === 0;
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    const r = spawnSync(file, argv, { encoding: 'utf8', cwd: this.dir });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  init(): void {
    fs.mkdirSync(this.dataDir, { recursive: true });
    if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', this.dir]);
    this.run('initdb', ['-D', this.dataDir, '-U', 'postgres', '--auth=trust', '--no-sync']);
  }

  start(): void {
    const opts = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.dir}`;
    this.run('pg_ctl', ['-D', this.dataDir, '-o', opts, '-l', path.join(this.dir, 'server.log'), '-w', 'start']);
  }

  /** As a crash would: no shutdown checkpoint, every connection cut. */
  stopImmediately(): void {
    this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
  }

  stopQuietly(): void {
    try {
      this.run('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
    } catch {
      // not running
    }
  }

  url(db: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  async query<T>(db: string, sql: string): Promise<T[]> {
    const c = new Client({ connectionString: this.url(db) });
    await c.connect();
    try {
      return (await c.query(sql)).rows as T[];
    } finally {
      await c.end();
    }
  }
}

describe('the ledger on PostgreSQL', () => {
  const main = builtEntry('apps/ledger/dist/main.js');
  let pg: PrivatePostgres;
  let topic: string;
  let builderKey: string;
  let dispatcherKey: string;
  const running: RunningProcess[] = [];
  const dirs: string[] = [];
  const tempDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-pg-fault-'));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    const dir = tempDir();
    fs.chmodSync(dir, 0o755);
    pg = new PrivatePostgres(dir, await freePort());
    pg.init();
    pg.start();
    await pg.query('postgres', 'CREATE DATABASE replayed');
    await pg.query('postgres', 'CREATE DATABASE rebuilt');

    topic = await freshEventsTopic('ledger-pg-fault', 6);
    const writer = await LogWriter.open(kafka, topic);
    const { serviceKeys } = await writeFleetHistory(writer, { events: EVENTS, hosts: 400 });
    await writer.close();
    builderKey = Buffer.from(serviceKeys.get('builder')![0]!).toString('hex');
    dispatcherKey = Buffer.from(serviceKeys.get('dispatcher')![0]!).toString('hex');
  }, 300_000);

  afterAll(() => {
    for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    pg?.stopQuietly();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const envFor = (dataDir: string, db: string, extra: Record<string, string> = {}) => ({
    KAFKA_BROKERS: process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092',
    EVENTS_TOPIC: topic,
    REBOOTLESS_DATA_DIR: dataDir,
    // The dispatcher vouches for the agents' keys (its gateway's AgentKeyBound).
    LEDGER_TRUSTED_PRODUCERS: `builder=${builderKey},dispatcher=${dispatcherKey}`,
    DATABASE_URL: pg.url(db),
    ...extra,
  });

  async function highWatermarks(): Promise<bigint> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      return (await admin.fetchTopicOffsets(topic)).reduce((n, w) => n + BigInt(w.high), 0n);
    } finally {
      await admin.disconnect();
    }
  }

  /** Records the read models have taken in (0 while the database is unreachable or new). */
  async function committed(db: string): Promise<bigint> {
    try {
      const [row] = await pg.query<{ n: string }>(
        db,
        'SELECT COALESCE(SUM(next_offset), 0)::text AS n FROM consumer_offsets',
      );
      return BigInt(row!.n);
    } catch {
      return 0n;
    }
  }

  /** Every row of every read model, in primary-key order, as text. */
  async function dump(db: string): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const table of READ_MODEL_TABLES) {
      const pk = await pg.query<{ column_name: string }>(
        db,
        `SELECT a.attname AS column_name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = '${table}'::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      );
      const order = pk.map((c) => `"${c.column_name}"`).join(', ');
      const rows = await pg.query<{ row: string }>(db, `SELECT t::text AS row FROM ${table} t ORDER BY ${order}`);
      out[table] = rows.map((r) => r.row);
    }
    return out;
  }

  it(`stopped hard mid-replay of ${EVENTS} events and started again, ends with the read models of an uninterrupted replay`, async () => {
    const dataDir = tempDir();
    const start = async () => {
      const p = startNode(main, envFor(dataDir, 'replayed', { LEDGER_GRPC_ADDRESS: `127.0.0.1:${await freePort()}` }));
      running.push(p);
      return p;
    };
    let ledger = await start();
    const total = await highWatermarks();
    // Given the ledger has committed its first batches into PostgreSQL
    await until(async () => (await committed('replayed')) > 0n, 'a first batch committed', 240_000, 10);
    // When PostgreSQL dies and stays down for 3 s
    const downAt = await committed('replayed');
    pg.stopImmediately();
    // (mid-replay: most of the log is still to come)
    expect(downAt).toBeLessThan((total * 60n) / 100n);
    await new Promise((r) => setTimeout(r, 3_000));
    pg.start();
    // Then the ledger carries on, or has exited non-zero and its supervisor starts it again
    const exitedMeanwhile = ledger.child.exitCode !== null || ledger.child.signalCode !== null;
    if (exitedMeanwhile) {
      expect(ledger.child.exitCode).not.toBe(0);
      ledger = await start();
    } else {
      // and says so in its log: the refusal, then the recovery
      await ledger.waitFor(/the database refused a write or a reload .*; trying again in \d+ ms/, 60_000);
      await ledger.waitFor(/projecting again after \d+ attempt\(s\): the database answers/, 120_000);
    }
    await ledger.waitFor(/ledger ready on/, 120_000);
    // And it catches up with the whole log, from its checkpoint (what was committed stayed)
    expect(downAt).toBeGreaterThan(0n);
    await until(
      async () => (await committed('replayed')) >= downAt,
      'the committed offsets of before the crash',
      30_000,
    );
    await until(
      async () => (await committed('replayed')) === (await highWatermarks()),
      'caught up',
      300_000,
      250,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; the ledger said:\n${ledger.output().slice(-4000)}`);
    });
    // SIGKILL, not SIGTERM: a clean stop writes ServiceStopped, which this ledger would not project.
    ledger.child.kill('SIGKILL');
    await ledger.exited();

    // The uninterrupted replay of the same log into another database, by the rebuild command
    // (the ledger's own chain was written from the first data dir: its key is vouched for there).
    const rebuild = startNode(main, envFor(tempDir(), 'rebuilt', { LEDGER_TRUSTED_DATA_DIRS: dataDir }), [
      'rebuild',
      '--json',
    ]);
    running.push(rebuild);
    expect((await rebuild.exited()).code).toBe(0);
    const summary = JSON.parse(rebuild.output().trim().split('\n').pop()!) as {
      records: number;
      integrityFindings: number;
    };
    expect(BigInt(summary.records)).toBe(await highWatermarks());
    expect(summary.integrityFindings).toBe(0);

    const [replayed, rebuilt] = [await dump('replayed'), await dump('rebuilt')];
    expect(replayed['audit_log']!.length).toBe(summary.records);
    for (const table of READ_MODEL_TABLES) {
      expect({ table, rows: replayed[table]!.length }).toEqual({ table, rows: rebuilt[table]!.length });
      const differs = replayed[table]!.findIndex((row, i) => row !== rebuilt[table]![i]);
      if (differs >= 0)
        expect({ table, row: replayed[table]![differs] }).toEqual({ table, row: rebuilt[table]![differs] });
    }
    process.stdout.write(
      `postgres fault: down at ${downAt}/${total} records; the ledger ${exitedMeanwhile ? 'exited and was restarted' : 'rode it out'}\n`,
    );
  }, 900_000);
});
