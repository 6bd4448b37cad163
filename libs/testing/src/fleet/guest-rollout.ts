// What the kernel-tier tests ask of the services about one host in a QEMU guest: rollouts to it
// through the dispatcher, and what the ledger recorded of it. Shared by the tests that run the
// agent in a guest (Debian's cloud kernel, the lab profile's own kernel).
import * as path from 'node:path';
import { dispatcher, events, ledger } from '@rebootless/contracts';
import {
  bundleGuestProgram,
  contractProtoAssets,
  grpcHealthCheckAsset,
  guestProgramEntry,
  KernelLab,
  type GuestForward,
  type KernelImage,
} from '@rebootless/kernel-lab';
import { REPO_ROOT, unary, type BuiltPatch, type Client, type FleetServices } from './rig';

const R = dispatcher.RolloutState;

/** Polls `check` until it returns a value (not undefined or false); errors count as "not yet". */
export async function until<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 180_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; last error: ${String(lastError)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface HistoryItem {
  type: string;
  patchId: string;
  moduleName: string;
  causationId: string;
  occurredAt: { seconds: string; nanos: number };
  body: Record<string, unknown>;
}

/** One wave, everyone at once, no soak: these tests are about the kernel, not the strategy. */
export function allAtOnce(): Partial<events.RolloutStrategy> {
  return {
    canaryHostIds: [],
    canaryCount: 0,
    waves: [{ percent: 100 } as events.WaveSize],
    soakSeconds: 0,
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
    applyTimeoutSeconds: 300,
    offlineDeadlineSeconds: 900,
  };
}

export class GuestHost {
  constructor(
    readonly hostId: string,
    private readonly rollouts: Client,
    private readonly ledgerClient: Client,
  ) {}

  /** CreateRollout, retried while the dispatcher has not yet read the patch or the host from the log. */
  createRollout(patch: Pick<BuiltPatch, 'patchId' | 'version'>): Promise<dispatcher.Rollout> {
    return until(
      async () =>
        (
          await unary<dispatcher.CreateRolloutResponse>(this.rollouts, 'createRollout', {
            patchId: patch.patchId,
            version: patch.version,
            selector: { kernelReleases: [], labels: {}, hostIds: [this.hostId] },
            strategy: allAtOnce(),
            skipApproval: true, // not about approvals (ADR 0013)
          })
        ).rollout,
      `the dispatcher accepts a rollout of ${patch.patchId}`,
      120_000,
    );
  }

  rolloutDone(rolloutId: string, states: dispatcher.RolloutState[]): Promise<dispatcher.Rollout> {
    let last: dispatcher.Rollout | undefined;
    return until(
      async () => {
        last = (await unary<dispatcher.GetRolloutResponse>(this.rollouts, 'getRollout', { rolloutId })).rollout!;
        return states.includes(last.state) ? last : undefined;
      },
      `rollout ${rolloutId} is ${states.map((s) => R[s]).join('/')} (last ${last && R[last.state]} ${last?.stateReason})`,
      600_000,
    );
  }

  async ledgerHost(): Promise<ledger.Host> {
    return (await unary<ledger.GetHostResponse>(this.ledgerClient, 'getHost', { hostId: this.hostId })).host!;
  }

  async history(): Promise<HistoryItem[]> {
    const out: HistoryItem[] = [];
    let pageToken = '';
    do {
      const page = await unary<ledger.GetHostHistoryResponse>(this.ledgerClient, 'getHostHistory', {
        hostId: this.hostId,
        pageSize: 500,
        pageToken,
      });
      for (const record of page.records) {
        const body = record.body as unknown as Record<string, unknown> & events.EventBody;
        const key = body.type.charAt(0).toLowerCase() + body.type.slice(1);
        const payload = (body[key] ?? {}) as { patchId?: string; moduleName?: string };
        out.push({
          type: body.type,
          patchId: payload.patchId ?? '',
          moduleName: payload.moduleName ?? '',
          causationId: body.causationId,
          occurredAt: body.occurredAt as unknown as HistoryItem['occurredAt'],
          body,
        });
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  /** The ledger's stack for the host once its modules, oldest first, equal `modules`. */
  ledgerStackIs(modules: string[], what: string): Promise<ledger.HostStack> {
    return until(async () => {
      const stack = (await this.ledgerHost()).stack!;
      const names = stack.entries.map((e) => e.moduleName);
      return JSON.stringify(names) === JSON.stringify(modules) ? stack : undefined;
    }, `the ledger shows ${what}`);
  }
}

/** Where the guest reaches the builder and the dispatcher (guestfwd to 10.0.2.100, restrict=on). */
export const GUEST_BUILDER_PORT = 7451;
export const GUEST_DISPATCHER_PORT = 7452;

/**
 * A lab whose guest runs the agent daemon (apps/agent, bundled) beside the probe, pinned to the
 * builder's key, reaching the services only through agentGuestForwards(); also /guest/agent-command.js.
 * The kernel: Debian's cloud kernel of `release`, or a profile's own (`kernel`).
 */
export async function prepareAgentLab(options: {
  hostId: string;
  builderKey: Buffer;
  /** The agent's data directory in the guest (on the data disk to survive a reboot). */
  dataDir: string;
  release?: string;
  kernel?: KernelImage;
}): Promise<KernelLab> {
  const bundles = await Promise.all([
    bundleGuestProgram(path.join(REPO_ROOT, 'apps', 'agent', 'src', 'main.ts'), 'agent.js'),
    bundleGuestProgram(guestProgramEntry('agent-command'), 'agent-command.js'),
  ]);
  return KernelLab.prepare({
    ...(options.kernel ? { kernel: options.kernel } : { release: options.release }),
    bundles,
    files: [grpcHealthCheckAsset(), ...contractProtoAssets()],
    services: [
      {
        name: 'agent',
        argv: ['/bin/node', '/guest/agent.js'],
        env: {
          REBOOTLESS_INSECURE: 'true',
          REBOOTLESS_DATA_DIR: options.dataDir,
          AGENT_HOST_ID: options.hostId,
          AGENT_LABELS: 'lab=kernel',
          AGENT_DISPATCHER_ADDRESS: `10.0.2.100:${GUEST_DISPATCHER_PORT}`,
          AGENT_BUILDER_ADDRESS: `10.0.2.100:${GUEST_BUILDER_PORT}`,
          AGENT_BUILDER_PUBLIC_KEY: options.builderKey.toString('hex'),
          AGENT_EVENT_SINK: 'gateway',
          AGENT_REAPPLY: 'at-start',
        },
      },
    ],
  });
}

export function agentGuestForwards(
  services: Pick<FleetServices, 'builderAddress' | 'dispatcherAddress'>,
): GuestForward[] {
  const port = (address: string) => Number(address.split(':').at(-1));
  return [
    { name: 'builder', guestPort: GUEST_BUILDER_PORT, hostPort: port(services.builderAddress) },
    { name: 'dispatcher', guestPort: GUEST_DISPATCHER_PORT, hostPort: port(services.dispatcherAddress) },
  ];
}
