// Property: for random but valid rollout histories (the dispatcher's own decider writes the
// waves and commands; operators approve, pause, resume, abort and roll back; agents answer
// applied, failed, forced, slow, reverted or not at all; hosts drift, warn and reboot), the
// production projection, writing to SQLite and to PostgreSQL in batches of random size and
// reloading from the database now and then, stores for every rollout the dispatcher's own fold
// state and the rows the dispatcher's view gives of it; after every batch, the rows it keeps (it
// derives only the hosts an event touched) equal those derived from the whole rollout again.
// LEDGER_PROPERTY_SEED=<n> replays a run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dispatcher, events, fromTimestamp } from '@rebootless/contracts';
import { RolloutRun, rolloutView, runRecord } from '@rebootless/rollout';
import { LedgerDatabase } from '../database';
import { LedgerProjection, writeStaged } from '../projection';
import { createScratchDatabase } from '../scripted-log';
import { rolloutFromRow, rolloutHostFromRow, rolloutHostValues, rolloutValues } from './columns';
import { hostRows, rolloutRow } from './read-model';
import { END_STATES, Entry, bodyOf, randomScenario } from './random-rollout-history';
import { Prng } from '../stacks/random-host-history';

// A new seed each run (printed, and in the tests' names); the generator reaches every end state
// whatever the seed. LEDGER_PROPERTY_SEED=<n> replays one.
const SEED = Number(process.env['LEDGER_PROPERTY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const SCENARIOS = 150;
process.stderr.write(`rollout-fold property test: LEDGER_PROPERTY_SEED=${SEED}\n`);

async function project(db: LedgerDatabase, log: readonly events.EventBody[], rng: Prng): Promise<void> {
  const projection = new LedgerProjection(db, 'rollout-property');
  await projection.load();
  let offset = 0;
  while (offset < log.length) {
    for (const body of log.slice(offset, offset + 1 + rng.int(40))) {
      projection.apply({
        partition: 0,
        offset: String(offset),
        envelope: Buffer.from(events.EventBody.encode(body).finish()),
        body,
      });
      offset += 1;
    }
    const staged = projection.take(new Map([[0, BigInt(offset)]]));
    await db.transaction((q) => writeStaged(q, staged));
    await expectRowsOfWholeRollouts(db, projection);
    // What a restart does: the rollout fold read back from the rows.
    if (rng.chance(0.5)) await projection.load();
  }
}

/** The stored rows equal those derived from each whole rollout as folded now. */
async function expectRowsOfWholeRollouts(db: LedgerDatabase, projection: LedgerProjection): Promise<void> {
  const hosts = new Map(
    (await db.query('SELECT * FROM rollout_hosts'))
      .map(rolloutHostFromRow)
      .map((h) => [`${h.rolloutId}/${h.hostId}`, h]),
  );
  for (const stored of (await db.query('SELECT * FROM rollouts')).map(rolloutFromRow)) {
    const run = projection.rolloutModel.get(stored.rolloutId);
    if (!run) continue; // stored before the fold state was (none here)
    expect(rolloutValues(stored)).toEqual(rolloutValues(rolloutRow(run)));
    for (const row of hostRows(run)) {
      const kept = hosts.get(`${row.rolloutId}/${row.hostId}`);
      expect(kept && rolloutHostValues(kept)).toEqual(rolloutHostValues(row));
    }
  }
}

const ms = (ts: { seconds: string; nanos: number } | undefined) => (ts ? fromTimestamp(ts).getTime() : null);

describe.each(['sqlite', 'postgres'] as const)(
  `rollout rows projected on %s equal the dispatcher's fold (seed ${SEED})`,
  (dialect) => {
    let db: LedgerDatabase;
    let drop: (() => Promise<void>) | undefined;
    const runs: RolloutRun[] = [];

    beforeAll(async () => {
      const rng = new Prng(SEED);
      const entries: Entry[] = [];
      for (let s = 0; s < SCENARIOS; s++)
        runs.push(...randomScenario(rng, s, entries, END_STATES[s % END_STATES.length]!).book.all());
      const log = entries.map(bodyOf);
      if (dialect === 'postgres') {
        const scratch = await createScratchDatabase('ledger_rollout_fold');
        drop = scratch.drop;
        db = await LedgerDatabase.open({ databaseUrl: scratch.url });
      } else {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-rollout-fold-'));
        db = await LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
      }
      await project(db, log, new Prng(SEED + 1));
    }, 600_000);

    afterAll(async () => {
      await db?.close();
      await drop?.();
    });

    it(`stores each rollout's fold state as the dispatcher folds it (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
      const rows = new Map((await db.query('SELECT * FROM rollouts')).map(rolloutFromRow).map((r) => [r.rolloutId, r]));
      const hostRows = (await db.query('SELECT * FROM rollout_hosts')).map(rolloutHostFromRow);
      const lists = new Map(
        (await db.query('SELECT * FROM rollout_host_lists')).map((r) => [
          `${String(r['rollout_id'])}/${String(r['list'])}`,
          JSON.parse(String(r['host_ids'])) as string[],
        ]),
      );
      expect(runs.length).toBeGreaterThan(SCENARIOS);
      expect([...rows.keys()].sort()).toEqual(runs.map((r) => r.rolloutId).sort());
      // The histories reach every state a rollout can end a history in.
      expect(new Set(runs.map((r) => r.status))).toEqual(new Set(END_STATES));
      for (const run of runs) {
        // The record as stored, with the plan's host lists from their own table.
        const record = JSON.parse(rows.get(run.rolloutId)!.foldState) as ReturnType<typeof runRecord>;
        const whole = {
          ...record,
          waves: record.waves.map((w) => ({ ...w, hostIds: lists.get(`${run.rolloutId}/wave/${w.index}`) })),
          skippedHostIds: lists.get(`${run.rolloutId}/skipped`),
        };
        expect(whole).toEqual(JSON.parse(JSON.stringify(runRecord(run))));
        for (const host of run.hosts.values()) {
          const row = hostRows.find((h) => h.rolloutId === run.rolloutId && h.hostId === host.hostId)!;
          expect(JSON.parse(row.foldState)).toEqual(JSON.parse(JSON.stringify(host)));
        }
      }
    });

    it(`gives each rollout and host the state, counts, waves and errors of the dispatcher's view (LEDGER_PROPERTY_SEED=${SEED})`, async () => {
      const rows = new Map((await db.query('SELECT * FROM rollouts')).map(rolloutFromRow).map((r) => [r.rolloutId, r]));
      const hostRows = (await db.query('SELECT * FROM rollout_hosts')).map(rolloutHostFromRow);
      const H = dispatcher.HostRolloutState;
      const seenStates = new Set<number>();
      for (const run of runs) {
        const view = rolloutView(run, run.updatedAt);
        const row = rows.get(run.rolloutId)!;
        const hosts = view.waves.flatMap((w) => w.hosts);
        seenStates.add(view.state);
        expect({
          state: row.state,
          reason: row.reason,
          updatedAt: row.updatedAt,
          waves: row.waves,
          succeeded: row.succeeded,
          failed: row.failed,
          skipped: row.skipped,
        }).toEqual({
          state: view.state,
          reason: view.stateReason,
          updatedAt: run.updatedAt,
          waves: view.waves.map((w) => ({
            index: w.index,
            name: w.name,
            state: w.state,
            startedAt: ms(w.startedAt),
            completedAt: ms(w.completedAt),
          })),
          succeeded: hosts.filter((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED).length,
          failed: hosts.filter(
            (h) => h.state === H.HOST_ROLLOUT_STATE_FAILED || h.state === H.HOST_ROLLOUT_STATE_TIMED_OUT,
          ).length,
          skipped: hosts.filter((h) => h.state === H.HOST_ROLLOUT_STATE_SKIPPED).length + view.skippedHostIds.length,
        });
        const stored = hostRows
          .filter((h) => h.rolloutId === run.rolloutId && h.waveIndex >= 0)
          .map((h) => ({
            hostId: h.hostId,
            state: h.outcome,
            commandId: h.commandId,
            error: h.detail,
            at: h.updatedAt,
          }))
          .sort((a, b) => a.hostId.localeCompare(b.hostId));
        expect(stored).toEqual(
          hosts
            .map((h) => ({
              hostId: h.hostId,
              state: h.state,
              commandId: h.commandId,
              error: h.error,
              at: ms(h.updatedAt) ?? 0,
            }))
            .sort((a, b) => a.hostId.localeCompare(b.hostId)),
        );
      }
      // Awaiting approval and rolled back, the two states the ledger's own fold used to get wrong, are among them.
      const R = dispatcher.RolloutState;
      expect(seenStates).toContain(R.ROLLOUT_STATE_AWAITING_APPROVAL);
      expect(seenStates).toContain(R.ROLLOUT_STATE_ROLLED_BACK);
    });
  },
);
