import { Kafka, Producer } from 'kafkajs';
import { events } from '@rebootless/contracts';
import {
  ChainHead,
  ChainedEvent,
  EventDraft,
  SigningKey,
  appendToChain,
  readEnvelope,
  startEpoch,
} from '@rebootless/events';
import { ChainStateFile, PendingBatch } from './chain-state';
import { readRange } from './log-reader';
import { EVENTS_TOPIC } from './topic';
import { WholeSend } from './whole-send';

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
  /**
   * How long after its send a batch whose send failed may still reach the log (a broker holds a
   * write until its in-sync replicas have it, up to replica.lag.time.max.ms: 10 s on the clusters
   * scripts/kafka.mjs starts, 30 s in Kafka's defaults, so raise this there): a batch of which
   * nothing was found is withdrawn only once this long has passed since it was sent, after a
   * second look. Default 15,000 ms.
   */
  settleGraceMs?: number;
  /** How long a failed publish keeps trying to settle its batch before it rejects as unknown. Default 120,000 ms. */
  settleForMs?: number;
  /**
   * Calls made while earlier batches are under way are gathered into one batch (default true).
   * False keeps one batch, and one send, per call: a send then runs in its caller's trace.
   */
  gatherCalls?: boolean;
}

/** A call's part of a prepared batch. */
interface Prepared {
  acknowledged: Promise<ChainedEvent[]>;
  written: ChainedEvent[];
  epoch: number;
}

/** A publish waiting to be prepared with the others gathered meanwhile. */
interface Gathered {
  drafts: readonly EventDraft[];
  resolve: (prepared: Prepared) => void;
  reject: (error: unknown) => void;
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
export const DEFAULT_SETTLE_GRACE_MS = 15_000;
/** kafkajs' request timeout, which the services' clients keep: how long a send to a lost broker can hang. */
const CLIENT_REQUEST_TIMEOUT_MS = 30_000;
/**
 * How long after a batch's first records reach the log its seal may still land while its producer
 * lives: a send only partly answered takes up to the client's request timeout to fail, and the
 * records missing are re-sent once the settle grace has passed since the send. A reader that
 * calls a tail unsealed sooner loses a live producer's genuine records whenever a broker dies
 * mid-send (docs/adr/0012, addendum); the rest is margin for the re-send's own failover.
 */
export const SEAL_LANDS_WITHIN_MS = CLIENT_REQUEST_TIMEOUT_MS + DEFAULT_SETTLE_GRACE_MS + 15_000;
const DEFAULT_SETTLE_FOR_MS = 120_000;
/** Gathered calls make batches of up to this many events (one call's batch may be bigger). */
const GATHERED_EVENTS = 1_000;

/**
 * Appends events to the producer's hash chain and writes them to Kafka (idempotent producer,
 * acks from all in-sync replicas). Before each send the batch is written ahead to the state
 * file; a producer that crashed mid-send settles that batch from the log when it opens again,
 * so its chain continues with no gap and no fork. A producer with no state starts a new epoch,
 * announced by ChainEpochStarted.
 */
export class EventPublisher {
  /** Serialises preparation and settling: the chain order is the order of publish calls. */
  private gate: Promise<void> = Promise.resolve();
  /** Sends run one after another, behind the preparation of the next batch. */
  private sending: Promise<void> = Promise.resolve();
  /** Prepared (hashed, signed, written ahead) but not yet acknowledged, oldest first. */
  private inflight: { at: number; records: PendingBatch['records']; head: ChainHead; settled: Promise<void> }[] = [];
  /** Calls waiting for the batches ahead of them (gatherCalls). */
  private gathered: Gathered[] = [];
  private gathering: Promise<void> | undefined;
  /** Left by a crash (found at open) or a failed send: settled from the log before anything else. */
  private unsettled: PendingBatch | undefined;
  private failure: unknown;
  private preparedHead: ChainHead;
  private closed = false;
  private readonly whole: WholeSend;
  /** A send failed: the client's idempotence sequence can no longer be trusted (see renewProducer). */
  private stale = false;

  private constructor(
    private readonly opts: Required<Pick<EventPublisherOptions, 'topic' | 'now' | 'log'>> & EventPublisherOptions,
    private producer: Producer,
    private readonly state: ChainStateFile,
    readonly key: SigningKey,
    private ackedHead: ChainHead,
  ) {
    this.preparedHead = ackedHead;
    this.whole = new WholeSend(opts.kafka, opts.topic);
  }

