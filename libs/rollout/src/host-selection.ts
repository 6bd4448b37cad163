// Which hosts a rollout targets: those the selector matches, restricted to the kernel releases
// the patch was built for; hosts whose kernel already runs the patch are skipped and reported.
import type { events } from '@rebootless/contracts';
import { RolloutInputError, RolloutPreconditionError } from './errors';
import type { FleetHost } from './fleet';

export interface HostSelection {
  /** Sorted by host id, so a plan is the same whoever computes it. */
  targets: string[];
  /** Matched, but the patch's module is already enabled in their kernel. */
  alreadyPatched: string[];
}

export interface PatchForSelection {
  patchId: string;
  version: string;
  kernelReleases: ReadonlySet<string>;
  /** The patch's module name on a release, when known: how a host is seen to carry it. */
  moduleName(kernelRelease: string): string | undefined;
}

export function isEmptySelector(selector: events.HostSelector | undefined): boolean {
  return (
    !selector ||
    (selector.kernelReleases.length === 0 && Object.keys(selector.labels).length === 0 && selector.hostIds.length === 0)
  );
}

export function matchesSelector(host: FleetHost, selector: events.HostSelector): boolean {
  if (selector.kernelReleases.length > 0 && !selector.kernelReleases.includes(host.kernelRelease)) return false;
  if (selector.hostIds.length > 0 && !selector.hostIds.includes(host.hostId)) return false;
  for (const [key, value] of Object.entries(selector.labels)) if (host.labels[key] !== value) return false;
  return true;
}

export function selectHosts(
  hosts: Iterable<FleetHost>,
  selector: events.HostSelector | undefined,
  patch: PatchForSelection,
): HostSelection {
  if (!selector || isEmptySelector(selector)) {
    throw new RolloutInputError(
      'selector',
      'name kernel releases, labels or host ids (an empty selector would mean the whole fleet)',
    );
  }
  const what = `patch ${patch.patchId} version ${patch.version}`;
  const built = [...patch.kernelReleases].sort();
  const notBuilt = selector.kernelReleases.filter((r) => !patch.kernelReleases.has(r));
  if (notBuilt.length > 0) {
    throw new RolloutPreconditionError(
      `${what} was not built for kernel release(s) ${notBuilt.join(', ')} named in selector.kernel_releases; it was built for ${built.join(', ') || 'no release'}`,
    );
  }
  const all = [...hosts];
  if (selector.hostIds.length > 0) {
    const known = new Set(all.map((h) => h.hostId));
    const unknown = selector.hostIds.filter((id) => !known.has(id));
    if (unknown.length > 0) {
      throw new RolloutPreconditionError(
        `selector.host_ids names host(s) no agent has reported: ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? ` and ${unknown.length - 10} more` : ''}`,
      );
    }
  }
  const matched = all.filter((h) => matchesSelector(h, selector));
  if (matched.length === 0) {
    throw new RolloutPreconditionError(`the selector matches no host (${describeSelector(selector)})`);
  }
  const buildable = matched.filter((h) => patch.kernelReleases.has(h.kernelRelease));
  if (buildable.length === 0) {
    const running = [...new Set(matched.map((h) => h.kernelRelease))].sort();
    throw new RolloutPreconditionError(
      `${what} was not built for the selected hosts' kernels: they run ${running.join(', ')}; it was built for ${built.join(', ') || 'no release'}`,
    );
  }
  const targets: string[] = [];
  const alreadyPatched: string[] = [];
  for (const host of buildable) {
    const module = patch.moduleName(host.kernelRelease);
    if (module !== undefined && host.liveModules.has(module)) alreadyPatched.push(host.hostId);
    else targets.push(host.hostId);
  }
  targets.sort();
  alreadyPatched.sort();
  if (targets.length === 0) {
    throw new RolloutPreconditionError(
      `every selected host already runs ${what} (${alreadyPatched.length} host(s)): nothing to roll out`,
    );
  }
  return { targets, alreadyPatched };
}

function describeSelector(selector: events.HostSelector): string {
  const parts: string[] = [];
  if (selector.kernelReleases.length) parts.push(`kernel releases ${selector.kernelReleases.join(', ')}`);
  const labels = Object.entries(selector.labels).map(([k, v]) => `${k}=${v}`);
  if (labels.length) parts.push(`labels ${labels.join(', ')}`);
  if (selector.hostIds.length) parts.push(`${selector.hostIds.length} host id(s)`);
  return parts.join('; ');
}
