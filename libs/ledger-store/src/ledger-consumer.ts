import { randomUUID } from 'node:crypto';
import { Consumer, IHeaders, Kafka } from 'kafkajs';
import { events } from '@rebootless/contracts';
import {
  ChainVerifier,
  EnvelopeLayout,
  Finding,
  FindingKind,
  KeyTrust,
  SealJob,
  SealVerdicts,
  SealWorker,
  scanEnvelope,
} from '@rebootless/events';
import { ATTR, SPAN, telemetryStatus, withSpanFromSync } from '@rebootless/telemetry';
import { LedgerDatabase } from './database';
import { FindingRow, LedgerProjection, TableWriteObserver, writeStaged } from './projection';

/**
 * Who vouches for which producer key: service keys from configuration, agent keys bound to
 * their host on the first epoch the ledger sees (trust on first use, until TLS identities).
 */
export class LedgerKeyTrust implements KeyTrust {
  constructor(
    private readonly services: ReadonlyMap<string, readonly Uint8Array[]>,
    private readonly projection: LedgerProjection,
  ) {}

  keysFor(producerId: string): readonly Uint8Array[] {
    const service = this.services.get(producerId);
    if (service) return service;
    const bound = this.projection.agentKeys.get(producerId);
    return bound ? [bound.publicKey] : [];
  }
}

/** A record that shows these defects is kept out of the read models; the finding stands for it. */
const REJECTING: ReadonlySet<FindingKind> = new Set([
  'undecodable',
  'unknown-event-type',
  'altered-body',
  'broken-link',
  'bad-signature',
  'duplicate',
  'conflict',
  'unknown-producer-key',
  'missing-epoch-start',
]);

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
  groupId?: string;
  /** Called after every committed batch. */
  onProgress?: (p: LedgerProgress) => void;
  /** Told each table write's duration (benchmarks); none in production. */
  onTableWritten?: TableWriteObserver;
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
 * Consumes the event log into the read models. Every record is verified (ChainVerifier) and,
 * when sound, projected; each Kafka batch is one database transaction holding its rows and the
 * partition's next offset, so a kill at any point loses or doubles nothing.
 *
 * The verifier's chain state lives in memory: on every start the consumer reads each partition
 * from offset 0, feeding records below the stored offset to the verifier only (their read-model
 * rows are already committed), so chains are checked whole after any restart.
 */
