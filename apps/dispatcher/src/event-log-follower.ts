// Reads the whole event log from its beginning, then keeps following it. The dispatcher keeps
// no state of its own on disk: everything it knows about rollouts, patches and hosts is rebuilt
// from the log at every start, and "caught up" says when the rebuild reached the log's end as it
// was at start (only then may it decide anything).
//
// Every record goes through the same ProjectionGate as the ledger's (docs/adr/0012): only
// what a vouched producer sealed and was allowed to say is handed on. A forged RolloutCreated
// appended to the log is a finding in the dispatcher's log, never a rollout it runs.
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Kafka } from 'kafkajs';
import { events } from '@rebootless/contracts';
import { replayLag } from '@rebootless/kafka';
import {
  EnvelopeLayout,
  ProjectionGate,
  SealWorker,
  scanEnvelope,
  sealJobsOf,
  textAt,
  type Finding,
  type GateOutput,
  type KeyTrust,
} from '@rebootless/events';

/** A record the gate released: its body as the gate read it (decoded once, not again here). */
export interface FollowedEvent {
  body: events.EventBody;
  partition: number;
  offset: string;
}

export interface EventLogFollowerOptions {
  kafka: Kafka;
  topic: string;
  /** Only events of these types are decoded and handed on. */
  types: ReadonlySet<string>;
  /**
   * Service producers' vouched keys, read again when a producer has none yet (a service started
   * beside the dispatcher writes its key a moment later). Agents' keys count only through the
   * AgentKeyBound this dispatcher's gateway wrote (the gate learns them from the log).
   */
  serviceKeys: () => ReadonlyMap<string, readonly Uint8Array[]>;
  /** How long an unsealed tail waits for its seal before it is a finding. */
  unsealedTailTimeoutMs: number;
  onEvents(events: FollowedEvent[]): void;
  onError(error: unknown): void;
  /** Records kept out: the dispatcher logs them (the ledger stores them). */
  onFinding(finding: Finding): void;
}

/** Configured service keys; agents' keys are the gate's, from the bindings it released. */
class FollowerKeyTrust implements KeyTrust {
  private services: ReadonlyMap<string, readonly Uint8Array[]>;
  constructor(private readonly load: () => ReadonlyMap<string, readonly Uint8Array[]>) {
    this.services = load();
  }

  keysFor(producerId: string): readonly Uint8Array[] {
    if (!producerId.startsWith('agent/') && !this.services.has(producerId)) this.services = this.load();
    return this.services.get(producerId) ?? [];
  }
}

const layout = new EnvelopeLayout();
const relayLayout = new EnvelopeLayout();

function bodyOf(value: Buffer): events.EventBody | undefined {
  try {
    const l = scanEnvelope(value, layout);
    return events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
  } catch {
    return undefined; // the gate reports it
  }
}

export class EventLogFollower {
  private stopped = false;
  /** A read of the log's ends not started yet: the callers of readToNow() meanwhile share it. */
  private nextRead: Promise<void> | undefined;
  private readUnderWay: Promise<void> = Promise.resolve();

  private constructor(
    private readonly stopConsumer: () => Promise<void>,
    readonly caughtUp: Promise<void>,
    private readonly kafka: Kafka,
    private readonly topic: string,
    private readonly readTo: ReadonlyMap<number, bigint>,
    private readonly gate: ProjectionGate<Buffer>,
  ) {}

  /**
   * Whether this envelope is already in the log as read so far (same producer, epoch, seq and
   * hash): an agent re-sends what an instance wrote just before it died without acknowledging.
   */
  holds(envelope: Uint8Array): boolean {
    let l: EnvelopeLayout;
    try {
      l = scanEnvelope(envelope, relayLayout);
    } catch {
      return false; // the readers report it
    }
    return this.gate.holds(
      textAt(envelope, l.producerIdStart, l.producerIdEnd),
      l.epoch,
      l.seq,
      envelope.subarray(l.hashStart, l.hashEnd),
    );
  }

  /**
   * Resolves once every partition is read up to the end it had when called: what any instance
   * wrote before the call is folded (a rollout taken over is decided only on everything its last
   * driver wrote; an agent's events sent again are known if they are in the log). Writes after the
   * call are not waited for, so a busy log does not hold it up. Callers who come while a read of
   * the ends is under way share the next one, read after all their calls: thousands of agents
   * re-sending after an instance died cost one.
   */
  readToNow(): Promise<void> {
    this.nextRead ??= this.readUnderWay.then(() => {
      this.nextRead = undefined;
      const read = this.readToEnds();
      this.readUnderWay = read.catch(() => undefined);
      return read;
    });
    return this.nextRead;
  }

