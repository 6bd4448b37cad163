// RolloutService's use cases: check the request, let the domain decide, write the events
// (before anything else happens), answer with the rollout as it stands after the write.
import { dispatcher, events } from '@rebootless/contracts';
import { uuidv7 } from '@rebootless/events';
import {
  abort,
  approve,
  effectiveStrategy,
  firstWaveApproval,
  hostStateCounts,
  pause,
  planRollout,
  requestedView,
  requireRolloutId,
  resume,
  rollBack,
  rolloutState,
  type RolloutEvent,
  type RolloutRun,
} from '@rebootless/rollout';
import { InvalidRequestError } from './dispatcher-errors';
import type { RolloutEngine } from './rollout-engine';

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;

export class RolloutOperations {
  constructor(private readonly engine: RolloutEngine) {}

  async create(
    request: dispatcher.CreateRolloutRequest,
    actor: events.Actor,
    mayWaiveApproval: boolean,
  ): Promise<dispatcher.Rollout> {
    return this.engine.exclusive(async () => {
      const rolloutId = uuidv7();
      const approval = firstWaveApproval(
        {
          skipApproval: request.skipApproval,
          allowForce: request.allowForce,
          allowDowngrade: request.allowDowngrade,
          strategy: effectiveStrategy(request.strategy),
        },
        { id: actor.id, mayWaiveApproval },
      );
      const created = {
        ...planRollout(
          rolloutId,
          {
            patchId: request.patchId,
            version: request.version,
            selector: request.selector,
            strategy: approval.strategy,
            allowForce: request.allowForce,
            allowDowngrade: request.allowDowngrade,
          },
          this.engine.fleet,
          this.engine.catalog,
        ),
        approvalWaived: approval.approvalWaived,
      };
      if (request.dryRun) return dryRunView(created, actor);
      await this.engine.write(undefined, [{ type: 'RolloutCreated', data: created }], actor);
      this.engine.scheduleTick();
      return this.engine.view(this.engine.get(rolloutId));
    });
  }

  get(rolloutId: string, view?: dispatcher.RolloutView): dispatcher.Rollout {
    return this.engine.view(this.engine.get(requireRolloutId(rolloutId)), requireView(view));
  }

  list(request: dispatcher.ListRolloutsRequest): dispatcher.ListRolloutsResponse {
    if (request.pageSize > MAX_PAGE_SIZE) {
      throw new InvalidRequestError('page_size', `${request.pageSize} is over the maximum of ${MAX_PAGE_SIZE}`);
    }
    const size = request.pageSize || DEFAULT_PAGE_SIZE;
    let start = 0;
    if (request.pageToken) {
      start = Number(Buffer.from(request.pageToken, 'base64url').toString());
      if (!Number.isInteger(start) || start < 0)
        throw new InvalidRequestError('page_token', 'is not a token this server gave');
    }
    const view = requireView(request.view);
    const states = new Set(request.states);
    // Newest first: rollout ids are UUIDv7, ordered by creation time.
    const matching = [...this.engine.book.all()]
      .filter((run) => !request.patchId || run.patchId === request.patchId)
      .filter((run) => states.size === 0 || states.has(rolloutState(run)))
      .sort((a, b) => (a.rolloutId < b.rolloutId ? 1 : -1));
    const page = matching.slice(start, start + size);
    const next = start + size < matching.length ? Buffer.from(String(start + size)).toString('base64url') : '';
    return { rollouts: page.map((run) => this.engine.view(run, view)), nextPageToken: next };
  }

  pause(rolloutId: string, reason: string, actor: events.Actor): Promise<dispatcher.Rollout> {
    return this.command(rolloutId, actor, (run) => pause(run, reason));
  }

  resume(rolloutId: string, actor: events.Actor): Promise<dispatcher.Rollout> {
    return this.command(rolloutId, actor, (run) => resume(run));
  }

  abort(rolloutId: string, reason: string, actor: events.Actor): Promise<dispatcher.Rollout> {
    return this.command(rolloutId, actor, (run) => abort(run, reason));
  }

  rollBack(rolloutId: string, reason: string, actor: events.Actor): Promise<dispatcher.Rollout> {
    return this.command(rolloutId, actor, (run) => rollBack(run, reason));
  }

  approve(rolloutId: string, waveIndex: number, actor: events.Actor): Promise<dispatcher.Rollout> {
    return this.command(rolloutId, actor, (run) => approve(run, waveIndex, actor.id));
  }

  private command(
    rolloutId: string,
    actor: events.Actor,
    decide: (run: RolloutRun) => RolloutEvent[],
  ): Promise<dispatcher.Rollout> {
    requireRolloutId(rolloutId);
    return this.engine.exclusive(async () => {
      const run = this.engine.get(rolloutId);
      // One instance writes a rollout's events at a time: this one takes its lease, or says who holds it.
      await this.engine.drive(rolloutId);
      await this.engine.write(run, decide(run), actor);
      this.engine.scheduleTick();
      return this.engine.view(run);
    });
  }
}

/** What CreateRollout would do, without writing anything. */
function dryRunView(created: events.RolloutCreated, actor: events.Actor): dispatcher.Rollout {
  return {
    rolloutId: '',
    kind: dispatcher.RolloutKind.ROLLOUT_KIND_APPLY,
    patchId: created.patchId,
    version: created.version,
    selector: created.selector,
    strategy: created.strategy,
    state: dispatcher.RolloutState.ROLLOUT_STATE_UNSPECIFIED,
    stateReason: 'dry run: nothing was created',
    waves: created.waves.map((w) => ({
      index: w.index,
      name: w.name,
      state: dispatcher.WaveState.WAVE_STATE_PENDING,
      hosts: w.hostIds.map((hostId) => ({
        hostId,
        state: dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_PENDING,
        commandId: '',
        error: '',
        forced: false,
      })),
      hostCounts: hostStateCounts(w.hostIds.map(() => dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_PENDING)),
    })),
    skippedHostIds: created.skippedHostIds,
    skippedHosts: created.skippedHostIds.length,
    allowForce: created.allowForce,
    allowDowngrade: created.allowDowngrade,
    createdBy: actor,
  };
}

/** The view a request asked for (unset: the full one); a value this server does not know is refused. */
export function requireView(view: dispatcher.RolloutView | undefined): dispatcher.RolloutView {
  const asked = requestedView(view);
  if ('problem' in asked) throw new InvalidRequestError('view', asked.problem);
  return asked.view;
}
