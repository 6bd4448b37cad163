// What the agent's flows (apply, revert) share with the Agent that runs them: its options and
// memory, the running kernel's identity, and how facts are recorded and commands answered.
import type { ChannelCredentials, Client } from '@grpc/grpc-js';
import type { ArtifactStore } from '@rebootless/artifacts';
import { dispatcher, type events } from '@rebootless/contracts';
import type { EventPayload } from '@rebootless/events';
import type { KernelPort } from '@rebootless/kernel-model';
import { ATTR, SpanStatusCode, type Span } from '@rebootless/telemetry';
import type { AgentStateFile } from './state/agent-state';
import type { SharedArtifactDownloads } from './talk/shared-artifact-downloads';
import type { EventSink } from './talk/event-sink';

export type ReapplyPolicy = 'never' | 'at-start';

export interface AgentTimeouts {
  /** How long a patch transition may take before the agent reverses it. Default 60 s. */
  transitionMs?: number;
  /** How long fetching one artifact may take. Default 60 s. */
  fetchMs?: number;
  /** How often a running transition is looked at. Default 100 ms. */
  pollMs?: number;
  /** A transition the agent did not start, still running after this long, is drift. Default 5 min. */
  stuckTransitionMs?: number;
  /**
   * How long PatchApplyStarted waits (on disk) for the fact that ends the apply, to share its
   * seal and delivery (docs/adr/0030). Default 2 s; 0 sends it at once.
   */
  startedHoldMs?: number;
}

export interface AgentOptions {
  readonly kernel: KernelPort;
  readonly dataDir: string;
  readonly hostId: string;
  readonly labels?: Record<string, string>;
  /** One dispatcher, or the addresses of several instances (an agent moves on when its stream drops). */
  readonly dispatcherAddress?: string | readonly string[];
  /**
   * host:port of the builder's BuildService (FetchArtifact). With a dispatcher, artifacts come
   * from the dispatcher's site cache and the builder is asked only when the dispatcher cannot
   * serve (ADR 0026); '' for none.
   */
  readonly builderAddress: string;
  /** The builder's raw 32-byte Ed25519 public key: the only key whose artifacts are loaded. */
  readonly builderPublicKey: Uint8Array;
  readonly sink: EventSink;
  /** TLS client credentials for both; insecure when absent (tests, REBOOTLESS_INSECURE). */
  readonly credentials?: ChannelCredentials;
  readonly reapply?: ReapplyPolicy;
  readonly timeouts?: AgentTimeouts;
  /** A host that went down within this long after an apply quarantines that patch. Default 10 min. */
  readonly crashLoopWindowMs?: number;
  /** Largest module accepted. Default 64 MiB. */
  readonly maxArtifactBytes?: number;
  /** Wall clock in ms. */
  readonly now?: () => number;
  /** fsync state and outbox writes (default). Off only in benchmarks. */
  readonly syncWrites?: boolean;
  /**
   * Where fetched artifacts are kept; default `<dataDir>/artifacts`. Simulated agents of one
   * process may share one store (content-addressed: same digest, same bytes).
   */
  readonly artifacts?: ArtifactStore;
  /**
   * One FetchArtifact per digest for every agent of the process that holds the same instance
   * (simulated fleets only). Verification stays per agent: own pinned key, own hash of the module.
   */
  readonly sharedDownloads?: SharedArtifactDownloads;
  /** Host facts the kernel port cannot give (simulated hosts share one /etc). */
  readonly facts?: { hostname?: string; machineId?: string; distro?: string; root?: string };
  readonly agentVersion?: string;
  readonly reconnect?: { minMs: number; maxMs: number };
  /** How often the kernel is compared with the last report, on a timer shared by every agent of the process. Default 60 s; 0: only on start and after commands. */
  readonly driftCheckMs?: number;
  readonly log?: (message: string) => void;
}

export const Outcome = dispatcher.CommandOutcome;

export interface ResultBody {
  outcome: dispatcher.CommandOutcome;
  stage: string;
  error: string;
  forced?: boolean;
}

/** The command a fact was caused by: its events carry it as causation and correlation. */
export interface CommandCause {
  readonly commandId: string;
  readonly rolloutId: string;
}

export interface AgentContext {
  readonly options: AgentOptions;
  readonly kernel: KernelPort;
  readonly state: AgentStateFile;
  readonly store: ArtifactStore;
  readonly timeouts: Required<AgentTimeouts>;
  readonly hostId: string;
  now(): number;
  /** The running boot and kernel (`uname -r`, `uname -v`), read at start. */
  bootId(): string;
  kernelRelease(): string;
  kernelVersion(): string;
  /** The builder's client, made on first use and shared by the agents of the process. */
  builderClient(): Client;
  /** The client of the dispatcher the agent is linked to; undefined without one. */
  dispatcherClient(): Client | undefined;
  /**
   * Chains the facts into the outbox (durable on return), then starts delivering them; `holdMs`
   * holds them back for the fact that closes them (OutboxDelivery.record).
   */
  record(payloads: EventPayload[], cause?: CommandCause, holdMs?: number): void;
  /** The command's result (ACCEPTED on the way, or the final one), sent to the dispatcher after the state is on disk. */
  answer(commandId: string, body: ResultBody, stack?: events.LivePatchState[]): dispatcher.CommandResult;
  /**
   * The command came before and was answered: the same answer goes again, with the stack the
   * kernel shows now, and nothing is done or recorded. Undefined when it is new (or was never
   * answered).
   */
  answerAgain(commandId: string): Promise<dispatcher.CommandResult | undefined>;
  /** Staged with the next state change: the command id is never accepted again (the replay window). */
  rememberCommand(commandId: string, expiresAt: dispatcher.ApplyCommand['expiresAt']): void;
  /**
   * The PatchApplied or PatchApplyFailed the outbox holds for this command, undelivered: an apply
   * records its end before the state write that closes it, so after a crash between the two the
   * fact is there and the state is behind (ApplyFlow.catchUpRecordedEnd).
   */
  recordedEnd(commandId: string): events.EventBody | undefined;
  /** Resolves true once the module's transition is over, false when it outlasts `transitionMs`. */
  waitForTransition(moduleName: string): Promise<boolean>;
  log(message: string): void;
}

export function applyFailedFact(
  hostId: string,
  cmd: { commandId: string; patchId: string; version: string },
  stage: string,
  error: string,
  stalledTasks: events.StalledTask[],
  reverted: boolean,
): events.PatchApplyFailed {
  return {
    hostId,
    commandId: cmd.commandId,
    patchId: cmd.patchId,
    version: cmd.version,
    stage,
    error,
    stalledTasks,
    reverted,
  };
}

export const MODULE_ATTR = 'rebootless.module.name';

export function spanAttributes(hostId: string, cmd: { rolloutId: string; patchId: string; version: string }) {
  return {
    [ATTR.hostId]: hostId,
    [ATTR.rolloutId]: cmd.rolloutId,
    [ATTR.patchId]: cmd.patchId,
    [ATTR.patchVersion]: cmd.version,
  };
}

/** The command's outcome on its span; anything but success marks the span as an error. */
export function settle(span: Span, result: dispatcher.CommandResult): dispatcher.CommandResult {
  span.setAttribute(
    ATTR.outcome,
    (Outcome[result.outcome] ?? String(result.outcome)).replace('COMMAND_OUTCOME_', '').toLowerCase(),
  );
  if (result.outcome !== Outcome.COMMAND_OUTCOME_SUCCEEDED) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${result.stage}: ${result.error}` });
  }
  return result;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
