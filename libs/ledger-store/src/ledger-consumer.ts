import { randomUUID } from 'node:crypto';
import * as os from 'node:os';
import { Consumer, IHeaders, Kafka } from 'kafkajs';
import { SEAL_LANDS_WITHIN_MS, readRecordsAt, replayLag } from '@rebootless/kafka';
import { events } from '@rebootless/contracts';
import {
  AgentKeyState,
  EnvelopeLayout,
  Finding,
  GateOutput,
  KeyTrust,
  ProjectionGate,
  SealVerdicts,
  SealWorker,
  agentKeyStateProblems,
  keyEventPositions,
  scanEnvelope,
  sealJobsOf,
} from '@rebootless/events';
import { ATTR, SPAN, telemetryStatus, withSpanFromSync } from '@rebootless/telemetry';
import { CheckpointSigner, CheckpointStore, HeldItem, LEDGER_PRODUCER } from './checkpoint-store';
import { LedgerDatabase } from './database';
import { oneProjectorAssigner } from './one-projector';
import { FindingRow, LedgerProjection, TableWriteObserver, writeStaged } from './projection';

/**
 * The configured service producers' keys. Agents' keys are never configured nor taken on first
 * sight: the gate counts one only through the AgentKeyBound the dispatcher's gateway wrote after
 * verifying the host's certificate (docs/adr/0012).
 */
export class LedgerKeyTrust implements KeyTrust {
  constructor(private readonly services: ReadonlyMap<string, readonly Uint8Array[]>) {}

  keysFor(producerId: string): readonly Uint8Array[] {
    return this.services.get(producerId) ?? [];
  }
}

/**
 * How long a chain's unsealed tail waits for its seal before it becomes a finding, by default: as
 * long as a live producer's seal can take to land when a broker dies mid-send (60 s).
 */
export const DEFAULT_UNSEALED_TAIL_TIMEOUT_MS = SEAL_LANDS_WITHIN_MS;

/** A record read from the log, as the gate hands it back once it may be projected. */
interface LogRecord {
  value: Buffer | null;
  timestamp: string;
  headers?: IHeaders;
}

/**
 * Only records written this recently get a `ledger projection` span: older ones are a replay
 * (a new or rebuilt ledger reads the whole log), whose producers' traces ended long ago, and a
 * span with its export costs as much as projecting the record or more (bench:telemetry,
 * `project`: 40-125 µs; a SQLite replay projects 23k records/s, 43 µs each).
 */
const TRACED_RECORD_AGE_MS = 60_000;

export interface LedgerConsumerOptions {
  kafka: Kafka;
  db: LedgerDatabase;
  topic: string;
  /** Configured service producers and their raw Ed25519 keys. */
  serviceKeys: ReadonlyMap<string, readonly Uint8Array[]>;
  /**
   * The consumer group: ledgers sharing one database share one group, and Kafka's group protocol
   * gives the partitions to one of them at a time (docs/adr/0024). Unset: a group of its own.
   */
  groupId?: string;
  /** Most bytes fetched a partition at a time (default 4 MiB); tests stop a ledger mid-replay with less. */
  fetchBytesPerPartition?: number;
  /** How long the group waits for a member that stopped answering before handing its partitions on. Default 30 s. */
  sessionTimeoutMs?: number;
  /**
   * How long records of a chain not yet sealed wait for their seal; then they are an `unsealed`
   * finding and never reach the read models (docs/adr/0012). Default DEFAULT_UNSEALED_TAIL_TIMEOUT_MS;
   * shorter, a broker lost mid-send makes genuine records findings.
   */
  unsealedTailTimeoutMs?: number;
  /** Called after every committed batch. */
  onProgress?: (p: LedgerProgress) => void;
  /**
   * Told when the database refused a write or a reload (`retryInMs` until the next attempt) and
   * when projecting resumed after that (`retryInMs` undefined): the operator's log line.
   */
  onRecovery?: (r: { attempt: number; error?: Error; retryInMs?: number }) => void;
  /** Told each table write's duration (benchmarks); none in production. */
  onTableWritten?: TableWriteObserver;
  /** Told when this ledger takes the projection over, and from where it resumes. */
  onResume?: (r: LedgerResume) => void;
  /**
   * The ledger's own key, which seals each checkpoint it writes (docs/adr/0028). Without it no
   * checkpoint is sealed and a restart reads the log again from offset 0. The seals it resumes
   * from must verify with a key of `serviceKeys` configured for `ledger` or `ledger/<instance>`.
   */
  checkpointSigner?: CheckpointSigner;
}

