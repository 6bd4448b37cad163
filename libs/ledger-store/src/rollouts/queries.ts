import { events, ledger } from '@rebootless/contracts';
import { LedgerDatabase } from '../database';
import { InvalidArgumentError, NotFoundError } from '../errors';
import { auditRecord } from '../audit/queries';
import { ts } from '../query-paging';
import { rolloutFromRow, rolloutHostFromRow } from './columns';
import { hostStateCounts } from '@rebootless/rollout';

// The rollouts' queries.

export async function getRollout(db: LedgerDatabase, rolloutId: string): Promise<ledger.GetRolloutResponse> {
  if (!rolloutId) throw new InvalidArgumentError('rollout_id', 'is required');
  const rows = await db.query('SELECT * FROM rollouts WHERE rollout_id = $1', [rolloutId]);
  if (rows.length === 0) throw new NotFoundError(`rollout ${rolloutId} is not in the log`);
  const ro = rolloutFromRow(rows[0]!);
  const hosts = (await db.query('SELECT * FROM rollout_hosts WHERE rollout_id = $1 ORDER BY host_id', [rolloutId])).map(
    rolloutHostFromRow,
  );
  const timeline = await db.query(
    "SELECT * FROM audit_log WHERE correlation_id = $1 AND correlation_id <> '' ORDER BY occurred_at, partition_no, record_offset",
    [rolloutId],
  );
  const skipped = hosts.filter((h) => h.waveIndex === -1 && h.planned).map((h) => h.hostId);
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
        const waveHosts = hosts
          .filter((h) => h.waveIndex === w.index)
          .map((h) => ({
            hostId: h.hostId,
            state: h.outcome,
            commandId: h.commandId,
            error: h.detail,
            forced: h.detail === 'forced',
            updatedAt: ts(h.updatedAt),
          }));
        return {
          index: w.index,
          name: w.name,
          state: w.state,
          hosts: waveHosts,
          startedAt: ts(w.startedAt),
          completedAt: ts(w.completedAt),
          hostCounts: hostStateCounts(waveHosts.map((h) => h.state)),
        };
      }),
      skippedHostIds: skipped,
      skippedHosts: skipped.length,
      allowForce: false,
      allowDowngrade: false,
      createdBy: ro.createdBy,
      createdAt: ts(ro.createdAt),
      updatedAt: ts(ro.updatedAt),
    },
    timeline: timeline.map((r) => auditRecord(r, false)),
  };
}
