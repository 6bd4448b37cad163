import { events } from '@rebootless/contracts';
import { functionKey, sortFunctions } from '@rebootless/kernel-model';
import { PatchRef, patchLabel, PublishedPatch } from './catalog';
import { PatchNotOnStackError, UndoNotPossibleError } from './errors';
import { DisableOrder, kernelRules, KernelRules } from './kernel-rules';
import { codeByFunction, FunctionCode, ORIGINAL_CODE } from './live-functions';
import { isLive, StackInterval } from './stack';

/**
 * - disable: write 0 to /sys/kernel/livepatch/<module>/enabled and wait for the transition;
 * - remove-module: rmmod the (disabled) module;
 * - apply: load a module and wait for its transition (a patch taken off to reach a lower one,
 *   or the previous cumulative patch, then `downgrade`);
 * - reboot: the only way to remove a forced patch.
 */
export type UndoStepKind = 'disable' | 'remove-module' | 'apply' | 'reboot';

/** Why a step is in the plan. */
export type UndoStepRole =
  /** The patch being undone. */
  | 'target'
  /** A patch above the target that must go first (before 5.1), or that a replace disables. */
  | 'above-target'
  /** A patch taken off on the way (or dropped by a reboot) and put back as it was. */
  | 're-apply'
  /** The cumulative patch the target replaced, loaded again. */
  | 'previous-cumulative'
  /** A reboot for a forced patch. */
  | 'forced';

export interface UndoStep {
  kind: UndoStepKind;
  role: UndoStepRole;
  /** '' for a reboot. */
  moduleName: string;
  /** Unset for a reboot and for modules rebootless did not publish. */
  patch?: PatchRef;
  /** Loads an older version than the host runs: the command needs allow_downgrade. */
  downgrade: boolean;
  /**
   * Done by the agent as part of the step before (it removes the modules an atomic replace
   * disabled): listed for people, no command of its own (undoCommands leaves it out).
   */
  automatic?: boolean;
  detail: string;
}

export interface FunctionFallback {
  function: events.PatchedFunction;
  runsNow: FunctionCode;
  runsAfter: FunctionCode;
}

export interface UndoInput {
  hostId: string;
  /** The host's stack now, oldest first (HostStack.entries or currentStack()). */
  stack: readonly StackInterval[];
  patchId: string;
  /** Narrows the match when two versions of the patch are stacked; the topmost is taken otherwise. */
  version?: string;
  kernelRelease: string;
  /**
   * Cumulative (replace) patches published for the host's kernel, any order; the planner picks
   * the one to load again when the target is a replace patch. Retracted ones are never chosen.
   */
  earlierCumulatives?: readonly PublishedPatch[];
  /** The cumulative the target replaced on this host, from its history (previousCumulativeOnHost). */
  replacedOnHost?: PatchRef;
  /** Known distribution backports (see kernelRules). */
  kernelOverrides?: Parameters<typeof kernelRules>[1];
}

export interface UndoPlan {
  hostId: string;
  kernelRelease: string;
  disableOrder: DisableOrder;
  /** The rule that shaped the plan, in one sentence. */
  rule: string;
  target: PatchRef & { moduleName: string };
  /** In the order to carry them out. */
  steps: UndoStep[];
  /** Every function the target patches or whose code changes, and what runs once the steps are done. */
  functions: FunctionFallback[];
  rebootRequired: boolean;
  /** The cumulative patch the plan loads again (undoing a replace patch); null otherwise. */
  previousCumulative: PatchRef | null;
  warnings: string[];
}

/**
 * Plans how to take one patch off a host without a reboot, following the kernel's rules
 * (DESIGN.md section 5):
 * - 5.1+: disable the patch and remove its module; its functions fall back to the next older
 *   patch's version or the original.
 * - Before 5.1: only the top patch may be disabled, so the patches above are disabled (top down)
 *   and removed first, then the target, and then the ones above are applied again, oldest
 *   first. They are put back because the operator asked to undo one patch, not its neighbours;
 *   their fixes are off between those steps and the plan warns so.
 * - A replace (cumulative) patch is undone by loading the previous cumulative patch again (a
 *   downgrade): its atomic replace disables the target. Patches stacked above the target are
 *   disabled by that replace too, so they are applied again. When no earlier cumulative is known
 *   the plan says so and falls back to disabling the target.
 * - A forced patch cannot be removed (nor, before 5.18, any patch registered when a transition
 *   was forced): the plan is a reboot, after which the other patches are applied again.
 *
 * Throws PatchNotOnStackError (not-found), UndoNotPossibleError (failed-precondition: the target
 * is in transition), KernelReleaseError (invalid-argument: the host's release does not parse).
 */
