// Builders for the unit tests (not exported from index.ts): agent facts as plain data.
import { events } from '@rebootless/contracts';
import { PublishedPatch } from './catalog';
import { emptyHostStack, evolveHostStack, FactMeta, HostFact, HostStack, StackInterval } from './stack';

export const RELEASE = '6.1.0-18-cloud-amd64';
export const T0 = Date.UTC(2026, 0, 1);
export const MINUTE = 60_000;
export const at = (minutes: number) => T0 + minutes * MINUTE;

export const fn = (name: string, object = 'vmlinux', sympos = 0): events.PatchedFunction => ({ object, name, sympos });
export const cve = (id: string, severity = events.Severity.SEVERITY_CRITICAL): events.Cve => ({
  id,
  severity,
  cvssScore: '',
});
export const operator: events.Actor = { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '10.0.0.7' };

export function listed(
  moduleName: string,
  functions: events.PatchedFunction[] = [],
  state: Partial<events.LivePatchState> = {},
): events.LivePatchState {
  return { moduleName, enabled: true, transition: false, functions, objectsPatched: {}, ...state };
}

export interface PatchSpec {
  patchId: string;
  version: string;
  moduleName: string;
  functions: events.PatchedFunction[];
  replace?: boolean;
  forced?: boolean;
}

export function applied(p: PatchSpec, stack: events.LivePatchState[] = []): HostFact {
  return {
    type: 'PatchApplied',
    payload: {
      hostId: 'web-17',
      commandId: `cmd-${p.moduleName}`,
      patchId: p.patchId,
      version: p.version,
      moduleName: p.moduleName,
      transitionMs: '1200',
      forced: p.forced ?? false,
      replace: p.replace ?? false,
      functions: p.functions,
      stack,
    },
  };
}

export function reverted(p: PatchSpec, stack: events.LivePatchState[] = []): HostFact {
  return {
    type: 'PatchReverted',
    payload: {
      hostId: 'web-17',
      commandId: `undo-${p.moduleName}`,
      patchId: p.patchId,
      version: p.version,
      moduleName: p.moduleName,
      transitionMs: '900',
      stack,
    },
  };
}

export function booted(bootId: string, kernelRelease = RELEASE): HostFact {
  return { type: 'HostBooted', payload: { hostId: 'web-17', bootId, previousBootId: '', kernelRelease } };
}

export function facts(bootId: string, kernelRelease = RELEASE): events.HostFacts {
  return {
    hostId: 'web-17',
    hostname: 'web-17.example',
    machineId: 'm-17',
    kernelRelease,
    kernelVersion: '#1 SMP',
    arch: 'x86_64',
    distro: 'debian 12',
    bootId,
    labels: {},
    agentVersion: '0.1.0',
    tainted: '0',
    taintFlags: [],
  };
}

export function inventory(bootId: string, patches: events.LivePatchState[], kernelRelease = RELEASE): HostFact {
  return { type: 'HostInventoryReported', payload: { facts: facts(bootId, kernelRelease), patches } };
}

export function published(
  p: PatchSpec,
  cves: events.Cve[],
  publishedAt: number,
  options: { releases?: string[]; retracted?: boolean } = {},
): PublishedPatch {
  return {
    patchId: p.patchId,
    version: p.version,
    replace: p.replace ?? false,
    cves,
    severity: cves[0]?.severity ?? events.Severity.SEVERITY_UNSPECIFIED,
    publishedAt,
    publishedEventId: `ev-published-${p.patchId}-${p.version}`,
    retracted: options.retracted ?? false,
    artifacts: (options.releases ?? [RELEASE]).map((kernelRelease) => ({
      kernelRelease,
      moduleName: p.moduleName,
      functions: p.functions,
    })),
  };
}

/**
 * Folds facts in order, as the projection does, keeping every interval (upserted by id) and
 * the stack after each step.
 */
export class ScriptedHost {
  stack: HostStack = emptyHostStack('web-17');
  readonly intervals = new Map<string, StackInterval>();

  fold(minute: number, fact: HostFact, meta: Partial<FactMeta> = {}): ReturnType<typeof evolveHostStack> {
    const change = evolveHostStack(this.stack, fact, {
      eventId: `ev-${minute}`,
      at: at(minute),
      actor: operator,
      ...meta,
    });
    this.stack = change.stack;
    for (const i of change.changed) this.intervals.set(i.intervalId, i);
    return change;
  }

  history(): StackInterval[] {
    return [...this.intervals.values()];
  }
}