export class LedgerConsumer {
  readonly projection: LedgerProjection;
  private verifier: ChainVerifier;
  private recovering: Promise<void> | undefined;
  private consumer: Consumer | undefined;
  /** Each partition's next offset as committed with the read models. */
  private offsets = new Map<number, bigint>();
  /** Each partition's next offset as projected in memory: ahead of `offsets` while a write is under way. */
  private projectedTo = new Map<number, bigint>();
  /** Epochs whose key nobody vouches for: none of their records enter the read models. */
  private readonly untrusted = new Set<string>();
  private failure: Error | undefined;
  /** The batch writes under way, in order. */
  private writes: Promise<void> = Promise.resolve();
  private groupId = '';
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
    this.verifier = new ChainVerifier(new LedgerKeyTrust(opts.serviceKeys, this.projection), this.verdicts);
  }

  /** Where the read models stand: each partition's next offset to project. */
  get positions(): ReadonlyMap<number, bigint> {
    return this.offsets;
  }

  async start(): Promise<void> {
    this.offsets = await this.projection.load();
    this.projectedTo = new Map(this.offsets);
    this.seals ??= new SealWorker();
    const { kafka, topic } = this.opts;
    // A group of its own per process: offsets live in the database, never in Kafka, and a member
    // killed with SIGKILL would otherwise hold its partitions until the session times out.
    this.groupId = this.opts.groupId ?? `rebootless-ledger-${randomUUID()}`;
    const consumer = kafka.consumer({
      groupId: this.groupId,
      maxWaitTimeInMs: 200,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxBytes: 16 * 1024 * 1024,
    });
    this.consumer = consumer;
    await consumer.connect();
    // A new group has no committed offsets: every partition is read from its beginning, as the
    // verifier must see each chain whole.
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Two partitions at a time: one batch is projected while the one before it is written.
      partitionsConsumedConcurrently: 2,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (!isRunning() || isStale() || batch.messages.length === 0) return;
        if (this.failure) return this.recover(batch.partition);
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
   * The database refused a batch: memory is ahead of it. Once the writes under way have settled,
   * reload what was committed and read every partition again from the start (the verifier must
   * see the chains whole again), projecting from the committed offsets.
   */
  private async recover(partition: number): Promise<void> {
    this.recovering ??= (async () => {
      await this.writes;
      await new Promise((r) => setTimeout(r, 1000));
      await this.consumer?.stop();
      this.consumer = undefined;
      this.verifier = new ChainVerifier(new LedgerKeyTrust(this.opts.serviceKeys, this.projection), this.verdicts);
      this.untrusted.clear();
      this.failure = undefined;
      this.recovering = undefined;
      await this.start();
    })().catch((err: unknown) => {
      this.failure = err as Error;
      this.recovering = undefined;
    });
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
    const jobs = this.seals ? this.sealJobs(messages, bodies) : [];
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
    const applied = this.projectedTo.get(partition) ?? 0n;
    const last = BigInt(messages[messages.length - 1]!.offset);
    let projected = 0;
    const tracedSince = this.tracing ? Date.now() - TRACED_RECORD_AGE_MS : 0;
    for (let i = 0; i < messages.length; i++) {
      // Let the write under way take its replies between slices of projection: every step of the
      // chain of writes waits for this thread.
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToIo();
      const m = messages[i]!;
      const offset = BigInt(m.offset);
      const fresh = offset >= applied;
      this.stats.records += 1;
      const body = bodies[i];
      const producerId = body?.producer?.producerId ?? '';
      // Trust on first use: an agent's first epoch binds its key to the host.
      if (
        fresh &&
        body?.chainEpochStarted &&
        producerId.startsWith('agent/') &&
        !this.opts.serviceKeys.has(producerId)
      ) {
        const pk = body.chainEpochStarted.publicKey;
        if (pk.length === 32) this.projection.bindAgentKey(producerId, pk, Number(m.timestamp), partition, m.offset);
      }
      const pos = { partition, offset: m.offset };
      const found = this.verifier.ingest(m.value, pos);
      let rejected = false;
      for (const f of found) {
        if (f.kind === 'unknown-producer-key') this.untrusted.add(`${f.producerId}\u0000${f.epoch}`);
        if (REJECTING.has(f.kind) && f.position?.partition === partition && f.position.offset === m.offset)
          rejected = true;
        this.recordFinding(f);
      }
      if (!fresh) continue;
      if (body && this.untrusted.has(`${producerId}\u0000${body.producer?.epoch ?? 0}`)) rejected = true;
      if (rejected || !body || !m.value) continue;
      const record = { partition, offset: m.offset, envelope: m.value, body };
      if (!this.tracing || Number(m.timestamp) < tracedSince) this.projection.apply(record);
      else {
        // Synchronous, as the projection is: no await per record. The batch's transaction is
        // written after the batch, outside these spans.
        const attributes = {
          [ATTR.eventType]: body.type,
          [ATTR.eventId]: body.eventId,
          [ATTR.producerId]: producerId,
          [ATTR.seq]: Number(body.producer?.seq ?? 0),
        };
        withSpanFromSync(m.headers, SPAN.ledgerProjection, attributes, () => this.projection.apply(record));
      }
      projected += 1;
    }
    this.timing.projectMs += performance.now() - began;
    if (last < applied && this.projection.staged === 0) return;
    const next = last + 1n > applied ? last + 1n : applied;
    this.projectedTo.set(partition, next);
    // Written in order, one transaction a batch. The batch returns to kafkajs once the writes
    // before it are done, so its own write runs while the next batch is fetched and projected,
    // and at most one write waits behind the one under way.
    const staged = this.projection.take(partition, next);
    const before = this.writes;
    const written = before.then(async () => {
      if (this.failure) throw this.failure;
      const t0 = performance.now();
      await this.opts.db.transaction((q) => writeStaged(q, staged, this.opts.onTableWritten));
      this.timing.flushMs += performance.now() - t0;
      this.timing.batches += 1;
      this.offsets.set(partition, next);
      this.stats.projected += projected;
      this.opts.onProgress?.({ partition, nextOffset: next, ...this.stats });
    });
    // A refused write stops every write after it and starts recovery, even when no batch follows.
    this.writes = written.catch((err: unknown) => {
      this.failure ??= err as Error;
      void this.recover(partition);
    });
    await before;
    if (this.failure) throw this.failure;
  }

  /**
   * The seals of a batch with the key the verifier will check them with: the epoch's key it
   * holds, or the one an epoch start earlier in the batch carries. A guess that proves wrong
   * costs nothing but the worker's time: the verifier uses a verdict only for its own key.
   */
  private sealJobs(messages: { value: Buffer | null }[], bodies: (events.EventBody | undefined)[]): SealJob[] {
    const jobs: SealJob[] = [];
    const started = new Map<string, Uint8Array>();
    for (let i = 0; i < messages.length; i++) {
      const value = messages[i]!.value;
      const body = bodies[i];
      if (!value || !body?.producer) continue;
      const { producerId, epoch } = body.producer;
      const id = `${producerId}\u0000${epoch}`;
      if (body.chainEpochStarted) started.set(id, body.chainEpochStarted.publicKey);
      const l = scanEnvelope(value, bodyLayout);
      if (l.signatureEnd <= l.signatureStart) continue;
      const key = started.get(id) ?? this.verifier.keyOf(producerId, epoch);
      if (!key) continue;
      jobs.push({
        key,
        hash: value.subarray(l.hashStart, l.hashEnd),
        signature: value.subarray(l.signatureStart, l.signatureEnd),
      });
    }
    return jobs;
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
      const found = this.verifier.flushGaps();
      for (const f of found) this.recordFinding(f);
      if (found.length === 0) return 0;
      // After the batch writes under way, whose offsets these findings must not overtake.
      const staged = this.projection.take(null, null);
      await this.writes;
      await this.opts.db.transaction((q) => writeStaged(q, staged, this.opts.onTableWritten));
      return found.length;
    });
  }

  async stop(): Promise<void> {
    if (!this.consumer) return;
    await this.consumer.disconnect();
    this.consumer = undefined;
    await this.writes; // the batch under way commits (or not) before the database closes
    await this.seals?.close();
    this.seals = undefined;
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

/** Offsets the read models have reached vs the topic's end: how far a replay still has to go. */
export async function replayLag(
  kafka: Kafka,
  topic: string,
  positions: ReadonlyMap<number, bigint>,
): Promise<{ behind: bigint; end: bigint }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let behind = 0n;
    let end = 0n;
    for (const w of await admin.fetchTopicOffsets(topic)) {
      const high = BigInt(w.high);
      end += high;
      const at = positions.get(w.partition) ?? 0n;
      if (high > at) behind += high - at;
    }
    return { behind, end };
  } finally {
    await admin.disconnect();
  }
}