export function planUndo(input: UndoInput): UndoPlan {
  const rules = kernelRules(input.kernelRelease, input.kernelOverrides);
  const stack = [...input.stack];
  const target = findTarget(input, stack);
  const warnings: string[] = [];
  const label = patchLabel(target);

  const matches = stack.filter((e) => e.patchId === target.patchId && target.patchId !== '');
  if (matches.length > 1 && !input.version) {
    warnings.push(
      `${matches.length} versions of ${target.patchId} are stacked (${matches.map((m) => m.version).join(', ')}): ` +
        `planning for the topmost, ${target.version}`,
    );
  }
  if (target.state === 'in-transition') {
    throw new UndoNotPossibleError(
      `${label} on host ${input.hostId} is still in transition (${target.enabled ? 'enabling' : 'disabling'}): ` +
        'plan its undo once the transition has completed',
    );
  }
  const busy = stack.find((e) => e.state === 'in-transition');
  if (busy) {
    warnings.push(
      `${patchLabel(busy)} is in transition: the kernel runs one transition at a time, so the first step waits for it`,
    );
  }

  const base = {
    hostId: input.hostId,
    kernelRelease: rules.release,
    disableOrder: rules.disableOrder,
    rule: rules.explanation,
    target: { patchId: target.patchId, version: target.version, moduleName: target.moduleName },
  };
  const index = stack.indexOf(target);
  const live = stack.filter(isLive);

  if (target.state === 'disabled') {
    // Listed but disabled (before 5.1 a disabled patch stays): no code changes, only the module goes.
    return {
      ...base,
      steps: [
        step('remove-module', 'target', target, `${label} is already disabled; remove its module ${target.moduleName}`),
      ],
      functions: fallbacks(target, live, live),
      rebootRequired: false,
      previousCumulative: null,
      warnings,
    };
  }

  const pinnedBy = pinningForce(rules, stack, index);
  if (pinnedBy) return forcedPlan(base, rules, target, pinnedBy, live, warnings);

  const above = stack.slice(index + 1).filter(isLive);
  if (target.replace && rules.atomicReplace) {
    const previous = choosePrevious(input, target, rules.release);
    if (previous) return cumulativePlan(base, target, previous, above, live, warnings);
    warnings.push(
      `no earlier cumulative patch is known for ${rules.release}: ${label} cannot be undone by loading the ` +
        'previous cumulative again, so the plan disables it and every function it patches falls back to ' +
        'the next older patch or the original kernel code (all of its fixes are dropped)',
    );
  } else if (target.replace) {
    warnings.push(`${rules.release} has no atomic replace upstream: ${label} is undone like any other patch`);
  }

  const after = live.filter((e) => e !== target);
  const steps: UndoStep[] = [];
  if (rules.disableOrder === 'top-only' && above.length > 0) {
    for (const a of [...above].reverse()) {
      steps.push(
        step(
          'disable',
          'above-target',
          a,
          `only the top patch may be disabled on ${rules.release}: disable ${patchLabel(a)} first`,
        ),
      );
      steps.push(step('remove-module', 'above-target', a, `remove ${a.moduleName}`));
    }
    pushTargetRemoval(steps, target);
    for (const a of above) steps.push(reapply(a, warnings));
    warnings.push(
      `${above.length} patch(es) above ${label} (${above.map(patchLabel).join(', ')}) are disabled first and applied ` +
        'again afterwards: their fixes are not live between those steps',
    );
  } else {
    pushTargetRemoval(steps, target);
  }
  return {
    ...base,
    steps,
    functions: fallbacks(target, live, after),
    rebootRequired: false,
    previousCumulative: null,
    warnings,
  };
}

/**
 * The cumulative (replace) patch that `target` replaced on this host: the replace interval its
 * application closed as `replaced`. Pass the host's whole history (open and closed intervals).
 */
export function previousCumulativeOnHost(
  history: readonly StackInterval[],
  target: StackInterval,
): PatchRef | undefined {
  const replaced = history
    .filter(
      (i) =>
        i.replace &&
        i.patchId !== '' &&
        i.removalReason === 'replaced' &&
        (i.removedEventId === target.appliedEventId || i.removedAt === target.appliedAt),
    )
    .sort((a, b) => b.stackSeq - a.stackSeq)[0];
  return replaced ? { patchId: replaced.patchId, version: replaced.version } : undefined;
}

/** A command the dispatcher can send (LedgerService's UndoStepKind): disable + remove-module is one revert. */
export interface UndoCommand {
  kind: 'revert' | 'apply' | 'reboot';
  moduleName: string;
  patch?: PatchRef;
  downgrade: boolean;
  detail: string;
}

