import { CompressionTypes, Kafka, Producer } from 'kafkajs';
import { events } from '@rebootless/contracts';
import { ChainHead, ChainedEvent, EventDraft, SigningKey, appendToChain, readEnvelope, startEpoch } from '@rebootless/events';
import { ChainStateFile, PendingBatch } from './chain-state';
import { readRange } from './log-reader';
import { EVENTS_TOPIC } from './topic';

export interface EventPublisherOptions {
  kafka: Kafka;
  producerId: string;
  /** Where the chain state and signing key live. */
  stateDir: string;
  topic?: string;
  /** Who the producer's own events (ChainEpochStarted) are attributed to. */
  actor?: events.Actor;
  now?: () => number;
  /** Told about recoveries and withdrawn batches; default: silent. */
  log?: (line: string) => void;
}

export class PublishError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'PublishError';
  }
}

// How far around a pending batch's send time its records can be in the log.
const SETTLE_BEFORE_MS = 10_000;
const SETTLE_AFTER_MS = 120_000;

/**
 * Appends events to the producer's hash chain and writes them to Kafka (idempotent producer,
 * acks from all in-sync replicas). Before each send the batch is written ahead to the state
 * file; a producer that crashed mid-send settles that batch from the log when it opens again,
 * so its chain continues with no gap and no fork. A producer with no state starts a new epoch,
 * announced by ChainEpochStarted.
 */
export class EventPublisher {
  private queue: Promise<unknown> = Promise.resolve();
  private unsettled: PendingBatch | undefined;
  private closed = false;

  private constructor(
    private readonly opts: Required<Pick<EventPublisherOptions, 'topic' | 'now' | 'log'>> & EventPublisherOptions,
    private readonly producer: Producer,
    private readonly state: ChainStateFile,
    readonly key: SigningKey,
    private chainHead: ChainHead,
  ) {}

  static async open(options: EventPublisherOptions): Promise<EventPublisher> {
    const opts = { topic: EVENTS_TOPIC, now: Date.now, log: () => undefined, ...options };
    const state = new ChainStateFile(opts.stateDir, opts.producerId);
    const { key, created } = state.loadOrCreateKey();
    const stored = created ? undefined : state.load();
    const producer = opts.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    try {
      if (stored) {
        const p = new EventPublisher(opts, producer, state, key, stored.head);
        p.unsettled = stored.pending;
        await p.settle();
        return p;
      }
      // No state: nothing says which epochs came before, so the epoch is the start time in
      // seconds, greater than any earlier epoch of this producer (docs/adr/0003-event-chain.md).
      const epoch = Math.max(1, Math.floor(opts.now() / 1000));
      const p = new EventPublisher(opts, producer, state, key, startEpoch(opts.producerId, epoch));
      await p.publish({
        stream: `producer/${opts.producerId}`,
        ...(opts.actor ? { actor: opts.actor } : {}),
        payload: {
          type: 'ChainEpochStarted',
          data: {
            publicKey: key.rawPublicKey,
            previousEpoch: 0,
            reason: created ? events.EpochReason.EPOCH_REASON_FIRST_START : events.EpochReason.EPOCH_REASON_STATE_LOST,
            detail: created ? 'new producer key' : `chain state ${state.statePath} was missing; the previous epoch ends where the log shows it`,
          },
        },
      });
      return p;
    } catch (err) {
      await producer.disconnect();
      throw err;
    }
  }

  get head(): ChainHead {
    return this.chainHead;
  }

  /**
   * Writes the drafts, in order, as one batch; resolves once Kafka acknowledged all of them.
   * Calls are serialised: the chain order is the order of calls.
   */
  publish(drafts: EventDraft | readonly EventDraft[]): Promise<ChainedEvent[]> {
    const list = Array.isArray(drafts) ? (drafts as readonly EventDraft[]) : [drafts as EventDraft];
    const run = this.queue.then(() => this.write(list));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Waits for what is queued, records a clean state (nothing pending) and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    if (!this.unsettled) this.state.save(this.chainHead);
    await this.producer.disconnect();
  }

  private async write(drafts: readonly EventDraft[]): Promise<ChainedEvent[]> {
    if (this.closed) throw new PublishError(`publisher ${this.opts.producerId} is closed`, undefined);
    if (drafts.length === 0) return [];
    if (this.unsettled) await this.settle();
    const { events: written, head } = appendToChain(this.chainHead, drafts, this.key, this.opts.now);
    const at = this.opts.now();
    const pending: PendingBatch = {
      at,
      before: { seq: this.chainHead.seq, hash: this.chainHead.hash.toString('hex') },
      records: written.map((e) => ({ seq: e.seq, key: e.stream, value: e.envelope })),
    };
    // Written ahead: after a crash the batch is settled from the log, never re-numbered.
    this.state.save(this.chainHead, pending);
    this.unsettled = pending;
    try {
      await this.send(pending.records, at);
    } catch (err) {
      throw new PublishError(
        `Kafka did not acknowledge ${written.length} event(s) of ${this.opts.producerId} (seq ${written[0]!.seq} to ${head.seq}): ${(err as Error).message}; ` +
          'the next publish or restart settles them from the log',
        err,
      );
    }
    this.unsettled = undefined;
    this.chainHead = head;
    return written;
  }

  private send(messages: { key: string; value: Buffer }[], at: number) {
    return this.producer.send({
      topic: this.opts.topic,
      acks: -1,
      compression: CompressionTypes.None,
      messages: messages.map((m) => ({ key: m.key, value: m.value, timestamp: String(at) })),
    });
  }

  /**
   * Settles a batch whose fate is unknown (crash or error mid-send) by reading the log around
   * its send time: records found stay; missing ones are re-sent, byte for byte, unless none of
   * the batch arrived, in which case it is withdrawn and the chain continues from before it.
   */
  private async settle(): Promise<void> {
    const batch = this.unsettled;
    if (!batch) return;
    const wanted = new Set(batch.records.map((r) => r.seq));
    const found = new Set<number>();
    await readRange({
      kafka: this.opts.kafka,
      topic: this.opts.topic,
      fromTimestamp: batch.at - SETTLE_BEFORE_MS,
      untilTimestamp: batch.at + SETTLE_AFTER_MS,
      onRecord: (r) => {
        if (!r.value) return;
        try {
          const v = readEnvelope(r.value);
          if (v.producerId === this.chainHead.producerId && v.epoch === this.chainHead.epoch && wanted.has(v.seq)) found.add(v.seq);
        } catch {
          // Not an envelope: someone else's problem; the verifier reports it.
        }
      },
    });
    const last = batch.records[batch.records.length - 1]!;
    if (found.size === 0) {
      this.opts.log(`${this.opts.producerId}: withdrew seq ${batch.records[0]!.seq}-${last.seq}: none reached the log`);
      this.chainHead = { ...this.chainHead, seq: batch.before.seq, hash: Buffer.from(batch.before.hash, 'hex') };
    } else {
      const missing = batch.records.filter((r) => !found.has(r.seq));
      if (missing.length > 0) {
        await this.send(missing, this.opts.now());
      }
      this.opts.log(`${this.opts.producerId}: settled seq ${batch.records[0]!.seq}-${last.seq}: ${found.size} in the log, ${missing.length} re-sent`);
      this.chainHead = { ...this.chainHead, seq: last.seq, hash: Buffer.from(readEnvelope(last.value).hash) };
    }
    this.state.save(this.chainHead);
    this.unsettled = undefined;
  }
}
