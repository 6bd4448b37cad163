// Given-When-Then helpers for the rollout specs: a fleet, a catalog and a driver that folds the
// decider's events back into the book, the way the dispatcher does.
import { events } from '@rebootless/contracts';
import { Fleet } from './fleet';
import { PatchCatalog } from './patch-catalog';
import { nextEvents, type TickContext } from './rollout-decider';
import { planRollout, type RolloutRequest } from './rollout-planner';
import { RolloutBook, type HostFactEvent, type RolloutEvent, type RolloutRun } from './rollout-state';

/** A message with every field at its default, then the given ones. */
export function make<T>(codec: { decode(bytes: Uint8Array): T }, fields: Partial<T>): T {
  return { ...codec.decode(new Uint8Array(0)), ...fields };
}

export const RELEASE = '6.1.0-31-cloud-amd64';
export const OTHER_RELEASE = '6.12.9-amd64';
export const T0 = Date.UTC(2026, 10, 18, 10, 0, 0); // a Wednesday

export function facts(hostId: string, kernelRelease = RELEASE, labels: Record<string, string> = {}): events.HostFacts {
  return {
    hostId,
    hostname: hostId,
    machineId: '',
    kernelRelease,
    kernelVersion: '',
    arch: 'x86_64',
    distro: 'debian',
    bootId: `boot-${hostId}`,
    labels,
    agentVersion: '0.1.0',
    tainted: '0',
    taintFlags: [],
  };
}

export function hostIds(n: number, prefix = 'host'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);
}

export function fleetOf(ids: readonly string[], kernelRelease = RELEASE, labels: Record<string, string> = {}): Fleet {
  const fleet = new Fleet();
  for (const id of ids) fleet.observeFacts(facts(id, kernelRelease, labels), []);
  return fleet;
}

export function catalogWith(patchId = 'cve-2024-1086', version = '1', releases: string[] = [RELEASE]): PatchCatalog {
  return publishTo(new PatchCatalog(), patchId, version, releases);
}

/** Publishes one more patch (built for `releases`) in the catalog. */
export function publishTo(
  catalog: PatchCatalog,
  patchId: string,
  version: string,
  releases: string[] = [RELEASE],
  replace = false,
): PatchCatalog {
  for (const release of releases) {
    catalog.buildSucceeded({
      buildId: `build-${patchId}-${version}`,
      kernelRelease: release,
      artifactDigest: `sha256:${release}`,
      manifest: { ...make(events.PatchManifest, { moduleName: `livepatch_${patchId.replace(/-/g, '_')}` }) },
      manifestSignature: new Uint8Array(),
      changedFunctions: [],
      durationMs: '1',
    });
  }
  catalog.patchPublished({
    patchId,
    version,
    buildId: `build-${patchId}-${version}`,
    artifacts: releases.map((r) => ({ kernelRelease: r, artifactDigest: `sha256:${r}`, vermagic: r })),
    cves: [],
    replace,
    severity: 0,
    patchName: patchId,
  });
  return catalog;
}

export function strategy(overrides: Partial<events.RolloutStrategy> = {}): events.RolloutStrategy {
  return make(events.RolloutStrategy, {
    canaryCount: 1,
    waves: [{ percent: 100 }],
    soakSeconds: 0,
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
    applyTimeoutSeconds: 60,
    offlineDeadlineSeconds: 600,
    ...overrides,
  });
}

export function request(overrides: Partial<RolloutRequest> = {}): RolloutRequest {
  return {
    patchId: 'cve-2024-1086',
    version: '1',
    selector: make(events.HostSelector, { kernelReleases: [RELEASE] }),
    strategy: strategy(),
    allowForce: false,
    allowDowngrade: false,
    ...overrides,
  };
}

/** A dispatcher in miniature: folds decisions back and keeps the log it wrote. */
export class RolloutDriver {
  readonly book = new RolloutBook();
  readonly log: { event: RolloutEvent; at: number }[] = [];
  /** The agent facts observed, in order. */
  readonly facts: { fact: HostFactEvent; at: number }[] = [];
  now = T0;
  offline = new Map<string, number>();

  constructor(
    readonly fleet: Fleet,
    readonly catalog: PatchCatalog,
  ) {}

  create(req: RolloutRequest, rolloutId = 'r1'): RolloutRun {
    this.write({ type: 'RolloutCreated', data: planRollout(rolloutId, req, this.fleet, this.catalog) });
    return this.book.get(rolloutId)!;
  }

  write(event: RolloutEvent): void {
    this.log.push({ event, at: this.now });
    this.book.evolve(event, { at: this.now });
  }

