// CreateRollout as a pure decision: the checks a request must pass against the published patches
// and the fleet, and the RolloutCreated that records the plan.
import type { events } from '@rebootless/contracts';
import { RolloutInputError, RolloutPreconditionError } from './errors';
import type { Fleet } from './fleet';
import { selectHosts } from './host-selection';
import type { PatchCatalog, PatchVersion } from './patch-catalog';
import { effectiveStrategy, planWaves } from './wave-planner';

export interface RolloutRequest {
  patchId: string;
  version: string;
  selector?: events.HostSelector | undefined;
  strategy?: events.RolloutStrategy | undefined;
  allowForce: boolean;
  allowDowngrade: boolean;
}

/** The published, unretracted patch version a request names. */
export function publishedPatch(catalog: PatchCatalog, patchId: string, version: string): PatchVersion {
  if (!patchId) throw new RolloutInputError('patch_id', 'is required');
  if (!catalog.knows(patchId)) {
    throw new RolloutPreconditionError(`patch ${patchId} is not published (the log has no PatchPublished for it)`);
  }
  const patch = catalog.find(patchId, version);
  if (!patch) {
    throw new RolloutPreconditionError(
      `patch ${patchId} has no published version ${version}; published: ${catalog.versionsOf(patchId).join(', ')}`,
    );
  }
  if (patch.retracted !== undefined) {
    throw new RolloutPreconditionError(`patch ${patchId} version ${patch.version} was retracted: ${patch.retracted}`);
  }
  return patch;
}

export function planRollout(
  rolloutId: string,
  request: RolloutRequest,
  fleet: Fleet,
  catalog: PatchCatalog,
): events.RolloutCreated {
  const patch = publishedPatch(catalog, request.patchId, request.version);
  const selection = selectHosts(fleet.all(), request.selector, {
    patchId: patch.patchId,
    version: patch.version,
    kernelReleases: new Set(patch.artifacts.keys()),
    moduleName: (release) => catalog.moduleName(patch, release),
  });
  const strategy = effectiveStrategy(request.strategy);
  return {
    rolloutId,
    patchId: patch.patchId,
    version: patch.version,
    selector: request.selector!,
    strategy,
    waves: planWaves(selection.targets, strategy),
    skippedHostIds: selection.alreadyPatched,
    undo: false,
    reason: '',
    allowForce: request.allowForce,
    allowDowngrade: request.allowDowngrade,
    undoModules: {},
    approvalWaived: false,
    undoPlans: {},
  };
}

export interface UndoTarget {
  hostId: string;
  /** The module of the patch being undone on that host. */
  moduleName: string;
  /** The ledger's plan for that host, in the order the kernel requires. */
  steps: events.UndoPlanStep[];
}

/**
 * An undo runs as a rollout in the same canary and waves; each host carries out the steps the
 * ledger planned for it (recorded in the RolloutCreated), one after the other.
 */
export function planUndoRollout(
  rolloutId: string,
  request: { patchId: string; version: string; reason: string; strategy?: events.RolloutStrategy | undefined },
  selector: events.HostSelector,
  targets: readonly UndoTarget[],
): events.RolloutCreated {
  if (targets.length === 0) throw new RolloutPreconditionError(`no selected host carries patch ${request.patchId}`);
  const strategy = effectiveStrategy(request.strategy);
  const hostIds = targets.map((t) => t.hostId).sort();
  return {
    rolloutId,
    patchId: request.patchId,
    version: request.version,
    selector,
    strategy,
    waves: planWaves(hostIds, strategy),
    skippedHostIds: [],
    undo: true,
    reason: request.reason,
    allowForce: false,
    allowDowngrade: false,
    undoModules: Object.fromEntries(targets.map((t) => [t.hostId, t.moduleName])),
    approvalWaived: false,
    undoPlans: Object.fromEntries(targets.map((t) => [t.hostId, { steps: t.steps }])),
  };
}