/**
 * The plan's steps as the agent's commands: each disable with the removal of its module becomes
 * one revert; removals the agent does as part of an apply are left out.
 */
export function undoCommands(plan: UndoPlan): UndoCommand[] {
  const commands: UndoCommand[] = [];
  const steps = plan.steps.filter((s) => !s.automatic);
  for (let i = 0; i < steps.length; i += 1) {
    const s = steps[i]!;
    const base = { moduleName: s.moduleName, ...(s.patch ? { patch: s.patch } : {}), downgrade: s.downgrade };
    if (s.kind === 'disable') {
      const next = steps[i + 1];
      if (next?.kind === 'remove-module' && next.moduleName === s.moduleName) i += 1;
      commands.push({ ...base, kind: 'revert', detail: s.detail });
    } else if (s.kind === 'remove-module') {
      commands.push({ ...base, kind: 'revert', detail: s.detail });
    } else {
      commands.push({ ...base, kind: s.kind, detail: s.detail });
    }
  }
  return commands;
}

type PlanBase = Pick<UndoPlan, 'hostId' | 'kernelRelease' | 'disableOrder' | 'rule' | 'target'>;

function findTarget(input: UndoInput, stack: StackInterval[]): StackInterval {
  const byPatch = stack.filter(
    (e) => e.patchId !== '' && e.patchId === input.patchId && (!input.version || e.version === input.version),
  );
  // A module rebootless did not publish can only be named by its module name.
  const candidates =
    byPatch.length > 0 ? byPatch : stack.filter((e) => e.patchId === '' && e.moduleName === input.patchId);
  const target = candidates[candidates.length - 1];
  if (!target) {
    throw new PatchNotOnStackError(input.hostId, input.version ? `${input.patchId} ${input.version}` : input.patchId);
  }
  return target;
}

/** The forced entry that keeps `stack[index]` from being removed, if any. */
function pinningForce(rules: KernelRules, stack: StackInterval[], index: number): StackInterval | undefined {
  const target = stack[index]!;
  if (target.forced) return target;
  // Before 5.18 a forced transition pinned every patch registered then: those below the forced one.
  if (rules.forcePins === 'every-patch') return stack.slice(index + 1).find((e) => e.forced);
  return undefined;
}

function forcedPlan(
  base: PlanBase,
  rules: KernelRules,
  target: StackInterval,
  pinnedBy: StackInterval,
  live: StackInterval[],
  warnings: string[],
): UndoPlan {
  const label = patchLabel(target);
  warnings.push(
    pinnedBy === target
      ? `${label} was forced: its module can never be removed; only a reboot takes it off`
      : `${patchLabel(pinnedBy)} was forced on ${rules.release} (before 5.18), which pins every patch registered ` +
          `at the time, ${label} included: only a reboot takes it off`,
  );
  const others = live.filter((e) => e !== target);
  const steps: UndoStep[] = [
    {
      kind: 'reboot',
      role: 'forced',
      moduleName: '',
      downgrade: false,
      detail: `reboot: removes every live patch, ${label} included`,
    },
  ];
  for (const o of others) steps.push(reapply(o, warnings));
  if (others.length > 0) {
    warnings.push(`the reboot removes every live patch: ${others.map(patchLabel).join(', ')} must be applied again`);
  }
  return {
    ...base,
    steps,
    functions: fallbacks(target, live, others),
    rebootRequired: true,
    previousCumulative: null,
    warnings,
  };
}

function cumulativePlan(
  base: PlanBase,
  target: StackInterval,
  previous: { patch: PublishedPatch; moduleName: string; functions: events.PatchedFunction[] },
  above: StackInterval[],
  live: StackInterval[],
  warnings: string[],
): UndoPlan {
  const label = patchLabel(target);
  const prevRef = { patchId: previous.patch.patchId, version: previous.patch.version };
  const prevLabel = patchLabel(prevRef);
  const steps: UndoStep[] = [
    {
      kind: 'apply',
      role: 'previous-cumulative',
      moduleName: previous.moduleName,
      patch: prevRef,
      downgrade: true,
      detail:
        `load the previous cumulative patch ${prevLabel} again (a downgrade): its atomic replace disables ` +
        `${label}${above.length > 0 ? ' and every patch above it' : ''}`,
    },
    {
      ...step('remove-module', 'target', target, `remove ${target.moduleName}, disabled by the replace`),
      automatic: true,
    },
  ];
  for (const a of above) {
    steps.push({
      ...step('remove-module', 'above-target', a, `remove ${a.moduleName}, disabled by the replace`),
      automatic: true,
    });
  }
  for (const a of above) steps.push(reapply(a, warnings));
  if (above.length > 0) {
    warnings.push(
      `loading ${prevLabel} disables every other patch: ${above.map(patchLabel).join(', ')} ` +
        'are applied again afterwards and their fixes are not live in between',
    );
  }
  if (
    previous.patch.cves.length < target.cves.length ||
    target.cves.some((c) => !previous.patch.cves.some((p) => p.id === c.id))
  ) {
    const lost = target.cves.filter((c) => !previous.patch.cves.some((p) => p.id === c.id)).map((c) => c.id);
    if (lost.length > 0) warnings.push(`after the downgrade the host is exposed again to ${lost.join(', ')}`);
  }
  const loaded: StackInterval = {
    ...target,
    intervalId: '(planned)',
    moduleName: previous.moduleName,
    patchId: prevRef.patchId,
    version: prevRef.version,
    functions: previous.functions,
    cves: previous.patch.cves,
    forced: false,
  };
  return {
    ...base,
    steps,
    functions: fallbacks(target, live, [loaded, ...above]),
    rebootRequired: false,
    previousCumulative: prevRef,
    warnings,
  };
}