/** Where a ledger resumed when it took the projection over. */
export interface LedgerResume {
  /** The lease generation this ledger holds: each takeover is the next. */
  generation: number;
  /** Whether it resumed from a checkpoint; without one (or one refused) every partition is read from offset 0. */
  fromCheckpoint: boolean;
  /**
   * Why the checkpoint found was refused, one sentence each naming the row (docs/adr/0028): its
   * seal, a key it holds that the log does not bind, a chain vouched for by no key. Empty: none.
   */
  refused: string[];
  /** Each partition's offset the reading resumes at (a partition not listed: 0). */
  readFrom: ReadonlyMap<number, bigint>;
  /** Records the gate held at the checkpoint, read back from it. */
  held: number;
  /** Records of the log read again to check the agent keys the checkpoint holds, and how long that took. */
  keyRecords: { read: number; ms: number };
  /** Milliseconds spent loading the read models' live part and the checkpoint. */
  loadMs: number;
}

export interface LedgerProgress {
  partition: number;
  nextOffset: bigint;
  /** Records read since start (verification-only records included). */
  records: number;
  /** Records projected since start. */
  projected: number;
  findings: number;
}

/**
 * Consumes the event log into the read models. Every record goes through the ProjectionGate
 * (verified, sealed, the producer's to say) and only what it releases is projected; each Kafka
 * batch is one database transaction holding its rows and the next offsets of the partitions it
 * moved, so a kill at any point loses or doubles nothing. A partition's stored offset never
 * passes a record the gate still holds: after a restart that record is projected then.
 *
 * The gate's state (chains, agent keys, held records) is checkpointed in the same transaction
 * (docs/adr/0024): a ledger that takes the projection over (a start, a restart, a rebalance)
 * loads it and reads each partition on from where the checkpoint stands. Without a checkpoint
 * (a new or rebuilt database) it reads from offset 0. Ledgers sharing a database form one
 * consumer group; the partitions go to one of them at a time, and a lease row fences the one
 * that lost them.
 */
