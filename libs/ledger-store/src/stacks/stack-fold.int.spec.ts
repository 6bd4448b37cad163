// Property: for thousands of random but valid host histories, the production projection, writing
// to SQLite and to PostgreSQL in batches of random size and reloading from the database now and
// then, stores exactly the stacks, removal reasons, state histories, live-from/until and CVE
// exposure that the domain's fold (libs/ledger-model evolveHostStack, cveExposure) gives.
// LEDGER_PROPERTY_SEED=<n> replays a failing run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import {
  ExposureInterval,
  HostStack,
  StackInterval,
  cveExposure,
  emptyHostStack,
  evolveHostStack,
  fixPublications,
  hostFactOf,
} from '@rebootless/ledger-model';
import { LedgerDatabase } from '../database';
import { LedgerProjection, writeStaged } from '../projection';
import { LedgerQueries } from '../queries';
import { createScratchDatabase } from '../scripted-log';
import { intervalFromRow } from './columns';
import { CATALOG, Prng, RELEASE, catalogEvents, randomHostHistory } from './random-host-history';

const SEED = Number(process.env['LEDGER_PROPERTY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const HOSTS = 2_000;

const ms = (b: events.EventBody) => Number(b.occurredAt!.seconds) * 1000;

/** The log: the catalog first, then the hosts' histories interleaved (each host's own order kept). */
function randomLog(rng: Prng): events.EventBody[] {
  const queues = Array.from({ length: HOSTS }, (_, h) =>
    randomHostHistory(rng, `host-${String(h).padStart(4, '0')}`, 5 + rng.int(40), 1000 + rng.int(600)),
  );
  const log = catalogEvents();
  const live = queues.filter((q) => q.length > 0);
  while (live.length > 0) {
    const i = rng.int(live.length);
    log.push(live[i]!.shift()!);
    if (live[i]!.length === 0) live.splice(i, 1);
  }
  return log;
}

/** What the domain says: every interval of every host as evolveHostStack left it, and each host's stack. */
function domainFold(log: readonly events.EventBody[]) {
  const stacks = new Map<string, HostStack>();
  const intervals = new Map<string, StackInterval>();
  const enrolled = new Map<string, { at: number; eventId: string }>();
  for (const b of log) {
    const fact = hostFactOf(b);
    if (!fact) continue;
    const hostId = b.stream.slice('host/'.length);
    if (fact.type === 'HostEnrolled' && !enrolled.has(hostId)) enrolled.set(hostId, { at: ms(b), eventId: b.eventId });
    const change = evolveHostStack(stacks.get(hostId) ?? emptyHostStack(hostId), fact, {
      eventId: b.eventId,
      at: ms(b),
      ...(b.actor ? { actor: b.actor } : {}),
      rolloutId: b.correlationId,
    });
    stacks.set(hostId, change.stack);
    for (const i of change.changed) intervals.set(i.intervalId, i);
  }
  return { stacks, intervals: [...intervals.values()], enrolled };
}

function domainExposure(log: readonly events.EventBody[], folded: ReturnType<typeof domainFold>): ExposureInterval[] {
  const published = catalogEvents().map((b) => {
    const p = b.patchPublished!;
    return {
      patchId: p.patchId,
      version: p.version,
      replace: p.replace,
      cves: p.cves,
      severity: p.severity,
      publishedAt: ms(b),
      publishedEventId: b.eventId,
      retracted: false,
      artifacts: p.artifacts.map((a) => ({ kernelRelease: a.kernelRelease, moduleName: '', functions: [] })),
    };
  });
  const cves = new Map(CATALOG.map((p) => [`${p.patchId}@${p.version}`, p.cves]));
  const fixes = fixPublications(published);
  const out: ExposureInterval[] = [];
  for (const [hostId, e] of [...folded.enrolled].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const intervals = folded.intervals
      .filter((i) => i.hostId === hostId)
      .sort((a, b) => a.stackSeq - b.stackSeq)
      .map((i) => ({ ...i, cves: cves.get(`${i.patchId}@${i.version}`) ?? [] }));
    out.push(
      ...cveExposure(
        {
          hostId,
          enrolledAt: e.at,
          enrolledEventId: e.eventId,
          kernels: [{ release: RELEASE, from: e.at, eventId: e.eventId }],
          intervals,
        },
        fixes,
      ),
    );
  }
  return out;
}

/** The production projection over the same log, in batches of random size, reloaded from the database now and then. */
async function project(db: LedgerDatabase, log: readonly events.EventBody[], rng: Prng): Promise<void> {
  const projection = new LedgerProjection(db, 'property');
  await projection.load();
  let offset = 0;
  while (offset < log.length) {
    const batch = log.slice(offset, offset + 1 + rng.int(400));
    for (const body of batch) {
      projection.apply({
        partition: 0,
        offset: String(offset),
        envelope: Buffer.from(events.EventBody.encode(body).finish()),
        body,
      });
      offset += 1;
    }
    const staged = projection.take(0, BigInt(offset));
    await db.transaction((q) => writeStaged(q, staged));
    // What a restart does: memory read back from the rows.
    if (rng.chance(0.05)) await projection.load();
  }
}

const byInterval = (a: StackInterval, b: StackInterval) =>
  a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : a.stackSeq - b.stackSeq;
const byExposure = (a: ExposureInterval, b: ExposureInterval) =>
  `${a.hostId} ${a.cveId} ${a.exposedFrom}`.localeCompare(`${b.hostId} ${b.cveId} ${b.exposedFrom}`);

describe.each(['sqlite', 'postgres'] as const)(
  `host stacks folded by the projection on %s equal the domain fold (seed ${SEED})`,
  (dialect) => {
    let db: LedgerDatabase;
    let drop: (() => Promise<void>) | undefined;
    let log: events.EventBody[];
    let folded: ReturnType<typeof domainFold>;

    beforeAll(async () => {
      const rng = new Prng(SEED);
      log = randomLog(rng);
      folded = domainFold(log);
      if (dialect === 'postgres') {
        const scratch = await createScratchDatabase('ledger_fold');
        drop = scratch.drop;
        db = await LedgerDatabase.open({ databaseUrl: scratch.url });
      } else {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-fold-'));
        db = await LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
      }
      await project(db, log, new Prng(SEED + 1));
    }, 600_000);

    afterAll(async () => {
      await db?.close();
      await drop?.();
    });

    it(`stores every interval as the domain folds it: stack order, removal reasons, state history, live from/until (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
      const stored = (await db.query('SELECT * FROM stack_intervals')).map(intervalFromRow).sort(byInterval);
      const expected = folded.intervals.map((i) => ({ ...i, cves: [] })).sort(byInterval);
      expect(stored.length).toBeGreaterThan(HOSTS);
      // The histories reach every removal reason the domain knows, forced included.
      expect(new Set(stored.map((i) => i.removalReason))).toEqual(
        new Set([null, 'reverted', 'replaced', 'rebooted', 'forced', 'inventory']),
      );
      expect(stored).toEqual(expected);
    });

    it(`keeps each host's boot, stack sequence and last observation as the domain's stack (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
      const hosts = await db.query(
        'SELECT host_id, boot_id, stack_counter, stack_observed_at FROM hosts ORDER BY host_id',
      );
      expect(hosts.length).toBe(HOSTS);
      for (const h of hosts) {
        const s = folded.stacks.get(String(h['host_id']))!;
        expect([
          String(h['boot_id']),
          Number(h['stack_counter']),
          h['stack_observed_at'] === null ? null : Number(h['stack_observed_at']),
        ]).toEqual([s.bootId, s.nextStackSeq - 1, s.observedAt]);
      }
    });

    it(`gives the CVE exposure the domain computes from the same history (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
      const q = new LedgerQueries(db, { onlineWindowMs: 600_000, now: () => Date.now() });
      const actual = (await q.exposures()).sort(byExposure);
      const expected = domainExposure(log, folded).sort(byExposure);
      expect(actual.length).toBeGreaterThan(HOSTS);
      expect(actual).toEqual(expected);
    });
  },
);
