import { num } from '../database';
import type { ActorRow } from '../audit/columns';

// The rollouts read model's rows: each rollout and each host's outcome in it.

/**
 * JSON with every object's keys in order: the fold sets a run's fields in the order its events
 * came, which differs between readers that interleaved the partitions differently. Written out
 * here, as JSON.stringify would write the sorted object, without building that object (this runs
 * for every host a batch touches).
 */
export function canonicalJson(value: unknown): string {
  return canonical(value) as string;
}

function canonical(v: unknown): string | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('a bigint has no JSON');
    case 'object': {
      const toJSON = (v as { toJSON?: () => unknown }).toJSON;
      if (typeof toJSON === 'function') return canonical(toJSON.call(v));
      if (Array.isArray(v)) return `[${v.map((x: unknown) => canonical(x) ?? 'null').join(',')}]`;
      const o = v as Record<string, unknown>;
      const parts: string[] = [];
      for (const k of Object.keys(o).sort()) {
        const text = canonical(o[k]);
        if (text !== undefined) parts.push(`${JSON.stringify(k)}:${text}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      return undefined; // undefined, a function or a symbol: left out, as JSON.stringify does
  }
}

const json = canonicalJson;
const flag = (b: boolean) => (b ? 1 : 0);

export interface WaveRow {
  index: number;
  name: string;
  state: number;
  startedAt: number | null;
  completedAt: number | null;
}

export interface RolloutRow {
  rolloutId: string;
  patchId: string;
  version: string;
  state: number;
  createdAt: number;
  updatedAt: number;
  createdBy: ActorRow;
  /** events.HostSelector / RolloutStrategy as their protobuf JSON. */
  selector: unknown;
  strategy: unknown;
  waves: WaveRow[];
  currentWave: number;
  succeeded: number;
  failed: number;
  skipped: number;
  reason: string;
  /** The rollout fold's record of it (libs/rollout runRecord), JSON: the row's other columns are derived from it. */
  foldState: string;
}

export interface RolloutHostRow {
  rolloutId: string;
  hostId: string;
  waveIndex: number;
  commandId: string;
  /** dispatcher.v1.HostRolloutState */
  outcome: number;
  detail: string;
  /** When the host's stream last changed it (0: only planned so far). */
  updatedAt: number;
  /** The rollout's plan names it (RolloutCreated seen). */
  planned: boolean;
  /** The host's run in the rollout fold (libs/rollout HostRun), JSON; '' for a host skipped at planning. */
  foldState: string;
}

export const ROLLOUT_COLUMNS = [
  'rollout_id',
  'patch_id',
  'version',
  'state',
  'created_at',
  'updated_at',
  'created_by',
  'selector',
  'strategy',
  'waves',
  'current_wave',
  'succeeded',
  'failed',
  'skipped',
  'reason',
  'fold_state',
];
export const rolloutValues = (r: RolloutRow) => [
  r.rolloutId,
  r.patchId,
  r.version,
  // A TEXT column: as text, or SQLite keeps a number bound as a double as '1.0' where
  // PostgreSQL has '1', and ledger verify (stored PostgreSQL against a SQLite re-fold) differs.
  String(r.state),
  r.createdAt,
  r.updatedAt,
  json(r.createdBy),
  json(r.selector),
  json(r.strategy),
  json(r.waves),
  r.currentWave,
  r.succeeded,
  r.failed,
  r.skipped,
  r.reason,
  r.foldState,
];
export function rolloutFromRow(r: Record<string, unknown>): RolloutRow {
  return {
    rolloutId: String(r['rollout_id']),
    patchId: String(r['patch_id']),
    version: String(r['version']),
    state: num(r['state']),
    createdAt: num(r['created_at']),
    updatedAt: num(r['updated_at']),
    createdBy: JSON.parse(String(r['created_by'])) as ActorRow,
    selector: JSON.parse(String(r['selector'])) as unknown,
    strategy: JSON.parse(String(r['strategy'])) as unknown,
    waves: JSON.parse(String(r['waves'])) as WaveRow[],
    currentWave: num(r['current_wave']),
    succeeded: num(r['succeeded']),
    failed: num(r['failed']),
    skipped: num(r['skipped']),
    reason: String(r['reason']),
    foldState: String(r['fold_state'] ?? ''),
  };
}

export const ROLLOUT_HOST_COLUMNS = [
  'rollout_id',
  'host_id',
  'wave_index',
  'command_id',
  'outcome',
  'detail',
  'updated_at',
  'planned',
  'fold_state',
];
export const rolloutHostValues = (r: RolloutHostRow) => [
  r.rolloutId,
  r.hostId,
  r.waveIndex,
  r.commandId,
  r.outcome,
  r.detail,
  r.updatedAt,
  flag(r.planned),
  r.foldState,
];
export function rolloutHostFromRow(r: Record<string, unknown>): RolloutHostRow {
  return {
    rolloutId: String(r['rollout_id']),
    hostId: String(r['host_id']),
    waveIndex: num(r['wave_index']),
    commandId: String(r['command_id']),
    outcome: num(r['outcome']),
    detail: String(r['detail']),
    updatedAt: num(r['updated_at']),
    planned: num(r['planned']) === 1,
    foldState: String(r['fold_state'] ?? ''),
  };
}
