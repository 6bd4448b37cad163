// The ledger as a real process: killed with SIGKILL again and again while it replays a large
// log, it ends with read models identical, row by row, to one uninterrupted replay; and over
// real gRPC it answers NOT_FOUND and INVALID_ARGUMENT as a client would see them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import Database from 'better-sqlite3';
import { ledger, protoLoaderOptions } from '@rebootless/contracts';
import { LogWriter, READ_MODEL_TABLES, writeFleetHistory } from '@rebootless/ledger-store';
import {
  REPO_ROOT,
  RunningProcess,
  builtEntry,
  freePort,
  freshEventsTopic,
  startNode,
  testKafka,
  until,
} from '@rebootless/testing';

const kafka = testKafka('ledger-e2e');
const EVENTS = 100_000;

async function highWatermarks(topic: string): Promise<bigint> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((n, w) => n + BigInt(w.high), 0n);
  } finally {
    await admin.disconnect();
  }
}

/** Records the read models have taken in: the sum of the committed offsets (0 while the file is new). */
function committed(file: string): bigint {
  if (!fs.existsSync(file)) return 0n;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT COALESCE(SUM(next_offset), 0) AS n FROM consumer_offsets').get() as { n: number };
    return BigInt(row.n);
  } catch {
    return 0n; // tables not migrated yet
  } finally {
    db.close();
  }
}

/** Every row of every read model, in primary-key order. */
function dump(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, unknown[]> = {};
    for (const table of READ_MODEL_TABLES) {
      const pk = (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string; pk: number }[])
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name);
      out[table] = db.prepare(`SELECT * FROM ${table} ORDER BY ${pk.join(', ')}`).all();
    }
    return out;
  } finally {
    db.close();
  }
}