  get context(): TickContext {
    return {
      now: this.now,
      isOnline: (id) => !this.offline.has(id),
      offlineSince: (id) => this.offline.get(id),
      awayHosts: () => this.offline.keys(),
      artifactFor: (run, id, which = run) => {
        const host = this.fleet.get(id);
        const patch = this.catalog.find(which.patchId, which.version);
        // As the dispatcher: no artifact of a retracted patch is ever sent.
        const artifact =
          host && patch && patch.retracted === undefined ? patch.artifacts.get(host.kernelRelease) : undefined;
        return artifact && { kernelRelease: artifact.kernelRelease, artifactDigest: artifact.artifactDigest };
      },
      silenceGraceMs: 30_000,
      retraction: (run) => this.catalog.find(run.patchId, run.version)?.retracted,
    };
  }

  /** Runs the decider until it has nothing more to say; returns what it wrote. */
  settle(rolloutId = 'r1'): RolloutEvent[] {
    const written: RolloutEvent[] = [];
    for (let i = 0; i < 10_000; i++) {
      const next = nextEvents(this.book.get(rolloutId)!, this.context);
      if (next.length === 0) return written;
      for (const e of next) {
        this.write(e);
        written.push(e);
      }
    }
    throw new Error('the decider did not settle');
  }

  /** Commands sent and not yet answered, by host. */
  openCommands(rolloutId = 'r1'): Map<string, string> {
    const open = new Map<string, string>();
    const run = this.book.get(rolloutId)!;
    if (run.undo) {
      // An undo sends applies and reverts one after the other: the latest command is the open one.
      for (const host of run.hosts.values()) {
        const latest = [...this.log]
          .reverse()
          .find(
            (l) =>
              (l.event.type === 'HostApplyRequested' || l.event.type === 'HostRevertRequested') &&
              l.event.data.rolloutId === rolloutId &&
              l.event.data.hostId === host.hostId,
          );
        if (!latest || (latest.event.type !== 'HostApplyRequested' && latest.event.type !== 'HostRevertRequested'))
          continue;
        const answered = latest.event.type === 'HostApplyRequested' ? host.applyOutcome : host.revertOutcome;
        if (!answered) open.set(host.hostId, latest.event.data.commandId);
      }
      return open;
    }
    for (const host of run.hosts.values()) {
      if (host.revert && !host.revertOutcome) open.set(host.hostId, host.revert.commandId);
      else if (host.apply && !host.applyOutcome && !host.revert) open.set(host.hostId, host.apply.commandId);
    }
    return open;
  }

  observe(fact: HostFactEvent): void {
    this.facts.push({ fact, at: this.now });
    this.book.observe(fact, { at: this.now });
  }

  applied(hostId: string, overrides: Partial<events.PatchApplied> = {}): void {
    const commandId = this.openCommands().get(hostId)!;
    this.observe({
      type: 'PatchApplied',
      data: make(events.PatchApplied, {
        hostId,
        commandId,
        patchId: 'cve-2024-1086',
        version: '1',
        moduleName: 'livepatch_cve_2024_1086',
        transitionMs: '800',
        ...overrides,
      }),
    });
  }

  failed(hostId: string, stalled = 0): void {
    const commandId = this.openCommands().get(hostId)!;
    this.observe({
      type: 'PatchApplyFailed',
      data: make(events.PatchApplyFailed, {
        hostId,
        commandId,
        stage: 'transition',
        error: 'transition did not complete',
        stalledTasks: Array.from({ length: stalled }, (_, i) => ({
          pid: 100 + i,
          comm: 'sleeper',
          patchState: 0,
          stack: [],
        })),
        reverted: true,
      }),
    });
  }

  reverted(hostId: string): void {
    const commandId = this.openCommands().get(hostId)!;
    this.observe({ type: 'PatchReverted', data: make(events.PatchReverted, { hostId, commandId }) });
  }

  /** Answers every open command with success. */
  answerAll(): void {
    for (const hostId of this.openCommands().keys()) {
      const host = this.book.get('r1')!.hosts.get(hostId)!;
      if (host.revert) this.reverted(hostId);
      else this.applied(hostId);
    }
  }

  types(events: readonly RolloutEvent[]): string[] {
    return events.map((e) => e.type);
  }

  requestedHosts(kind: 'HostApplyRequested' | 'HostRevertRequested' = 'HostApplyRequested'): string[] {
    return this.log.filter((l) => l.event.type === kind).map((l) => (l.event.data as { hostId: string }).hostId);
  }
}