export class LedgerConsumer {
  readonly projection: LedgerProjection;
  private gate: ProjectionGate<LogRecord>;
  /** Each partition's offset as loaded at start: records below it are already projected. */
  private resumeAt = new Map<number, bigint>();
  /** Each partition's next offset after the last record offered to the gate. */
  private seenTo = new Map<number, bigint>();
  private expiry: NodeJS.Timeout | undefined;
  /** Each partition's high watermark minus its next offset read, as of its last batch. */
  private behind = new Map<number, bigint>();
  /** Since when every partition read is read to its end: unsealed tails are timed from then. */
  private liveSince: number | undefined;
  private recovering: Promise<void> | undefined;
  /** stop() was called: recovery gives up waiting for the database. */
  private stopped = false;
  private consumer: Consumer | undefined;
  /** Each partition's next offset as committed with the read models. */
  private offsets = new Map<number, bigint>();
  /** Each partition's next offset as projected in memory: ahead of `offsets` while a write is under way. */
  private projectedTo = new Map<number, bigint>();
  private failure: Error | undefined;
  /** The batch writes under way, in order. */
  private writes: Promise<void> = Promise.resolve();
  private groupId = '';
  private generatedGroup = false;
  private readonly checkpoints: CheckpointStore;
  /** When this consumer was made: the group gives the partitions to its oldest member. */
  private readonly startedAt = Date.now();
  readonly holder = `${os.hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
  /** The lease generation this ledger holds, once it took the projection over. */
  private generation: number | undefined;
  /** The takeover for the current assignment, once asked for (reset at each group join). */
  private owning: Promise<void> | undefined;
  /** Partitions whose reading has been moved to where the checkpoint stands, this assignment. */
  private positioned = new Set<number>();
  /** How many records the last takeover read again for the checkpoint's agent keys. */
  private keyRecordsRead = 0;
  /** Where this ledger resumed last. */
  resumed: LedgerResume | undefined;
  readonly stats = { records: 0, projected: 0, findings: 0 };
  /** Where the time goes: verifying and projecting in memory vs writing batches. */
  readonly timing = { projectMs: 0, flushMs: 0, batches: 0 };
  /** Spans exported: each record projected now is a span in the trace of whoever wrote it. */
  private readonly tracing = telemetryStatus().exporting;
  /** Seals checked ahead on a worker thread while the main thread projects (docs/adr/0005). */
  private seals: SealWorker | undefined;
  private readonly verdicts: SealVerdicts = { take: (k, h, s) => this.seals?.take(k, h, s) };

  constructor(private readonly opts: LedgerConsumerOptions) {
    this.projection = new LedgerProjection(opts.db, opts.topic);
    const ledgerKeys = new Map([...opts.serviceKeys].filter(([id]) => LEDGER_PRODUCER.test(id)));
    this.checkpoints = new CheckpointStore(opts.db, opts.topic, opts.checkpointSigner, ledgerKeys);
    this.gate = this.newGate();
  }

  private newGate(): ProjectionGate<LogRecord> {
    return new ProjectionGate<LogRecord>({
      trust: new LedgerKeyTrust(this.opts.serviceKeys),
      unsealedTimeoutMs: this.unsealedTimeoutMs,
      verdicts: this.verdicts,
    });
  }

  private get unsealedTimeoutMs(): number {
    return this.opts.unsealedTailTimeoutMs ?? DEFAULT_UNSEALED_TAIL_TIMEOUT_MS;
  }

  /** Where the read models stand: each partition's next offset to project. */
  get positions(): ReadonlyMap<number, bigint> {
    return this.offsets;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.owning = undefined;
    // Unsealed tails are judged on the clock, even when no record comes to move things on.
    // At least each second: a tail written long ago is due as soon as the log is read to its end.
    this.expiry ??= setInterval(
      () => void this.expireUnsealed(),
      Math.min(1_000, Math.max(50, this.unsealedTimeoutMs / 4)),
    );
    this.expiry.unref();
    this.seals ??= new SealWorker();
    const { kafka, topic } = this.opts;
    // Offsets live in the database, never in Kafka: the group only says who projects.
    this.generatedGroup = this.opts.groupId === undefined;
    this.groupId = this.opts.groupId ?? `rebootless-ledger-${randomUUID()}`;
    const consumer = kafka.consumer({
      groupId: this.groupId,
      maxWaitTimeInMs: 200,
      maxBytesPerPartition: this.opts.fetchBytesPerPartition ?? 4 * 1024 * 1024,
      maxBytes: 16 * 1024 * 1024,
      sessionTimeout: this.opts.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: Math.max(100, Math.floor((this.opts.sessionTimeoutMs ?? 30_000) / 10)),
      partitionAssigners: [oneProjectorAssigner(this.startedAt)],
    });
    this.consumer = consumer;
    // Each assignment is taken over anew (the partitions may have been another ledger's
    // meanwhile), and at once, so a ledger restarted at the log's end stands where
    // its checkpoint says before any record comes.
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      this.owning = undefined;
      if ((payload.memberAssignment[topic]?.length ?? 0) === 0) return;
      this.owning = this.inTurn(() => this.takeOver());
      this.owning.catch((err: unknown) => {
        this.failure ??= err as Error;
        void this.recover(-1);
      });
    });
    await consumer.connect();
    // Where each partition is read from is the checkpoint's say (a seek once assigned); a group
    // that never committed starts at the beginning.
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Two partitions at a time: one batch is projected while the one before it is written.
      partitionsConsumedConcurrently: 2,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (!isRunning() || isStale() || batch.messages.length === 0) return;
        if (this.failure) return this.recover(batch.partition);
        // The group hears from this member before a long batch too, not only after it.
        await heartbeat();
        try {
          await (this.owning ??= this.inTurn(() => this.takeOver()));
        } catch (err) {
          this.failure ??= err as Error;
          return this.recover(batch.partition);
        }
        if (!this.positioned.has(batch.partition)) {
          this.positioned.add(batch.partition);
          const from = this.seenTo.get(batch.partition) ?? 0n;
          if (BigInt(batch.messages[0]!.offset) !== from) {
            consumer.seek({ topic, partition: batch.partition, offset: from.toString() });
            return;
          }
        }
        const last = BigInt(batch.messages[batch.messages.length - 1]!.offset) + 1n;
        this.behind.set(batch.partition, BigInt(batch.highWatermark) - last);
        if ([...this.behind.values()].some((b) => b > 0n)) this.liveSince = undefined;
        else this.liveSince ??= Date.now();
        try {
          await this.consumeBatch(batch.partition, batch.messages);
        } catch (err) {
          this.failure ??= err as Error;
          return this.recover(batch.partition);
        }
        resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
        await heartbeat();
      },
    });
  }

  /**
   * Takes the projection over for this assignment: the next lease generation (which waits for
   * the previous holder's batch under way), then the read models' live part and the checkpoint.
   * A ledger still holding the lease it had keeps its memory, which is the database's.
   */
  private async takeOver(): Promise<void> {
    await this.writes;
    if (this.failure) throw this.failure;
    this.positioned = new Set();
    if (this.generation !== undefined && (await this.checkpoints.leaseGeneration()) === this.generation) return;
    const began = performance.now();
    this.generation = await this.checkpoints.takeLease(this.holder);
    this.offsets = await this.projection.load();
    this.projectedTo = new Map(this.offsets);
    this.seenTo = new Map();
    this.behind = new Map();
    this.liveSince = undefined;
    this.gate = this.newGate();
    const loaded = await this.checkpoints.load();
    let held = 0;
    let keyRecords = { read: 0, ms: 0 };
    const refused: string[] = [];
    if (loaded) {
      const cp = loaded.checkpoint;
      // Nothing in the checkpoint vouches for itself (docs/adr/0028): its seal, the records of
      // the log behind each agent key it holds, and the keys of the chains it says are vouched
      // are each checked, and every problem is named, before any of it is believed.
      const keysFrom = performance.now();
      refused.push(...loaded.problems, ...(await this.keyEventProblems(cp.agentKeys)));
      keyRecords = { read: this.keyRecordsRead, ms: Math.round(performance.now() - keysFrom) };
      try {
        refused.push(
          ...this.gate.restore(
            cp,
            (partition, offset, item: HeldItem) => {
              const value = item.value === null ? null : Buffer.from(item.value, 'base64');
              return {
                partition,
                offset,
                value,
                body: decodeBody(value),
                item: { value, timestamp: item.timestamp },
                writtenAt: Number(item.timestamp),
              };
            },
            Date.now(),
          ),
        );
      } catch (err) {
        refused.push(`the checkpoint's rows do not restore a gate: ${(err as Error).message}`);
      }
      if (refused.length === 0) {
        for (const p of cp.partitions) {
          this.seenTo.set(p.partition, BigInt(p.nextOffset));
          held += p.held.length;
        }
        this.resumeAt = new Map();
      }
    }
    if (!loaded || refused.length > 0) {
      // No checkpoint (a new or rebuilt database), or one refused: the log from offset 0,
      // projecting only past the committed offsets; the log is the source of truth.
      this.gate = this.newGate();
      this.resumeAt = new Map(this.offsets);
    }
    if (refused.length > 0) {
      const generation = this.generation;
      await this.opts.db.transaction(async (q) => {
        await this.checkpoints.holdLease(q, generation);
        await this.checkpoints.clear(q);
      });
      // One finding a takeover (its own offset, so none hides another), naming every row refused.
      this.recordFinding({
        kind: 'checkpoint-altered',
        position: { partition: -1, offset: String(-generation) },
        detail:
          `the ledger's checkpoint was refused at takeover (lease generation ${generation}) and the log is read ` +
          `again from offset 0, trusting only what it says: ${refused.join('; ')}`,
      });
    }
    this.resumed = {
      generation: this.generation,
      fromCheckpoint: loaded !== undefined && refused.length === 0,
      refused,
      readFrom: new Map(this.seenTo),
      held,
      keyRecords,
      loadMs: Math.round(performance.now() - began),
    };
    this.opts.onResume?.(this.resumed);
  }

  /**
   * Why the agent keys a checkpoint holds cannot be believed: each binding and revocation is read
   * again from the log, where it names it, and must be a record sealed by a configured dispatcher
   * key that says what the row says (docs/adr/0028).
   */
  private async keyEventProblems(states: readonly AgentKeyState[]): Promise<string[]> {
    const problems: string[] = [];
    const wellFormed = states.filter((s) => {
      try {
        keyEventPositions([s]);
        return true;
      } catch {
        problems.push(`checkpoint_agent_keys ${String(s?.producerId)}: the row is not an agent key state`);
        return false;
      }
    });
    const positions = keyEventPositions(wellFormed);
    this.keyRecordsRead = positions.length;
    const records =
      positions.length > 0
        ? await readRecordsAt(this.opts.kafka, this.opts.topic, positions)
        : new Map<string, Buffer | null>();
    const services = new LedgerKeyTrust(this.opts.serviceKeys);
    for (const s of wellFormed) {
      try {
        problems.push(...agentKeyStateProblems(s, (p, o) => records.get(`${p}:${o}`), services));
      } catch (err) {
        problems.push(
          `checkpoint_agent_keys ${s.producerId}: the row does not read as agent keys (${(err as Error).message})`,
        );
      }
    }
    return problems;
  }

  /**
   * The database refused a batch: memory is ahead of it. Once the writes under way have settled,
   * join again and take the projection over from what was committed (the checkpoint).
   */
  private async recover(partition: number): Promise<void> {
    // Until the database answers again: a reload refused while it is down (PostgreSQL stopped,
    // the network cut) is tried again later, never given up on silently.
    this.recovering ??= (async () => {
      await this.writes;
      await this.consumer?.disconnect().catch(() => undefined);
      this.consumer = undefined;
      for (let attempt = 1; !this.stopped; attempt++) {
        const retryInMs = Math.min(1000 * 2 ** (attempt - 1), 10_000);
        this.opts.onRecovery?.({ attempt, error: this.failure, retryInMs });
        await new Promise((r) => setTimeout(r, retryInMs));
        if (this.stopped) return;
        this.generation = undefined;
        this.failure = undefined;
        try {
          await this.start();
          this.opts.onRecovery?.({ attempt });
          return;
        } catch (err) {
          this.failure = err as Error;
          const half = this.consumer as Consumer | undefined; // start() may have got as far as connecting
          this.consumer = undefined;
          await half?.disconnect().catch(() => undefined);
        }
      }
    })().finally(() => (this.recovering = undefined));
    void partition;
  }

  /** The last error the database gave, if any (the consumer retries). */
  get lastFailure(): Error | undefined {
    return this.failure;
  }

  private async consumeBatch(
    partition: number,
    messages: { offset: string; value: Buffer | null; timestamp: string; headers?: IHeaders }[],
  ): Promise<void> {
    const bodies = messages.map((m) => decodeBody(m.value));
    // The batch's seals go to the worker first; meanwhile the other partition's batch projects.
    const jobs = this.seals
      ? sealJobsOf(
          messages.map((m) => m.value),
          bodies,
          (producerId, epoch) => this.gate.keyOf(producerId, epoch),
        )
      : [];
    if (jobs.length > 0 && this.seals) {
      await this.seals.check(jobs);
      if (this.failure) throw this.failure; // a write refused meanwhile: recovery reads this batch again
    }
    // One batch projects and stages at a time: its staged rows go out with its partition's offset.
    await this.inTurn(() => this.projectBatch(partition, messages, bodies));
  }

  /** Projection yields between slices (projectBatch), so whatever touches it waits its turn. */
  private turn: Promise<unknown> = Promise.resolve();

  private inTurn<T>(run: () => Promise<T>): Promise<T> {
    const next = this.turn.then(run, run);
    this.turn = next.catch(() => undefined);
    return next;
  }

  private async projectBatch(
    partition: number,
    messages: { offset: string; value: Buffer | null; timestamp: string; headers?: IHeaders }[],
    bodies: (events.EventBody | undefined)[],
  ): Promise<void> {
    const began = performance.now();
    let projected = 0;
    const moved = new Set<number>([partition]);
    const now = Date.now();
    for (let i = 0; i < messages.length; i++) {
      // Let the write under way take its replies between slices of projection: every step of the
      // chain of writes waits for this thread.
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToIo();
      const m = messages[i]!;
      this.stats.records += 1;
      const body = bodies[i];
      const record = { partition, offset: m.offset, value: m.value, body, item: m, writtenAt: Number(m.timestamp) };
      projected += this.applyReleased(this.gate.offer(record, now), moved);
    }
    this.seenTo.set(partition, BigInt(messages[messages.length - 1]!.offset) + 1n);
    this.timing.projectMs += performance.now() - began;
    await this.stageAndWrite(moved, projected);
  }

  /** Projects what the gate released (records not projected before this start) and stores its findings. */
  private applyReleased(out: GateOutput<LogRecord>, moved: Set<number>): number {
    for (const f of out.findings) this.recordFinding(f);
    let projected = 0;
    const tracedSince = this.tracing ? Date.now() - TRACED_RECORD_AGE_MS : 0;
    for (const r of out.released) {
      moved.add(r.partition);
      const resume = this.resumeAt.get(r.partition);
      if (resume && BigInt(r.offset) < resume) continue;
      const m = r.item;
      const bound = r.body?.agentKeyBound;
      // The agent_keys read model: the first key the gateway vouched for, per agent.
      if (bound)
        this.projection.bindAgentKey(bound.producerId, bound.publicKey, Number(m.timestamp), r.partition, r.offset);
      const record = { partition: r.partition, offset: r.offset, envelope: m.value!, body: r.body! };
      if (!this.tracing || Number(m.timestamp) < tracedSince) this.projection.apply(record);
      else {
        // Synchronous, as the projection is: no await per record. The batch's transaction is
        // written after the batch, outside these spans.
        const attributes = {
          [ATTR.eventType]: record.body.type,
          [ATTR.eventId]: record.body.eventId,
          [ATTR.producerId]: record.body.producer?.producerId ?? '',
          [ATTR.seq]: Number(record.body.producer?.seq ?? 0),
        };
        withSpanFromSync(m.headers, SPAN.ledgerProjection, attributes, () => this.projection.apply(record));
      }
      projected += 1;
    }
    return projected;
  }

  /**
   * Stages what was projected with the next offset of each partition moved: up to the first
   * record the gate still holds there (it is projected after a restart, if not before), never
   * below what was committed.
   */
  private async stageAndWrite(moved: ReadonlySet<number>, projected: number): Promise<void> {
    const nextOffsets = new Map<number, bigint>();
    for (const p of moved) {
      const held = this.gate.heldFrom(p);
      const upTo = held !== undefined ? BigInt(held) : this.seenTo.get(p);
      if (upTo === undefined) continue;
      const floor = this.projectedTo.get(p) ?? 0n;
      const next = upTo > floor ? upTo : floor;
      if (next !== floor) nextOffsets.set(p, next);
      this.projectedTo.set(p, next);
    }
    // Written in order, one transaction a batch. The batch returns to kafkajs once the writes
    // before it are done, so its own write runs while the next batch is fetched and projected,
    // and at most one write waits behind the one under way.
    const staged = this.projection.take(nextOffsets);
    // The gate as it stands now, with the rows of the same moment: a restart goes on from here.
    const checkpoint = this.checkpoints.prepare(this.gate.checkpoint(this.seenTo.keys(), heldItem));
    const generation = this.generation;
    const before = this.writes;
    const written = before.then(async () => {
      if (this.failure) throw this.failure;
      const t0 = performance.now();
      await this.opts.db.transaction(async (q) => {
        if (generation !== undefined) await this.checkpoints.holdLease(q, generation);
        await writeStaged(q, staged, this.opts.onTableWritten);
        for (const w of checkpoint) await w.run(q);
      });
      this.timing.flushMs += performance.now() - t0;
      this.timing.batches += 1;
      for (const [p, next] of nextOffsets) this.offsets.set(p, next);
      this.stats.projected += projected;
      for (const [p, next] of nextOffsets) this.opts.onProgress?.({ partition: p, nextOffset: next, ...this.stats });
    });
    // A refused write stops every write after it and starts recovery, even when no batch follows.
    this.writes = written.catch((err: unknown) => {
      this.failure ??= err as Error;
      void this.recover(-1);
    });
    await before;
    if (this.failure) throw this.failure;
  }

  /** Chains whose unsealed tail waited too long become findings; what they held back moves on. */
  private async expireUnsealed(): Promise<void> {
    if (!this.consumer || this.failure || this.gate.holding === 0 || this.liveSince === undefined) return;
    if (!this.gate.hasDue(Date.now(), this.liveSince)) return;
    // A seal or a binding may be in a partition that has not been read to its end: its leader
    // was lost with a broker and no batch says so. Judged only once the log's ends are reached;
    // otherwise the wait starts again from now.
    if (!(await this.readToEnd())) {
      this.liveSince = Date.now();
      return;
    }
    const liveSince = this.liveSince;
    await this.inTurn(async () => {
      // Every partition read: one whose held records were all refused moves on too (its stored
      // offset would otherwise wait for the next record there, as a quiet log's last one would).
      const moved = new Set<number>(this.seenTo.keys());
      const out = this.gate.expire(Date.now(), liveSince);
      if (out.findings.length === 0 && out.released.length === 0) return;
      const projected = this.applyReleased(out, moved);
      await this.stageAndWrite(moved, projected);
    }).catch((err: unknown) => {
      this.failure ??= err as Error;
    });
  }

  /** Whether every partition has been read up to its high watermark (false when Kafka cannot say). */
  private async readToEnd(): Promise<boolean> {
    try {
      const { behind } = await replayLag(this.opts.kafka, this.opts.topic, this.seenTo);
      return behind === 0n;
    } catch {
      return false;
    }
  }

  private recordFinding(f: Finding): void {
    this.stats.findings += 1;
    const row: FindingRow = {
      partition: f.position?.partition ?? -1,
      offset: f.position?.offset ?? '-1',
      kind: f.kind,
      producerId: f.producerId ?? '',
      epoch: f.epoch ?? 0,
      seq: f.seq ?? 0,
      toSeq: f.toSeq ?? f.seq ?? 0,
      detail: f.detail,
    };
    this.projection.recordFinding(row);
  }

  /** Declares the holes still open as gaps (call when caught up); the findings are stored. */
  async flushGaps(): Promise<number> {
    return this.inTurn(async () => {
      const out = this.gate.flushGaps();
      if (out.findings.length === 0 && out.released.length === 0) return 0;
      const moved = new Set<number>(this.seenTo.keys());
      const projected = this.applyReleased(out, moved);
      // After the batch writes under way, whose offsets these findings must not overtake.
      await this.stageAndWrite(moved, projected);
      await this.writes;
      return out.findings.length;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.expiry);
    this.expiry = undefined;
    if (!this.consumer) return;
    await this.consumer.disconnect();
    this.consumer = undefined;
    await this.writes; // the batch under way commits (or not) before the database closes
    await this.seals?.close();
    this.seals = undefined;
    if (!this.generatedGroup) return; // the group is shared: the others carry on in it
    const admin = this.opts.kafka.admin();
    try {
      await admin.connect();
      await admin.deleteGroups([this.groupId]);
    } catch {
      // An empty group left behind is harmless; the broker expires it.
    } finally {
      await admin.disconnect();
    }
  }
}

const bodyLayout = new EnvelopeLayout();

/** What the checkpoint keeps of a held record: its bytes and timestamp (not its trace headers). */
const heldItem = (r: { item: LogRecord }): HeldItem => ({
  value: r.item.value ? r.item.value.toString('base64') : null,
  timestamp: r.item.timestamp,
});

const YIELD_EVERY = 500;
const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The event body, decoded straight from its bytes inside the envelope: the envelope's own
 * fields (hashes, seal) are the verifier's, read in place, so decoding the envelope as a message
 * first would only copy them.
 */
function decodeBody(value: Buffer | null): events.EventBody | undefined {
  if (!value) return undefined;
  try {
    const l = scanEnvelope(value, bodyLayout);
    return events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
  } catch {
    return undefined; // the verifier reports it (undecodable)
  }
}

// Kept here for the ledger's callers; it lives with the other log reads in libs/kafka.
export { replayLag };
