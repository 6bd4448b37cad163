import type { events } from '@rebootless/contracts';
import { functionKey } from './functions';
import { StackingRule } from './kernel-release';

/** Which patch's version of a function runs; undefined means the original kernel code. */
export interface FunctionVersion {
  function: events.PatchedFunction;
  moduleName: string | undefined;
}

/**
 * For each patched function, the version that runs once no transition is pending: the most
 * recently enabled patch that has it. `stack` is in kernel stack order, oldest first (listPatches).
 */
export function runningVersions(stack: events.LivePatchState[]): Map<string, FunctionVersion> {
  const versions = new Map<string, FunctionVersion>();
  for (const patch of stack) {
    if (!patch.enabled) continue;
    for (const fn of patch.functions) versions.set(functionKey(fn), { function: fn, moduleName: patch.moduleName });
  }
  return versions;
}

export interface FunctionFallback {
  function: events.PatchedFunction;
  /** The module whose version runs now (this patch, or a newer one that also patches it). */
  runsNow: string;
  /** What runs after the disable: an older patch's version, or undefined for the original. */
  runsAfter: string | undefined;
}

export type DisableEffect =
  | { allowed: true; fallbacks: FunctionFallback[] }
  | { allowed: false; code: 'ENOENT' | 'EINVAL' | 'EBUSY'; reason: string };

/**
 * What disabling one patch would do, under the host kernel's stacking rule: refused (and why),
 * or for each of its functions what runs now and what runs afterwards. The undo planner's answer
 * to "which functions fall back to what".
 */
export function disableEffect(
  stack: events.LivePatchState[],
  moduleName: string,
  stacking: StackingRule,
): DisableEffect {
  const index = stack.findIndex((p) => p.moduleName === moduleName);
  const patch = stack[index];
  if (!patch) return { allowed: false, code: 'ENOENT', reason: `${moduleName} is not in the kernel's patch stack` };
  if (!patch.enabled) return { allowed: false, code: 'EINVAL', reason: `${moduleName} is already disabled` };
  const inTransition = stack.find((p) => p.transition);
  if (inTransition && inTransition !== patch) {
    return { allowed: false, code: 'EBUSY', reason: `${inTransition.moduleName} is in transition` };
  }
  const newerEnabled = stack.slice(index + 1).find((p) => p.enabled);
  if (stacking === 'top-only' && newerEnabled) {
    return {
      allowed: false,
      code: 'EBUSY',
      reason: `this kernel only disables the topmost patch; disable ${newerEnabled.moduleName} first`,
    };
  }
  const before = runningVersions(stack);
  const after = runningVersions(stack.filter((p) => p !== patch));
  const fallbacks = patch.functions.map((fn) => {
    const key = functionKey(fn);
    return {
      function: fn,
      runsNow: before.get(key)?.moduleName ?? moduleName,
      runsAfter: after.get(key)?.moduleName,
    };
  });
  return { allowed: true, fallbacks };
}