  /** Reads the partitions' ends now, then waits until the follower has read up to them. */
  private async readToEnds(pollMs = 20): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    let ends: { partition: number; high: bigint }[];
    try {
      ends = (await admin.fetchTopicOffsets(this.topic)).map((w) => ({ partition: w.partition, high: BigInt(w.high) }));
    } finally {
      await admin.disconnect();
    }
    while (!this.stopped && ends.some((e) => e.high > 0n && (this.readTo.get(e.partition) ?? 0n) < e.high)) {
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  static async start(opts: EventLogFollowerOptions): Promise<EventLogFollower> {
    const admin = opts.kafka.admin();
    await admin.connect();
    let ends: Map<number, bigint>;
    try {
      const watermarks = await admin.fetchTopicOffsets(opts.topic);
      ends = new Map(
        watermarks.filter((w) => BigInt(w.high) > BigInt(w.low)).map((w) => [w.partition, BigInt(w.high)]),
      );
    } finally {
      await admin.disconnect();
    }
    let markCaughtUp!: () => void;
    const caughtUp = new Promise<void>((resolve) => (markCaughtUp = resolve));
    const trust = new FollowerKeyTrust(opts.serviceKeys);
    // Reading the log as it stood at start, most of the time goes to Ed25519 (half of a start on
    // the log of 10,000 hosts): those seals are checked on worker threads, one a core, ahead of
    // the gate. Once caught up records come a few at a time, and the workers are let go.
    let seals: SealWorker | undefined = ends.size > 0 ? new SealWorker(availableParallelism()) : undefined;
    // No checkpoint here (the log is read from the start), so no record of where key events lie.
    const gate = new ProjectionGate<Buffer>({
      trust,
      unsealedTimeoutMs: opts.unsealedTailTimeoutMs,
      checkpointed: false,
      verdicts: { take: (key, hash, signature) => seals?.take(key, hash, signature) },
    });
    // Caught up once every partition was read to its end at start and nothing read is still held.
    const checkCaughtUp = () => {
      if (ends.size === 0 && seals) {
        void seals.close();
        seals = undefined;
      }
      if (ends.size === 0 && gate.holding === 0) markCaughtUp();
    };
    checkCaughtUp();

    const handOn = (out: GateOutput<Buffer>) => {
      for (const f of out.findings) opts.onFinding(f);
      const decoded: FollowedEvent[] = [];
      for (const r of out.released) {
        if (!r.body || !opts.types.has(r.body.type)) continue;
        decoded.push({ body: r.body, partition: r.partition, offset: r.offset });
      }
      if (decoded.length > 0) opts.onEvents(decoded);
    };
    // Unsealed tails are timed from when the log as it was at start has been read: until then
    // the seals that exist may not have been read yet.
    let liveSince: number | undefined;
    /** Each partition's next offset to read. */
    const readTo = new Map<number, bigint>();
    let judging = false;
    const expiry = setInterval(
      () => {
        if (ends.size > 0 || judging) return;
        liveSince ??= Date.now();
        if (!gate.hasDue(Date.now(), liveSince)) return checkCaughtUp();
        // A seal or binding may sit in a partition whose leader was lost with a broker: judged
        // only once every partition is read to its end, else the wait starts again from now.
        judging = true;
        void replayLag(opts.kafka, opts.topic, readTo)
          .then(
            ({ behind }) => behind === 0n,
            () => false,
          ) // Kafka cannot say: not yet
          .then((atEnd) => {
            if (!atEnd) liveSince = Date.now();
            else handOn(gate.expire(Date.now(), liveSince));
            checkCaughtUp();
          })
          .finally(() => (judging = false));
      },
      // At least each second: a start waits for nothing held (an old tail is due at once).
      Math.min(1_000, Math.max(50, opts.unsealedTailTimeoutMs / 4)),
    );
    expiry.unref();

    // A group of its own each start, never committing: every start replays the whole log.
    const groupId = `rebootless-dispatcher-${randomUUID()}`;
    const consumer = opts.kafka.consumer({ groupId, maxWaitTimeInMs: 50, maxBytesPerPartition: 4 * 1024 * 1024 });
    await consumer.connect();
    await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      // Two partitions at a time: one batch's seals are checked on the worker while another's
      // records go through the gate (whose offers never interleave: each batch offers in one go).
      partitionsConsumedConcurrently: 2,
      eachBatch: async ({ batch, heartbeat }) => {
        const bodies = batch.messages.map((m) => (m.value ? bodyOf(m.value) : undefined));
        if (seals) {
          const values = batch.messages.map((m) => m.value);
          await seals.check(sealJobsOf(values, bodies, (producerId, epoch) => gate.keyOf(producerId, epoch)));
        }
        const now = Date.now();
        for (const [i, m] of batch.messages.entries()) {
          const body = bodies[i];
          const value = m.value ?? Buffer.alloc(0);
          const writtenAt = Number(m.timestamp);
          handOn(
            gate.offer(
              { partition: batch.partition, offset: m.offset, value: m.value, body, item: value, writtenAt },
              now,
            ),
          );
        }
        const end = ends.get(batch.partition);
        const last = batch.messages.at(-1);
        if (last) readTo.set(batch.partition, BigInt(last.offset) + 1n);
        if (end !== undefined && last && BigInt(last.offset) + 1n >= end) ends.delete(batch.partition);
        checkCaughtUp();
        await heartbeat();
      },
    });
    const follower = new EventLogFollower(
      async () => {
        clearInterval(expiry);
        await seals?.close();
        seals = undefined;
        await consumer.disconnect();
        const cleanup = opts.kafka.admin();
        try {
          await cleanup.connect();
          await cleanup.deleteGroups([groupId]);
        } catch {
          // A leftover empty group is harmless; the broker expires it.
        } finally {
          await cleanup.disconnect();
        }
      },
      caughtUp,
      opts.kafka,
      opts.topic,
      readTo,
      gate,
    );
    return follower;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopConsumer();
  }
}