  static async open(options: EventPublisherOptions): Promise<EventPublisher> {
    const opts = { topic: EVENTS_TOPIC, now: Date.now, log: () => undefined, ...options };
    const state = new ChainStateFile(opts.stateDir, opts.producerId);
    const { key, created } = state.loadOrCreateKey();
    const stored = created ? undefined : state.load();
    const producer = newProducer(opts.kafka);
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
            detail: created
              ? 'new producer key'
              : `chain state ${state.statePath} was missing; the previous epoch ends where the log shows it`,
          },
        },
      });
      return p;
    } catch (err) {
      await producer.disconnect();
      throw err;
    }
  }

  /** The last event Kafka acknowledged. */
  get head(): ChainHead {
    return this.ackedHead;
  }

  /**
   * Writes the drafts, in order, as one batch; resolves once Kafka acknowledged all of them.
   * Calls may overlap: each batch is prepared as soon as the one before it is, and sent
   * after that one is acknowledged, so preparing hides behind the broker's round trip.
   *
   * A send that fails (a broker lost, a request timed out) leaves the batch's fate unknown: it
   * may still land. Before the caller hears, the batch is settled from the log: it resolves if
   * the batch is in the log after all (kept, or its missing records re-sent); if it was withdrawn
   * (none of it landed) the same drafts are sent again, which writes the decision once. All this
   * is tried for up to `settleForMs`; past that it rejects, and the rejection says whether the
   * batch is withdrawn or its fate unknown (the next publish settles it first).
   */
  async publish(drafts: EventDraft | readonly EventDraft[]): Promise<ChainedEvent[]> {
    const list = Array.isArray(drafts) ? (drafts as readonly EventDraft[]) : [drafts as EventDraft];
    const deadline = this.opts.now() + (this.opts.settleForMs ?? DEFAULT_SETTLE_FOR_MS);
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new PublishError(`publisher ${this.opts.producerId} is closed`);
      let prepared: Prepared;
      try {
        prepared =
          (this.opts.gatherCalls ?? true) ? await this.gather(list) : await this.behindGate(() => this.prepare(list));
      } catch (err) {
        // Settling an earlier failure (reading the log, renewing the producer) failed: nothing
        // of this batch was prepared, so trying again cannot write it twice.
        if (this.closed || this.opts.now() >= deadline) throw err;
        this.opts.log(`${this.opts.producerId}: not prepared (${(err as Error).message}); trying again`);
        await backoff(attempt);
        continue;
      }
      try {
        return await prepared.acknowledged;
      } catch (err) {
        const last = prepared.written.at(-1);
        if (!last) throw err;
        if (await this.landedAfterSettling(prepared.epoch, last.seq, err, deadline)) return prepared.written;
        if (this.closed || this.opts.now() >= deadline) {
          throw new PublishError(
            `${this.opts.producerId}: seq ${prepared.written[0]!.seq}-${last.seq} withdrawn, none of it is in the log, after trying for ${this.opts.settleForMs ?? DEFAULT_SETTLE_FOR_MS} ms: ${(err as Error).message}`,
            err,
          );
        }
        this.opts.log(`${this.opts.producerId}: sending the ${list.length} withdrawn event(s) again`);
        await backoff(attempt);
      }
    }
  }

  /**
   * The call's drafts, prepared in one batch with the calls made while the batches ahead were
   * under way. One batch is sent at a time and one waits prepared behind it: the calls made
   * meanwhile (a gateway binding the keys of thousands of agents connecting at once) wait and go
   * together, each written ahead once, instead of each writing ahead every batch in flight.
   * Each call's events stay together and in call order.
   */
  private gather(drafts: readonly EventDraft[]): Promise<Prepared> {
    return new Promise<Prepared>((resolve, reject) => {
      this.gathered.push({ drafts, resolve, reject });
      this.gathering ??= this.prepareGathered().finally(() => (this.gathering = undefined));
    });
  }

  private async prepareGathered(): Promise<void> {
    while (this.gathered.length > 0) {
      // After a failure the next preparation settles what was in flight: it need not wait.
      while (this.inflight.length >= 2 && this.failure === undefined) await this.inflight[0]!.settled;
      let events = 0;
      let n = 0;
      while (n < this.gathered.length && (n === 0 || events + this.gathered[n]!.drafts.length <= GATHERED_EVENTS))
        events += this.gathered[n++]!.drafts.length;
      const group = this.gathered.splice(0, n);
      let prepared: Prepared;
      try {
        prepared = await this.behindGate(() => this.prepare(group.flatMap((g) => g.drafts)));
      } catch (err) {
        for (const g of group) g.reject(err);
        continue;
      }
      let from = 0;
      for (const g of group) {
        const written = prepared.written.slice(from, (from += g.drafts.length));
        g.resolve({ acknowledged: prepared.acknowledged.then(() => written), written, epoch: prepared.epoch });
      }
    }
  }

  /** Runs `work` after everything queued before it (preparation and settling keep call order). */
  private behindGate<T>(work: () => Promise<T>): Promise<T> {
    const run = this.gate.then(work);
    this.gate = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Settles what failed (see publish); whether `seq` of `epoch` is in the log afterwards. */
  private async landedAfterSettling(epoch: number, seq: number, cause: unknown, deadline: number): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        // An empty batch: behind the gate, it settles whatever failed before it.
        await this.behindGate(() => this.prepare([]));
        break;
      } catch (err) {
        if (this.closed || this.opts.now() >= deadline) {
          throw new PublishError(
            `${this.opts.producerId} seq ${seq}: the send failed (${(cause as Error).message}) and the log could not be read ` +
              `to settle it (${(err as Error).message}); its fate is unknown until the next publish settles it`,
            err,
          );
        }
        await backoff(attempt);
      }
    }
    return this.ackedHead.epoch === epoch && this.ackedHead.seq >= seq;
  }

  /** Waits for what is under way, records a clean state (nothing pending) and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.gathering;
    await this.gate;
    await this.sending;
    if (!this.failure && this.inflight.length === 0) await this.state.saveAsync(this.ackedHead);
    await this.producer.disconnect();
  }

  /**
   * Runs in call order, behind the gate. Resolves once the batch is prepared and written
   * ahead; its acknowledgement is awaited outside the gate, so the next batch can be prepared.
   */
  private async prepare(drafts: readonly EventDraft[]): Promise<Prepared> {
    if (this.failure !== undefined) {
      await this.sending;
      this.unsettled = this.pendingFromInflight();
      this.inflight = [];
      this.failure = undefined;
    }
    if (this.stale) await this.renewProducer();
    if (this.unsettled) await this.settle();
    if (drafts.length === 0) return { acknowledged: Promise.resolve([]), written: [], epoch: this.preparedHead.epoch };
    const { events: written, head } = appendToChain(this.preparedHead, drafts, this.key, this.opts.now);
    let settled!: () => void;
    const batch = {
      at: this.opts.now(),
      records: written.map((e) => ({ seq: e.seq, key: e.stream, value: e.envelope })),
      head,
      settled: new Promise<void>((resolve) => (settled = resolve)),
    };
    this.inflight.push(batch);
    this.preparedHead = head;
    // Written ahead: after a crash every unacknowledged batch is settled from the log, never
    // re-numbered. The file is written and synced on another thread; the send waits for it.
    const writtenAhead = this.state.saveAsync(this.ackedHead, this.pendingFromInflight());
    writtenAhead.catch(() => undefined); // awaited below, possibly after it failed
    const sent = this.sending.then(async () => {
      try {
        await writtenAhead;
      } catch (err) {
        this.failure ??= err;
        throw new PublishError(
          `seq ${written[0]!.seq} to ${head.seq} of ${this.opts.producerId} not sent: writing them ahead failed: ${(err as Error).message}`,
          err,
        );
      }
      if (this.failure !== undefined) {
        throw new PublishError(
          `seq ${written[0]!.seq} to ${head.seq} of ${this.opts.producerId} not sent: an earlier batch failed; the next publish settles them`,
        );
      }
      try {
        await this.send(batch.records, batch.at);
      } catch (err) {
        this.failure = err;
        this.stale = true;
        throw new PublishError(
          `Kafka did not acknowledge ${written.length} event(s) of ${this.opts.producerId} (seq ${written[0]!.seq} to ${head.seq}): ${(err as Error).message}; ` +
            'the next publish or restart settles them from the log',
          err,
        );
      }
      this.inflight.shift();
      this.ackedHead = batch.head;
    });
    this.sending = sent.catch(() => undefined);
    void this.sending.then(settled);
    return { acknowledged: sent.then(() => written), written, epoch: head.epoch };
  }

  private pendingFromInflight(): PendingBatch {
    const records = ([] as PendingBatch['records']).concat(...this.inflight.map((b) => b.records));
    return {
      at: this.inflight[0]?.at ?? this.opts.now(),
      lastAt: this.inflight[this.inflight.length - 1]?.at ?? this.opts.now(),
      before: { seq: this.ackedHead.seq, hash: this.ackedHead.hash.toString('hex') },
      records,
    };
  }

  /** Fails unless Kafka answered for every partition written (see WholeSend); a failure is settled from the log. */
  private send(messages: { key: string; value: Buffer }[], at: number): Promise<void> {
    const timestamp = String(at);
    return this.whole.send(
      this.producer,
      messages.map((m) => ({ key: m.key, value: m.value, timestamp })),
    );
  }

  /**
   * Settles a batch whose fate is unknown (crash or error mid-send) by reading the log around
   * its send time: records found stay; missing ones are re-sent, byte for byte, unless none of
   * the batch arrived, in which case it is withdrawn and the chain continues from before it.
   */
  /**
   * After a failed send kafkajs' idempotent producer may hold sequence numbers the broker never
   * saw, or saw without telling it: a later batch can then be answered DUPLICATE_SEQUENCE_NUMBER,
   * which kafkajs takes for success although nothing was written (found with a broker SIGKILLed
   * under load, libs/kafka/src/cluster-faults.int.spec.ts). A new producer id starts clean.
   */
  private async renewProducer(): Promise<void> {
    const old = this.producer;
    this.producer = newProducer(this.opts.kafka);
    this.stale = false;
    await old.disconnect().catch(() => undefined);
    await this.producer.connect();
  }

  /** The producer's records of a pending batch found in the log, by seq. */
  private async findInLog(batch: PendingBatch): Promise<Set<number>> {
    const wanted = new Set(batch.records.map((r) => r.seq));
    const found = new Set<number>();
    await readRange({
      kafka: this.opts.kafka,
      topic: this.opts.topic,
      fromTimestamp: batch.at - SETTLE_BEFORE_MS,
      untilTimestamp: (batch.lastAt ?? batch.at) + SETTLE_AFTER_MS,
      onRecord: (r) => {
        if (!r.value) return;
        try {
          const v = readEnvelope(r.value);
          if (v.producerId === this.ackedHead.producerId && v.epoch === this.ackedHead.epoch && wanted.has(v.seq))
            found.add(v.seq);
        } catch {
          // Not an envelope: someone else's problem; the verifier reports it.
        }
      },
    });
    return found;
  }

  private async settle(): Promise<void> {
    const batch = this.unsettled;
    if (!batch) return;
    if (batch.records.length === 0) {
      this.unsettled = undefined;
      return;
    }
    let found = await this.findInLog(batch);
    const grace = this.opts.settleGraceMs ?? DEFAULT_SETTLE_GRACE_MS;
    const wait = (batch.lastAt ?? batch.at) + grace - this.opts.now();
    if (found.size < batch.records.length && wait > 0) {
      // A write the broker still holds lands later: withdrawn, it would fork the chain; re-sent,
      // it would be there twice. Give it time to land first.
      this.opts.log(
        `${this.opts.producerId}: ${found.size === 0 ? 'none' : `${found.size} of ${batch.records.length}`} of seq ${batch.records[0]!.seq}+ found yet; looking again in ${wait} ms`,
      );
      await new Promise((resolve) => setTimeout(resolve, wait));
      found = await this.findInLog(batch);
    }
    const last = batch.records[batch.records.length - 1]!;
    if (found.size === 0) {
      this.opts.log(`${this.opts.producerId}: withdrew seq ${batch.records[0]!.seq}-${last.seq}: none reached the log`);
      this.ackedHead = { ...this.ackedHead, seq: batch.before.seq, hash: Buffer.from(batch.before.hash, 'hex') };
    } else {
      const missing = batch.records.filter((r) => !found.has(r.seq));
      if (missing.length > 0) {
        try {
          await this.send(missing, this.opts.now());
        } catch (err) {
          this.stale = true; // settled again, with a new producer, at the next publish
          throw err;
        }
      }
      this.opts.log(
        `${this.opts.producerId}: settled seq ${batch.records[0]!.seq}-${last.seq}: ${found.size} in the log, ${missing.length} re-sent`,
      );
      this.ackedHead = { ...this.ackedHead, seq: last.seq, hash: Buffer.from(readEnvelope(last.value).hash) };
    }
    this.preparedHead = this.ackedHead;
    await this.state.saveAsync(this.ackedHead);
    this.unsettled = undefined;
  }
}

function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.min(500 * attempt, 5_000)));
}

function newProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
}