describe('the ledger process', () => {
  const main = builtEntry('apps/ledger/dist/main.js');
  let topic: string;
  let builderKey: string;
  let dispatcherKey: string;
  /** The killed ledger's data dir: its own chain's key is there. */
  let killedDir = '';
  const dirs: string[] = [];
  const running: RunningProcess[] = [];
  const tempDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-e2e-'));
    dirs.push(d);
    return d;
  };

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-e2e', 6);
    const writer = await LogWriter.open(kafka, topic);
    const { serviceKeys } = await writeFleetHistory(writer, { events: EVENTS, hosts: 500 });
    await writer.close();
    builderKey = Buffer.from(serviceKeys.get('builder')![0]!).toString('hex');
    dispatcherKey = Buffer.from(serviceKeys.get('dispatcher')![0]!).toString('hex');
  }, 300_000);

  afterAll(async () => {
    for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const envFor = (dataDir: string, extra: Record<string, string> = {}) => ({
    KAFKA_BROKERS: process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092',
    EVENTS_TOPIC: topic,
    REBOOTLESS_DATA_DIR: dataDir,
    // The dispatcher vouches for the agents' keys (its gateway's AgentKeyBound).
    LEDGER_TRUSTED_PRODUCERS: `builder=${builderKey},dispatcher=${dispatcherKey}`,
    DATABASE_URL: '',
    ...extra,
  });

  it(`killed with SIGKILL four times while replaying ${EVENTS} events, ends with the read models of an uninterrupted replay`, async () => {
    killedDir = tempDir();
    const file = path.join(killedDir, 'ledger.sqlite');
    const start = async () => {
      const address = `127.0.0.1:${await freePort()}`;
      const p = startNode(main, envFor(killedDir, { LEDGER_GRPC_ADDRESS: address }));
      running.push(p);
      return p;
    };
    const total = BigInt(EVENTS);
    for (const share of [0.15, 0.35, 0.55, 0.8]) {
      const p = await start();
      await until(
        () => committed(file) >= (total * BigInt(Math.round(share * 100))) / 100n,
        `${share} replayed`,
        180_000,
      );
      p.child.kill('SIGKILL');
      await p.exited();
    }
    // The last start runs to the end of the log (its own ServiceStarted events included).
    const last = await start();
    await last.waitFor(/ledger ready on/, 60_000);
    await until(async () => committed(file) === (await highWatermarks(topic)), 'caught up', 180_000, 200);
    last.child.kill('SIGKILL');
    await last.exited();

    // The uninterrupted replay of the same log, by the rebuild command. The ledger's own chain
    // was written from the killed ledger's data dir: its key is vouched for from there.
    const cleanDir = tempDir();
    const rebuild = startNode(main, envFor(cleanDir, { LEDGER_TRUSTED_DATA_DIRS: killedDir }), ['rebuild', '--json']);
    running.push(rebuild);
    const { code } = await rebuild.exited();
    expect(code).toBe(0);
    const summary = JSON.parse(rebuild.output().trim().split('\n').pop()!) as {
      records: number;
      integrityFindings: number;
    };
    expect(BigInt(summary.records)).toBe(await highWatermarks(topic));
    expect(summary.integrityFindings).toBe(0);

    const killed = dump(file);
    const clean = dump(path.join(cleanDir, 'ledger.sqlite'));
    expect(killed['audit_log']!.length).toBe(summary.records);
    expect(killed['stack_intervals']!.length).toBeGreaterThan(EVENTS / 3);
    for (const table of READ_MODEL_TABLES) {
      expect({ table, rows: killed[table]!.length }).toEqual({ table, rows: clean[table]!.length });
      // Row by row (compared as text: Jest's deep equality is slow over 10^5 rows); the first
      // differing row is shown whole.
      const line = (row: unknown) =>
        JSON.stringify(row, (_k, v: unknown) =>
          v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer'
            ? Buffer.from(v as Buffer).toString('hex')
            : v,
        );
      const differs = killed[table]!.findIndex((row, i) => line(row) !== line(clean[table]![i]));
      if (differs >= 0) expect({ table, row: killed[table]![differs] }).toEqual({ table, row: clean[table]![differs] });
    }
    // The columns the domain's stack fold adds (state history, live from/until) are among those
    // compared, and filled: every interval has its first state, and applied ones went live.
    const intervals = killed['stack_intervals'] as Record<string, unknown>[];
    expect(intervals.filter((r) => (JSON.parse(String(r['states'])) as unknown[]).length === 0)).toEqual([]);
    expect(intervals.filter((r) => r['live_from'] !== null).length).toBeGreaterThan(EVENTS / 10);
    expect(intervals.filter((r) => r['live_until'] !== null).length).toBeGreaterThan(0);
  }, 900_000);

  it('answers over gRPC: NOT_FOUND for an unknown host, INVALID_ARGUMENT naming a malformed instant', async () => {
    const dataDir = tempDir();
    const address = `127.0.0.1:${await freePort()}`;
    const trusted: Record<string, string> = killedDir ? { LEDGER_TRUSTED_DATA_DIRS: killedDir } : {};
    const p = startNode(main, envFor(dataDir, { LEDGER_GRPC_ADDRESS: address, ...trusted }));
    running.push(p);
    await p.waitFor(/ledger ready on/, 60_000);
    const def = protoLoader.loadSync(
      path.join(REPO_ROOT, 'proto/rebootless/ledger/v1/ledger.proto'),
      protoLoaderOptions,
    );
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      rebootless: { ledger: { v1: { LedgerService: grpc.ServiceClientConstructor } } };
    };
    const client = new pkg.rebootless.ledger.v1.LedgerService(address, grpc.credentials.createInsecure());
    const call = <T>(method: string, req: object) =>
      new Promise<T>((resolve, reject) =>
        (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[
          method
        ]!.call(client, req, (e, v) => (e ? reject(e) : resolve(v))),
      );
    try {
      // Once caught up, a host of the fleet is there.
      await until(
        async () => {
          try {
            await call<ledger.GetHostResponse>('GetHost', { hostId: 'host-00001' });
            return true;
          } catch {
            return false;
          }
        },
        'host-00001 projected',
        180_000,
        500,
      );
      const host = await call<{ host: { facts: { kernelRelease: string } } }>('GetHost', { hostId: 'host-00001' });
      expect(host.host.facts.kernelRelease).toBe('6.1.0-18-cloud-amd64');
      await expect(call('GetHost', { hostId: 'no-such-host' })).rejects.toMatchObject({
        code: grpc.status.NOT_FOUND,
        details: 'host no-such-host is not known to the ledger',
      });
      await expect(
        call('GetHostStackAt', { hostId: 'host-00001', at: { seconds: '1767225600', nanos: 1_500_000_000 } }),
      ).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: 'at: nanos 1500000000 is outside 0 to 999999999',
      });
      await expect(call('GetHostStackAt', { hostId: 'host-00001' })).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^at: is required/),
      });
      // Caught up first: the host's PatchApplied may come a batch after its enrolment.
      const file = path.join(dataDir, 'ledger.sqlite');
      await until(async () => committed(file) === (await highWatermarks(topic)), 'caught up', 180_000, 200);
      // The audit trail streams: every event about the host, oldest first.
      type Audit = { record: { summary: string; position: { producerId: string } } };
      const audit = await new Promise<Audit[]>((resolve, reject) => {
        const got: Audit[] = [];
        const stream = (client as unknown as { QueryAudit(r: object): grpc.ClientReadableStream<Audit> }).QueryAudit({
          hostId: 'host-00001',
          types: ['HostEnrolled', 'PatchApplied'],
        });
        stream.on('data', (d: Audit) => got.push(d));
        stream.on('error', reject);
        stream.on('end', () => resolve(got));
      });
      expect(audit.length).toBeGreaterThan(1);
      expect(audit[0]!.record.summary).toBe('enrolled host-00001 (host-00001.fleet, 6.1.0-18-cloud-amd64)');
      expect(audit.every((a) => a.record.position.producerId === 'agent/host-00001')).toBe(true);
      const integrity = await call<{ findings: { detail: string }[]; producersChecked: number }>('VerifyIntegrity', {});
      // Run alone, the earlier ledger processes' chains are nobody's this one vouches for.
      if (killedDir) expect(integrity.findings).toEqual([]);
      else expect(integrity.findings.every((f) => /^ledger epoch/.test(f.detail))).toBe(true);
      expect(integrity.producersChecked).toBeGreaterThan(500);
    } finally {
      client.close();
      p.child.kill('SIGTERM');
      await p.exited();
    }
  }, 600_000);
});
