import { events } from '@rebootless/contracts';
import { functionKey, sortFunctions } from '@rebootless/kernel-model';
import { patchLabel } from './catalog';
import { isLive, StackInterval } from './stack';

/** Whose code a kernel function runs. `moduleName` '' is the original kernel code. */
export interface FunctionCode {
  moduleName: string;
  /** '' for the original code or a module rebootless did not publish. */
  patchId: string;
  version: string;
}

export const ORIGINAL_CODE: FunctionCode = Object.freeze({ moduleName: '', patchId: '', version: '' });

export interface LiveFunction {
  function: events.PatchedFunction;
  /** The code that runs now: the most recently enabled live patch that patches it, or the original. */
  runs: FunctionCode;
  /** Set while a transition is under way that will change it: what runs once it completes. */
  afterTransition?: FunctionCode;
}

export function codeOf(e: Pick<StackInterval, 'moduleName' | 'patchId' | 'version'>): FunctionCode {
  return { moduleName: e.moduleName, patchId: e.patchId, version: e.version };
}

export function sameCode(a: FunctionCode, b: FunctionCode): boolean {
  return a.moduleName === b.moduleName && a.patchId === b.patchId && a.version === b.version;
}

/**
 * For each function some entry patches, which code runs (oldest-first entries, as stackAt or
 * currentStack give them). The kernel runs the most recently enabled patch's version; an entry
 * still being enabled does not run yet, one being disabled still does (its tasks are switching).
 */
export function liveFunctions(entries: readonly StackInterval[]): LiveFunction[] {
  const settled = codeByFunction(entries.filter(isLive));
  const target = codeByFunction(entries.filter((e) => e.enabled && e.state !== 'disabled'));
  const all = new Map<string, events.PatchedFunction>();
  for (const e of entries) for (const fn of e.functions) if (!all.has(functionKey(fn))) all.set(functionKey(fn), fn);
  const transition = entries.some((e) => e.state === 'in-transition');
  return sortFunctions([...all.values()]).map((fn) => {
    const key = functionKey(fn);
    const runs = settled.get(key) ?? ORIGINAL_CODE;
    const after = target.get(key) ?? ORIGINAL_CODE;
    return transition && !sameCode(runs, after)
      ? { function: fn, runs, afterTransition: after }
      : { function: fn, runs };
  });
}

/** Function key → the code of the newest entry (last in the list) that patches it. */
export function codeByFunction(entries: readonly StackInterval[]): Map<string, FunctionCode> {
  const code = new Map<string, FunctionCode>();
  for (const e of entries) for (const fn of e.functions) code.set(functionKey(fn), codeOf(e));
  return code;
}

/**
 * The kernel a host runs, in one line, the way an operator reads `uptrack-show`/`kpatch list`:
 * "6.1.0-18-cloud-amd64 + cve-2024-1086-nf-tables 2 (replace)". Disabled entries run nothing
 * and are left out; an entry in transition says which way.
 */
export function effectiveKernel(kernelRelease: string, entries: readonly StackInterval[]): string {
  const parts = entries.filter((e) => e.state !== 'disabled').map((e) => `${patchLabel(e)}${flags(e)}`);
  const release = kernelRelease || '(unknown kernel)';
  return parts.length === 0 ? `${release} (no live patches)` : [release, ...parts].join(' + ');
}

function flags(e: StackInterval): string {
  const f: string[] = [];
  if (e.state === 'in-transition') f.push(e.enabled ? 'enabling' : 'disabling');
  if (e.replace) f.push('replace');
  if (e.forced) f.push('forced');
  if (!e.patchId) f.push('not published by rebootless');
  return f.length > 0 ? ` (${f.join(', ')})` : '';
}

const SEVERITY_NAMES: Record<number, string> = {
  [events.Severity.SEVERITY_UNSPECIFIED]: 'unspecified',
  [events.Severity.SEVERITY_LOW]: 'low',
  [events.Severity.SEVERITY_MEDIUM]: 'medium',
  [events.Severity.SEVERITY_HIGH]: 'high',
  [events.Severity.SEVERITY_CRITICAL]: 'critical',
};

export function severityName(severity: events.Severity): string {
  return SEVERITY_NAMES[severity] ?? `severity ${severity}`;
}

/**
 * A host's stack as text, in the spirit of `kpatch list` and `uptrack-show`: the modules in
 * stack order with their state and CVEs, then the effective kernel, then which code each
 * patched function runs.
 */
export function describeStack(kernelRelease: string, entries: readonly StackInterval[]): string {
  const lines = ['Loaded patch modules:'];
  if (entries.length === 0) lines.push('  (none)');
  entries.forEach((e, i) => {
    const cves = e.cves.map((c) => `${c.id} (${severityName(c.severity)})`).join(', ');
    const state = e.state === 'in-transition' ? `in transition, ${e.enabled ? 'enabling' : 'disabling'}` : e.state;
    lines.push(
      `  ${i + 1}. ${e.moduleName} [${state}] ${patchLabel(e)}` +
        (e.replace ? ' replace' : '') +
        (e.forced ? ' FORCED (reboot required)' : '') +
        (cves ? ` ${cves}` : ''),
    );
  });
  lines.push(`Effective kernel: ${effectiveKernel(kernelRelease, entries)}`);
  const functions = liveFunctions(entries);
  if (functions.length > 0) {
    lines.push('Live functions:');
    for (const f of functions) {
      const name = `${f.function.object}:${f.function.name}${f.function.sympos > 1 ? `,${f.function.sympos}` : ''}`;
      const runs = (c: FunctionCode) => (c.moduleName ? patchLabel(c) : 'original');
      lines.push(`  ${name} -> ${runs(f.runs)}${f.afterTransition ? ` (then ${runs(f.afterTransition)})` : ''}`);
    }
  }
  return lines.join('\n');
}
