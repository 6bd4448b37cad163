// The hosts as their agents describe them: kernel release, labels, boot and the live patches the
// kernel shows. Facts only (DESIGN.md rule of truth), folded from agent events and the gateway.
import type { events } from '@rebootless/contracts';

export interface FleetHost {
  hostId: string;
  kernelRelease: string;
  labels: Readonly<Record<string, string>>;
  bootId: string;
  /** Enabled live patch modules, as the kernel last showed them. */
  liveModules: ReadonlySet<string>;
  tainted: number;
}

export class Fleet {
  private readonly hosts = new Map<string, FleetHost>();

  get size(): number {
    return this.hosts.size;
  }

  all(): IterableIterator<FleetHost> {
    return this.hosts.values();
  }

  get(hostId: string): FleetHost | undefined {
    return this.hosts.get(hostId);
  }

  /** HostEnrolled, HostInventoryReported, a hello or an inventory on the gateway. */
  observeFacts(facts: events.HostFacts, patches?: readonly events.LivePatchState[]): void {
    if (!facts.hostId) return;
    const known = this.hosts.get(facts.hostId);
    this.hosts.set(facts.hostId, {
      hostId: facts.hostId,
      kernelRelease: facts.kernelRelease || known?.kernelRelease || '',
      labels: { ...facts.labels },
      bootId: facts.bootId || known?.bootId || '',
      liveModules: patches ? enabledModules(patches) : (known?.liveModules ?? new Set()),
      tainted: Number(facts.tainted ?? 0),
    });
  }

  /** PatchApplied / PatchReverted carry the stack the kernel showed afterwards. */
  observeStack(hostId: string, stack: readonly events.LivePatchState[]): void {
    const known = this.hosts.get(hostId);
    if (known) this.hosts.set(hostId, { ...known, liveModules: enabledModules(stack) });
  }

  /** A new boot: every live patch is gone. */
  observeBoot(e: events.HostBooted): void {
    const known = this.hosts.get(e.hostId);
    if (known)
      this.hosts.set(e.hostId, {
        ...known,
        bootId: e.bootId,
        kernelRelease: e.kernelRelease || known.kernelRelease,
        liveModules: new Set(),
      });
  }
}

function enabledModules(stack: readonly events.LivePatchState[]): Set<string> {
  return new Set(stack.filter((p) => p.enabled).map((p) => p.moduleName));
}
