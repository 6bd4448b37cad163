// RolloutService.Undo: the ledger plans (it knows each host's stack and its kernel's disable
// rules), the dispatcher carries the plan out as a rollout of kind UNDO.
import { dispatcher, events, ledger } from '@rebootless/contracts';
import { uuidv7 } from '@rebootless/events';
import {
  RolloutBook,
  RolloutPreconditionError,
  isEmptySelector,
  matchesSelector,
  planUndoRollout,
  type UndoTarget,
} from '@rebootless/rollout';
import { InvalidRequestError } from './dispatcher-errors';
import type { LedgerClient } from './ledger-client';
import type { RolloutEngine } from './rollout-engine';

const PLANS_AT_ONCE = 16;
const STEP = ledger.UndoStepKind;

export class UndoOperation {
  constructor(
    private readonly engine: RolloutEngine,
    private readonly ledger: LedgerClient,
  ) {}

  async undo(request: dispatcher.UndoRequest, actor: events.Actor): Promise<dispatcher.Rollout> {
    if (!request.patchId) throw new InvalidRequestError('patch_id', 'is required');
    const { hostIds, selector } = this.targets(request);
    const targets: UndoTarget[] = [];
    for (let i = 0; i < hostIds.length; i += PLANS_AT_ONCE) {
      const plans = await Promise.all(
        hostIds
          .slice(i, i + PLANS_AT_ONCE)
          .map(async (hostId) => ({ hostId, plan: await this.ledger.planUndo({ hostId, patchId: request.patchId }) })),
      );
      for (const { hostId, plan } of plans) {
        const target = targetOf(hostId, request.patchId, plan);
        if (target) targets.push(target);
      }
    }
    return this.engine.exclusive(async () => {
      const rolloutId = uuidv7();
      const created = planUndoRollout(rolloutId, request, selector, targets);
      if (request.dryRun) {
        return {
          ...this.engine.view(this.preview(created)),
          rolloutId: '',
          stateReason: 'dry run: nothing was created',
        };
      }
      await this.engine.write(undefined, [{ type: 'RolloutCreated', data: created }], actor);
      this.engine.scheduleTick();
      return this.engine.view(this.engine.get(rolloutId));
    });
  }

  private targets(request: dispatcher.UndoRequest): { hostIds: string[]; selector: events.HostSelector } {
    if (request.hostId) {
      if (!this.engine.fleet.get(request.hostId)) {
        throw new RolloutPreconditionError(`host ${request.hostId} has never been reported by its agent`);
      }
      return { hostIds: [request.hostId], selector: { kernelReleases: [], labels: {}, hostIds: [request.hostId] } };
    }
    if (!request.selector || isEmptySelector(request.selector)) {
      throw new InvalidRequestError('target', 'name a host_id or a non-empty selector');
    }
    const selector = request.selector;
    const hostIds = [...this.engine.fleet.all()].filter((h) => matchesSelector(h, selector)).map((h) => h.hostId);
    if (hostIds.length === 0) throw new RolloutPreconditionError('the selector matches no host');
    return { hostIds, selector };
  }

  /** A throw-away fold of the RolloutCreated, to answer a dry run in the usual shape. */
  private preview(created: events.RolloutCreated) {
    const book = new RolloutBook();
    return book.evolve({ type: 'RolloutCreated', data: created }, { at: Date.now() })!;
  }
}

const ACTION: Partial<Record<number, events.UndoStepAction>> = {
  [STEP.UNDO_STEP_KIND_REVERT]: events.UndoStepAction.UNDO_STEP_ACTION_REVERT,
  [STEP.UNDO_STEP_KIND_APPLY]: events.UndoStepAction.UNDO_STEP_ACTION_APPLY,
  [STEP.UNDO_STEP_KIND_REBOOT]: events.UndoStepAction.UNDO_STEP_ACTION_REBOOT,
};

/** The ledger's plan for one host as the rollout records it, or undefined when the host does not carry the patch. */
function targetOf(hostId: string, patchId: string, plan: ledger.PlanUndoResponse): UndoTarget | undefined {
  if (plan.steps.length === 0) return undefined;
  const unknown = plan.steps.find((s) => ACTION[s.kind] === undefined);
  if (unknown) {
    throw new RolloutPreconditionError(
      `the ledger's undo plan for ${patchId} on ${hostId} has a step of unknown kind ${unknown.kind}`,
    );
  }
  // Automatic steps are the agent's part of the step before (removing what a replace disabled).
  const steps = plan.steps
    .filter((s) => !s.automatic)
    .map((s) => ({
      action: ACTION[s.kind]!,
      moduleName: s.moduleName,
      patchId: s.patch?.patchId ?? '',
      version: s.patch?.version ?? '',
      downgrade: s.downgrade,
      detail: s.detail,
    }));
  const apply = steps.find((s) => s.action === events.UndoStepAction.UNDO_STEP_ACTION_APPLY && !s.patchId);
  if (apply) {
    throw new RolloutPreconditionError(
      `undoing ${patchId} on ${hostId} needs ${apply.moduleName} loaded again, which rebootless did not publish`,
    );
  }
  const target = plan.steps.find((s) => s.patch?.patchId === patchId && s.kind === STEP.UNDO_STEP_KIND_REVERT);
  return { hostId, moduleName: target?.moduleName ?? '', steps };
}
