import { dispatcher, events, ledger } from '@rebootless/contracts';
import { LedgerDatabase, num } from '../database';
import { InvalidArgumentError, NotFoundError } from '../errors';
import { auditRecord } from '../audit/queries';
import { ts } from '../query-paging';
import { rolloutFromRow, rolloutHostFromRow } from './columns';
import { hostStateCounts, hostStateTotals, requestedView } from '@rebootless/rollout';

// The rollouts' queries.

/**
 * The rollout as the ledger folded it. The summary view counts hosts in SQL and answers only the
 * rollout's own events: at 100,000 hosts the full view is every host and about 300,000 records.
 */
export async function getRollout(
  db: LedgerDatabase,
  rolloutId: string,
  view?: dispatcher.RolloutView,
): Promise<ledger.GetRolloutResponse> {
  if (!rolloutId) throw new InvalidArgumentError('rollout_id', 'is required');
  const asked = requestedView(view);
  if ('problem' in asked) throw new InvalidArgumentError('view', asked.problem);
  const summary = asked.view === dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY;
  const rows = await db.query('SELECT * FROM rollouts WHERE rollout_id = $1', [rolloutId]);
  if (rows.length === 0) throw new NotFoundError(`rollout ${rolloutId} is not in the log`);
  const ro = rolloutFromRow(rows[0]!);
  const waves = summary ? await waveCounts(db, rolloutId) : await waveHosts(db, rolloutId);
  const timeline = await db.query(
    `SELECT * FROM audit_log WHERE correlation_id = $1 AND correlation_id <> ''${summary ? " AND host_id = ''" : ''}
     ORDER BY occurred_at, partition_no, record_offset`,
    [rolloutId],
  );
  return {
    rollout: {
      rolloutId: ro.rolloutId,
      kind: 0,
      patchId: ro.patchId,
      version: ro.version,
      selector: ro.selector as events.HostSelector,
      strategy: ro.strategy as events.RolloutStrategy,
      state: ro.state,
      stateReason: ro.reason,
      waves: ro.waves.map((w) => {
        const hosts = waves.hosts.get(w.index) ?? [];
        return {
          index: w.index,
          name: w.name,
          state: w.state,
          hosts,
          startedAt: ts(w.startedAt),
          completedAt: ts(w.completedAt),
          hostCounts: waves.counts.get(w.index) ?? hostStateCounts(hosts.map((h) => h.state)),
        };
      }),
      skippedHostIds: waves.skipped,
      skippedHosts: waves.skippedHosts,
      allowForce: false,
      allowDowngrade: false,
      createdBy: ro.createdBy,
      createdAt: ts(ro.createdAt),
      updatedAt: ts(ro.updatedAt),
    },
    timeline: timeline.map((r) => auditRecord(r, false)),
  };
}

/** A rollout's hosts by wave (wave -1: hosts the plan skipped). */
interface WaveHosts {
  hosts: Map<number, dispatcher.HostProgress[]>;
  counts: Map<number, dispatcher.HostStateCount[]>;
  skipped: string[];
  skippedHosts: number;
}

async function waveHosts(db: LedgerDatabase, rolloutId: string): Promise<WaveHosts> {
  const rows = await db.query('SELECT * FROM rollout_hosts WHERE rollout_id = $1 ORDER BY host_id', [rolloutId]);
  const hosts = new Map<number, dispatcher.HostProgress[]>();
  const skipped: string[] = [];
  for (const h of rows.map(rolloutHostFromRow)) {
    if (h.waveIndex === -1 && h.planned) skipped.push(h.hostId);
    let wave = hosts.get(h.waveIndex);
    if (!wave) hosts.set(h.waveIndex, (wave = []));
    wave.push({
      hostId: h.hostId,
      state: h.outcome,
      commandId: h.commandId,
      error: h.detail,
      forced: h.detail === 'forced',
      updatedAt: ts(h.updatedAt),
    });
  }
  return { hosts, counts: new Map(), skipped, skippedHosts: skipped.length };
}

async function waveCounts(db: LedgerDatabase, rolloutId: string): Promise<WaveHosts> {
  const rows = await db.query(
    `SELECT wave_index, outcome, planned, COUNT(*) AS n FROM rollout_hosts WHERE rollout_id = $1
     GROUP BY wave_index, outcome, planned`,
    [rolloutId],
  );
  const states = new Map<number, [dispatcher.HostRolloutState, number][]>();
  let skippedHosts = 0;
  for (const r of rows) {
    const wave = num(r['wave_index']);
    const n = num(r['n']);
    if (wave === -1 && num(r['planned']) === 1) skippedHosts += n;
    let list = states.get(wave);
    if (!list) states.set(wave, (list = []));
    list.push([num(r['outcome']), n]);
  }
  const counts = new Map([...states].map(([wave, list]) => [wave, hostStateTotals(list)] as const));
  return { hosts: new Map(), counts, skipped: [], skippedHosts };
}
