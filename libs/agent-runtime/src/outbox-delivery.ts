// Outbox delivery: every fact is chained into the agent's outbox (durable on return) before
// anything is answered, then delivered to the event sink one batch at a time, oldest first,
// under the trace it was recorded in, each batch sealed at its last record (docs/adr/0030);
// after a failure, retried with backoff until it goes.
import { events } from '@rebootless/contracts';
import type { EventDraft, EventPayload } from '@rebootless/events';
import { traceFields, withTraceContext, type TraceFields } from '@rebootless/telemetry';
import type { CommandCause } from './agent-context';
import { deliveryBackoffMs } from './rules/host-rules';
import type { EventOutbox, OutboxRecord } from './state/event-outbox';
import type { EventSink, GatewayRelay } from './talk/event-sink';

const BATCH = 200;

export interface OutboxDeliveryOptions {
  readonly outbox: EventOutbox;
  readonly sink: EventSink;
  readonly hostId: string;
  /** The dispatcher link the sink may relay through; absent when the agent works offline. */
  readonly relay: () => GatewayRelay | undefined;
  /** Spans are exported in this process: facts keep their trace to be sent under it. */
  readonly tracing: boolean;
  readonly log: (message: string) => void;
  /** What the outbox holds now may have been sent by an earlier run (default false). */
  readonly sentBefore?: boolean;
}

export class OutboxDelivery {
  private readonly stream: string;
  private running = true;
  private flushing = false;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Wakes the delivery when what is held back is due (a fact that closes it comes sooner). */
  private holdTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  /**
   * The last seq handed to a delivery that did not answer: up to it, the log may hold them
   * already (the dispatcher wrote them and died before saying so), and the next delivery says
   * so; as does what an earlier run may have sent (`sentBefore`).
   */
  private unansweredTo: number;

  constructor(private readonly options: OutboxDeliveryOptions) {
    this.stream = `host/${options.hostId}`;
    this.unansweredTo = options.sentBefore ? (options.outbox.pending().at(-1)?.seq ?? 0) : 0;
  }

  get pendingCount(): number {
    return this.options.outbox.pendingCount;
  }

  /**
   * Chains the facts about this host into the outbox, then starts delivering them. `holdMs`: facts
   * that open a change (PatchApplyStarted) wait up to that long for the fact that closes it, to
   * share one seal and one delivery with it (docs/adr/0030).
   */
  record(payloads: EventPayload[], cause?: CommandCause, holdMs?: number): void {
    const hostId = this.options.hostId;
    const drafts: EventDraft[] = payloads.map((payload) => ({
      stream: this.stream,
      actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: hostId, origin: '' },
      ...(cause?.rolloutId ? { correlationId: cause.rolloutId } : {}),
      ...(cause?.commandId ? { causationId: cause.commandId } : {}),
      payload,
    }));
    const trace = this.options.tracing ? activeTrace() : undefined;
    this.options.outbox.append(drafts, { ...(trace ? { trace } : {}), ...(holdMs ? { holdMs } : {}) });
    this.flush();
  }

  /** Events already drafted (the daemon's ServiceStarted, ServiceStopped), on the same chain. */
  append(drafts: readonly EventDraft[]): void {
    this.options.outbox.append(drafts);
    this.flush();
  }

  /** Delivers what waits in the outbox now; rejects when some is still there after `timeoutMs`. */
  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.options.outbox.pendingCount > 0) {
      if (Date.now() > deadline) throw new Error(`${this.options.outbox.pendingCount} events still undelivered`);
      this.flush(true);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Stops retrying; what is undelivered stays in the outbox for the next start. */
  stop(): void {
    this.running = false;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.flushTimer = undefined;
    this.holdTimer = undefined;
  }

  /**
   * One delivery at a time, oldest first; `now` skips a pending backoff (e.g. just connected) and
   * sends what is held back too.
   */
  flush(now = false): void {
    if (now && this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.flushing || !this.running || this.flushTimer) return;
    const link = this.options.relay();
    // Not tried while the stream is down: the attempt would seal its last record for nothing
    // (the delivery that goes once connected then carries two seals), and connecting flushes.
    if (this.options.sink.throughGateway && !link?.connected) return;
    const outbox = this.options.outbox;
    let batch = outbox.pending(BATCH);
    if (batch.length === 0) return;
    // Sent under the trace they were recorded in; kafkajs gives a send one parent, so a delivery
    // holds one trace's records (untraced: all of them, as before).
    const trace = batch[0]!.trace;
    const cut = batch.findIndex((r) => r.trace?.traceparent !== trace?.traceparent);
    if (cut > 0) batch = batch.slice(0, cut);
    // What is held back at the end waits for the fact that closes it, or for its time.
    const heldFrom = now ? batch.length : heldTail(batch, Date.now());
    if (heldFrom === 0) {
      const due = Math.max(0, batch[0]!.heldUntil! - Date.now());
      this.holdTimer = setTimeout(() => {
        this.holdTimer = undefined;
        this.flush();
      }, due);
      return;
    }
    if (heldFrom < batch.length) batch = batch.slice(0, heldFrom);
    this.flushing = true;
    const relay = link ?? {
      connected: false,
      relay: () => Promise.reject(new Error('no dispatcher configured')),
    };
    const last = batch[batch.length - 1]!.seq;
    const sentBefore = batch[0]!.seq <= this.unansweredTo;
    withTraceContext(trace, () =>
      this.options.sink.deliver(
        this.options.hostId,
        // Every delivery ends with a seal: readers believe nothing a seal does not cover.
        batch.map((r, i) => (i === batch.length - 1 ? outbox.sealed(r) : r.envelope)),
        relay,
        sentBefore,
      ),
    ).then(
      () => {
        this.failures = 0;
        outbox.confirm(last);
        this.flushing = false;
        this.flush();
      },
      (error: unknown) => {
        this.flushing = false;
        this.unansweredTo = Math.max(this.unansweredTo, last);
        this.failures += 1;
        if (this.failures === 1) this.options.log(`events not delivered, kept in the outbox: ${String(error)}`);
        if (!this.running) return;
        this.flushTimer = setTimeout(() => {
          this.flushTimer = undefined;
          this.flush();
        }, deliveryBackoffMs(this.failures));
      },
    );
  }
}

/** Where the run of records still held back at the batch's end begins (its length if none). */
function heldTail(batch: readonly OutboxRecord[], now: number): number {
  let from = batch.length;
  while (from > 0 && (batch[from - 1]!.heldUntil ?? 0) > now) from -= 1;
  return from;
}

/** The span the facts are recorded in (agent verify, agent transition), kept with them. */
function activeTrace(): TraceFields | undefined {
  const fields = traceFields();
  return fields.traceparent ? fields : undefined;
}
