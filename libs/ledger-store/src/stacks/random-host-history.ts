// Random but valid host histories for the property tests: each host is a small simulated kernel
// (DESIGN.md section 5: stacking, atomic replace, force, disable without removal before 5.1,
// modules loaded or removed by hand, reboots) whose agent reports what happened as the events
// it really sends. Not exported from the lib's index: tests only.
import { events } from '@rebootless/contracts';

/** A small seeded PRNG (mulberry32): the same seed gives the same histories. */
export class Prng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }
}

export const RELEASE = '6.1.0-18-cloud-amd64';
export const T0 = Date.UTC(2026, 0, 1);

export interface CatalogPatch {
  patchId: string;
  version: string;
  moduleName: string;
  replace: boolean;
  cves: events.Cve[];
  functions: events.PatchedFunction[];
}

const fn = (name: string): events.PatchedFunction => ({ object: 'vmlinux', name, sympos: 0 });
const cve = (id: string): events.Cve => ({ id, severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.5' });

/** Three patches in three versions each, one of them cumulative (atomic replace). */
export const CATALOG: CatalogPatch[] = ['fix-tcp', 'fix-nft', 'cumulative'].flatMap((patchId, p) =>
  ['1', '2', '3'].map((version) => ({
    patchId,
    version,
    moduleName: `lp_${patchId.replace('-', '_')}_${version}`,
    replace: patchId === 'cumulative',
    cves: [cve(`CVE-2026-${1000 + p * 10 + Number(version)}`)],
    functions: [fn(['tcp_v4_rcv', 'nft_verdict', 'udp_rcv'][p]!), fn(`helper_${p}_${version}`)],
  })),
);

interface Loaded {
  moduleName: string;
  patch: CatalogPatch | undefined;
  enabled: boolean;
  transition: boolean;
}

const operator: events.Actor = { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '10.0.0.7' };

/** One host's events, oldest first, as bodies (no payload of the chain: the projection takes them as verified). */
export function randomHostHistory(rng: Prng, hostId: string, length: number, startMinute: number): events.EventBody[] {
  const out: events.EventBody[] = [];
  let minute = startMinute;
  let bootN = 1;
  let bootId = `${hostId}-boot-1`;
  let loaded: Loaded[] = [];
  let handN = 0;

  const listing = (): events.LivePatchState[] =>
    loaded.map((m) => ({
      moduleName: m.moduleName,
      enabled: m.enabled,
      transition: m.transition,
      functions: m.patch ? m.patch.functions : [fn(`by_hand_${m.moduleName}`)],
      objectsPatched: {},
      ...(rng.chance(0.3) ? { replace: m.patch?.replace ?? false } : {}),
    }));
  const facts = (): events.HostFacts => ({
    hostId,
    hostname: hostId,
    machineId: `m-${hostId}`,
    kernelRelease: RELEASE,
    kernelVersion: '#1 SMP Debian 6.1.76-1',
    arch: 'x86_64',
    distro: 'debian-12',
    bootId,
    labels: { role: 'web' },
    agentVersion: '0.1.0',
    tainted: loaded.length > 0 ? '32768' : '0',
    taintFlags: loaded.length > 0 ? ['K'] : [],
  });
  const emit = (type: string, payload: Partial<events.EventBody>, rolloutId = '') => {
    minute += 1 + rng.int(30);
    const seconds = Math.floor((T0 + minute * 60_000) / 1000);
    out.push({
      eventId: `${hostId}-e${out.length + 1}`,
      type,
      stream: `host/${hostId}`,
      occurredAt: { seconds: String(seconds), nanos: 0 },
      ...(rng.chance(0.5) ? { actor: operator } : {}),
      correlationId: rolloutId,
      causationId: '',
      ...payload,
    });
  };
  // Sometimes the listing is not reported with the apply/revert (older agents): an empty stack.
  const reported = () => (rng.chance(0.8) ? listing() : []);

  emit('HostEnrolled', { hostEnrolled: { facts: facts(), agentPublicKey: new Uint8Array(0) } });
  while (out.length < length) {
    const roll = rng.next();
    if (roll < 0.35) {
      // Apply a published patch: stacks on top; a cumulative one replaces all (forced sometimes);
      // a newer version of a patch already there takes its place.
      const patch = rng.pick(CATALOG);
      if (loaded.some((m) => m.moduleName === patch.moduleName)) continue;
      const forced = rng.chance(0.15);
      if (patch.replace) loaded = [];
      else loaded = loaded.filter((m) => m.patch?.patchId !== patch.patchId);
      loaded.push({ moduleName: patch.moduleName, patch, enabled: true, transition: false });
      const rolloutId = rng.chance(0.7) ? `ro-${rng.int(20)}` : '';
      emit(
        'PatchApplied',
        {
          patchApplied: {
            hostId,
            commandId: `cmd-${out.length}`,
            patchId: patch.patchId,
            version: patch.version,
            moduleName: patch.moduleName,
            transitionMs: '900',
            forced,
            replace: patch.replace,
            functions: rng.chance(0.9) ? patch.functions : [],
            stack: reported(),
          },
        },
        rolloutId,
      );
    } else if (roll < 0.5 && loaded.length > 0) {
      // Revert: disable and remove.
      const m = rng.pick(loaded);
      loaded = loaded.filter((x) => x !== m);
      emit(
        'PatchReverted',
        {
          patchReverted: {
            hostId,
            commandId: `undo-${out.length}`,
            patchId: m.patch?.patchId ?? '',
            version: m.patch?.version ?? '',
            moduleName: m.moduleName,
            transitionMs: '700',
            stack: reported(),
          },
        },
        rng.chance(0.5) ? `ro-${rng.int(20)}` : '',
      );
    } else if (roll < 0.58 && loaded.length > 0) {
      // A transition under way, or ended; a patch disabled but still listed (before 5.1).
      const m = rng.pick(loaded);
      const what = rng.int(3);
      if (what === 0) m.transition = !m.transition;
      else if (what === 1) Object.assign(m, { enabled: false, transition: false });
      else Object.assign(m, { enabled: true, transition: false });
      emit('HostInventoryReported', { hostInventoryReported: { facts: facts(), patches: listing() } });
    } else if (roll < 0.66) {
      // Drift: a module loaded or removed by hand.
      if (loaded.length > 0 && rng.chance(0.5)) {
        const m = rng.pick(loaded);
        loaded = loaded.filter((x) => x !== m);
        emit('DriftDetected', {
          driftDetected: { hostId, kind: 'removed-by-hand', detail: m.moduleName, expected: [], observed: listing() },
        });
      } else if (rng.chance(0.5)) {
        handN += 1;
        loaded.push({ moduleName: `lp_by_hand_${handN}`, patch: undefined, enabled: true, transition: false });
        emit('DriftDetected', {
          driftDetected: { hostId, kind: 'loaded-by-hand', detail: '', expected: [], observed: listing() },
        });
      } else {
        emit('DriftDetected', {
          driftDetected: { hostId, kind: 'transition-stuck', detail: '', expected: [], observed: [] },
        });
      }
    } else if (roll < 0.74) {
      // A reboot, told by HostBooted; sometimes the same boot reported twice.
      const previous = bootId;
      if (rng.chance(0.8)) {
        bootN += 1;
        bootId = `${hostId}-boot-${bootN}`;
        loaded = [];
      }
      emit('HostBooted', { hostBooted: { hostId, bootId, previousBootId: previous, kernelRelease: RELEASE } });
    } else if (roll < 0.78) {
      // Re-enrolment, possibly from a boot we never heard of.
      if (rng.chance(0.5)) {
        bootN += 1;
        bootId = `${hostId}-boot-${bootN}`;
        loaded = [];
      }
      emit('HostEnrolled', { hostEnrolled: { facts: facts(), agentPublicKey: new Uint8Array(0) } });
    } else {
      emit('HostInventoryReported', { hostInventoryReported: { facts: facts(), patches: listing() } });
    }
  }
  return out;
}

/** The catalog's PatchPublished events (the builder's stream). */
export function catalogEvents(): events.EventBody[] {
  return CATALOG.map((p, n) => ({
    eventId: `publish-${n + 1}`,
    type: 'PatchPublished',
    stream: `patch/${p.patchId}`,
    occurredAt: { seconds: String(Math.floor(T0 / 1000) + n * 600), nanos: 0 },
    correlationId: '',
    causationId: '',
    patchPublished: {
      patchId: p.patchId,
      version: p.version,
      buildId: `build-${n + 1}`,
      artifacts: [{ kernelRelease: RELEASE, artifactDigest: `sha256:${n}`, vermagic: RELEASE }],
      cves: p.cves,
      replace: p.replace,
      severity: events.Severity.SEVERITY_HIGH,
      patchName: p.patchId,
    },
  }));
}
