// Property: the ledger's read models do not depend on how it interleaved the partitions. The same
// random rollout histories (random-rollout-history.ts), each record on the partition its stream
// hashes to, are projected in the order written into PostgreSQL, and in two other orders that
// keep each partition's own order into SQLite: runs of random length from a random partition, and
// one partition after another. Every read-model table, the rollout fold's state (`fold_state`,
// `rollout_book`) included, is then compared row by row by `ledger verify`'s own comparison.
// LEDGER_PROPERTY_SEED=<n> replays a run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { LedgerDatabase } from '../database';
import { LedgerProjection, writeStaged } from '../projection';
import { compareReadModels } from '../read-model-check';
import { createScratchDatabase } from '../scripted-log';
import { END_STATES, Entry, bodyOf, randomScenario } from './random-rollout-history';
import { Prng } from '../stacks/random-host-history';

const RANDOM_SEED = Number(process.env['LEDGER_PROPERTY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
/**
 * Seeds that once found a difference, run every time: 1901788370, a host's apply in one rollout
 * taken over by another rollout's command that was read before that rollout's creation.
 */
const FOUND = [1901788370];
const SEEDS = process.env['LEDGER_PROPERTY_SEED'] ? [RANDOM_SEED] : [RANDOM_SEED, ...FOUND];
const SCENARIOS = 60;
const PARTITIONS = 4;
process.stderr.write(`rollout-interleaving property test: LEDGER_PROPERTY_SEED=${RANDOM_SEED}\n`);

interface Placed {
  partition: number;
  offset: number;
  body: events.EventBody;
}

/** Each record on its stream's partition (a fixed hash, as Kafka's key hash), offsets in written order. */
function place(log: readonly events.EventBody[]): Placed[][] {
  const partitions: Placed[][] = Array.from({ length: PARTITIONS }, () => []);
  for (const body of log) {
    let h = 0;
    for (const c of body.stream) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0;
    const list = partitions[h % PARTITIONS]!;
    list.push({ partition: h % PARTITIONS, offset: list.length, body });
  }
  return partitions;
}

/** The records in written order. */
function asWritten(log: readonly events.EventBody[], partitions: Placed[][]): Placed[] {
  const byBody = new Map(partitions.flat().map((p) => [p.body, p]));
  return log.map((b) => byBody.get(b)!);
}

/** Runs of 1 to 300 records from a random partition at a time: partitions far ahead of each other. */
function inRuns(partitions: Placed[][], rng: Prng): Placed[] {
  const at = partitions.map(() => 0);
  const out: Placed[] = [];
  for (;;) {
    const open = partitions.map((_, i) => i).filter((i) => at[i]! < partitions[i]!.length);
    if (open.length === 0) return out;
    const p = rng.pick(open);
    const n = 1 + rng.int(300);
    out.push(...partitions[p]!.slice(at[p], at[p]! + n));
    at[p] = Math.min(at[p]! + n, partitions[p]!.length);
  }
}

/** Every partition to its end, the last one first. */
function onePartitionAfterAnother(partitions: Placed[][]): Placed[] {
  return [...partitions].reverse().flat();
}

async function project(db: LedgerDatabase, records: readonly Placed[], rng: Prng): Promise<void> {
  const projection = new LedgerProjection(db, 'rollout-interleaving');
  await projection.load();
  const next = new Map<number, bigint>();
  let i = 0;
  while (i < records.length) {
    for (const r of records.slice(i, i + 1 + rng.int(60))) {
      projection.apply({
        partition: r.partition,
        offset: String(r.offset),
        envelope: Buffer.from(events.EventBody.encode(r.body).finish()),
        body: r.body,
      });
      next.set(r.partition, BigInt(r.offset + 1));
      i += 1;
    }
    const staged = projection.take(next);
    await db.transaction((q) => writeStaged(q, staged));
    // A restart: the folds read back from the rows.
    if (rng.chance(0.3)) await projection.load();
  }
}

async function sqlite(): Promise<LedgerDatabase> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-interleaving-'));
  return LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
}

describe.each(SEEDS)(`the ledger's read models whatever order it reads the partitions in (seed %i)`, (SEED) => {
  let written: LedgerDatabase;
  let drop: (() => Promise<void>) | undefined;
  const others: [string, LedgerDatabase][] = [];
  let log: events.EventBody[] = [];

  beforeAll(async () => {
    const rng = new Prng(SEED);
    const entries: Entry[] = [];
    for (let s = 0; s < SCENARIOS; s++) randomScenario(rng, s, entries, END_STATES[s % END_STATES.length]!);
    log = entries.map(bodyOf);
    const partitions = place(log);
    const scratch = await createScratchDatabase('ledger_interleaving');
    drop = scratch.drop;
    written = await LedgerDatabase.open({ databaseUrl: scratch.url });
    await project(written, asWritten(log, partitions), new Prng(SEED + 1));
    for (const [name, order] of [
      ['runs of random length from one partition at a time', inRuns(partitions, new Prng(SEED + 2))],
      ['one partition after another', onePartitionAfterAnother(partitions)],
    ] as const) {
      const db = await sqlite();
      await project(db, order, new Prng(SEED + 3));
      others.push([name, db]);
    }
  }, 600_000);

  afterAll(async () => {
    await written?.close();
    await drop?.();
    for (const [, db] of others) await db.close();
  });

  it(`the histories resume rollouts whose hosts failed, and commands overtake their rollout (LEDGER_PROPERTY_SEED=${SEED})`, () => {
    // What the orders must be able to disagree on, or the comparison below proves nothing.
    expect(log.filter((b) => b.type === 'RolloutResumed').length).toBeGreaterThan(5);
    expect(log.filter((b) => b.type === 'PatchApplyFailed').length).toBeGreaterThan(5);
    const partitions = place(log);
    const order = inRuns(partitions, new Prng(SEED + 2));
    const created = new Set<string>();
    let overtaking = 0;
    for (const r of order) {
      if (r.body.type === 'RolloutCreated') created.add(r.body.correlationId);
      if (r.body.type === 'HostApplyRequested' && !created.has(r.body.correlationId)) overtaking += 1;
    }
    expect(overtaking).toBeGreaterThan(0);
  });

  it.each([0, 1])(
    `gives every table, the rollout fold's state included, row for row the rows of the written order (order %i, LEDGER_PROPERTY_SEED=${SEED})`,
    async (i) => {
      const [, db] = others[i]!;
      const check = await compareReadModels(written, db);
      expect(check.tables).toEqual(expect.arrayContaining(['rollouts', 'rollout_hosts', 'rollout_book', 'hosts']));
      expect(check.rowsCompared).toBeGreaterThan(log.length);
      expect(check.differences).toEqual([]);
      const folds = await written.query(`SELECT COUNT(*) AS n FROM rollouts WHERE fold_state LIKE '%resumedAt%'`);
      expect(Number(folds[0]!['n'])).toBeGreaterThan(0);
    },
  );

  it(`an edit of the fold's state by a database administrator is a difference ledger verify reports (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
    // Forgiving a failure by hand (moving the resume later) and forgetting a warned host.
    const [run] = await written.query<{ rollout_id: string; fold_state: string }>(
      `SELECT rollout_id, fold_state FROM rollouts WHERE fold_state LIKE '%resumedAt%' ORDER BY rollout_id LIMIT 1`,
    );
    const [entry] = await written.query<{ book_key: string }>(
      `SELECT book_key FROM rollout_book ORDER BY book_key LIMIT 1`,
    );
    const forged = JSON.stringify({ ...(JSON.parse(run!.fold_state) as object), resumedAt: 4_102_444_800_000 });
    await written.query('UPDATE rollouts SET fold_state = $1 WHERE rollout_id = $2', [forged, run!.rollout_id]);
    await written.query('DELETE FROM rollout_book WHERE book_key = $1', [entry!.book_key]);

    const check = await compareReadModels(written, others[0]![1]);
    expect(check.differences).toEqual([
      {
        table: 'rollouts',
        key: `rollout_id=${run!.rollout_id}`,
        kind: 'changed',
        column: 'fold_state',
        stored: forged,
        fromLog: run!.fold_state,
      },
      { table: 'rollout_book', key: `book_key=${entry!.book_key}`, kind: 'missing' },
    ]);
  });
});