function choosePrevious(
  input: UndoInput,
  target: StackInterval,
  release: string,
): { patch: PublishedPatch; moduleName: string; functions: events.PatchedFunction[] } | undefined {
  const same = (p: PatchRef, q: PatchRef) => p.patchId === q.patchId && p.version === q.version;
  const all = input.earlierCumulatives ?? [];
  const loadable = all
    .filter((p) => p.replace && !p.retracted && !same(p, target))
    .map((patch) => ({ patch, artifact: patch.artifacts.find((a) => a.kernelRelease === release) }))
    .filter((c) => c.artifact !== undefined && c.artifact.moduleName !== '');
  const pick = (c: (typeof loadable)[number] | undefined) =>
    c ? { patch: c.patch, moduleName: c.artifact!.moduleName, functions: c.artifact!.functions } : undefined;

  const ran = input.replacedOnHost;
  if (ran) {
    const found = loadable.find((c) => same(c.patch, ran));
    if (found) return pick(found);
  }
  const targetPublishedAt = all.find((p) => same(p, target))?.publishedAt ?? target.appliedAt;
  const older = loadable
    .filter((c) => c.patch.publishedAt < targetPublishedAt)
    .sort((a, b) => b.patch.publishedAt - a.patch.publishedAt || compareVersions(b.patch.version, a.patch.version));
  // The same patch line first (its previous version), then any cumulative patch before it.
  return pick(older.find((c) => c.patch.patchId === target.patchId) ?? older[0]);
}

/** Natural order of version strings: "10" after "9", "1.10" after "1.9". */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function pushTargetRemoval(steps: UndoStep[], target: StackInterval): void {
  steps.push(step('disable', 'target', target, `disable ${patchLabel(target)}`));
  steps.push(step('remove-module', 'target', target, `remove ${target.moduleName}`));
}

function reapply(e: StackInterval, warnings: string[]): UndoStep {
  if (!e.patchId) warnings.push(`${e.moduleName} was not published by rebootless: it must be loaded again by hand`);
  return step('apply', 're-apply', e, `apply ${patchLabel(e)} again, as it was`);
}

function step(kind: UndoStepKind, role: UndoStepRole, e: StackInterval, detail: string): UndoStep {
  return {
    kind,
    role,
    moduleName: e.moduleName,
    ...(e.patchId ? { patch: { patchId: e.patchId, version: e.version } } : {}),
    downgrade: false,
    detail,
  };
}

/** Every function the target patches, and every other one whose code changes, before → after. */
function fallbacks(target: StackInterval, before: StackInterval[], after: StackInterval[]): FunctionFallback[] {
  const now = codeByFunction(before);
  const then = codeByFunction(after);
  const functions = new Map<string, events.PatchedFunction>();
  for (const fn of target.functions) functions.set(functionKey(fn), fn);
  for (const e of [...before, ...after]) {
    for (const fn of e.functions) {
      const key = functionKey(fn);
      const a = now.get(key) ?? ORIGINAL_CODE;
      const b = then.get(key) ?? ORIGINAL_CODE;
      if (a.moduleName !== b.moduleName || a.patchId !== b.patchId || a.version !== b.version) {
        if (!functions.has(key)) functions.set(key, fn);
      }
    }
  }
  return sortFunctions([...functions.values()]).map((fn) => ({
    function: fn,
    runsNow: now.get(functionKey(fn)) ?? ORIGINAL_CODE,
    runsAfter: then.get(functionKey(fn)) ?? ORIGINAL_CODE,
  }));
}
