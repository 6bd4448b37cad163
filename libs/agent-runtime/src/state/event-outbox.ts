// The agent's own signed event chain and the durable outbox its envelopes wait in until the log
// confirms them (brief: "keeps every signed envelope in a durable on-disk outbox"). The agent
// signs without Kafka: appending only touches its data dir. Records are chained (hashed) as they
// are appended and sealed as they are sent: a delivery seals the last record it carries, so what
// one delivery carries costs one signature (docs/adr/0030).
//
// Files in the data dir:
//   chain-agent_<host>.key    its Ed25519 key (ChainStateFile's format, so tools find it)
//   chain-agent_<host>.state  the chain head as of the last time the outbox was emptied
//   outbox.log                the envelopes, delivered or not: [u32 BE length][envelope]...; emptied
//                             once all are delivered and it has grown past COMPACT_AT_BYTES
//   outbox.confirmed          a seq delivered: the log's records up to it are done. Through the
//                             gateway it may lag the deliveries (EventOutboxOptions.markEvery)
// The head is the last envelope of outbox.log when it has any, else the state file's: a crash
// between an append and anything else can neither fork nor rewind the chain.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import {
  appendToChain,
  readEnvelope,
  sealEnvelope,
  startEpoch,
  type ChainHead,
  type ChainedEvent,
  type EventDraft,
  type SigningKey,
} from '@rebootless/events';
import { ChainStateFile } from '@rebootless/kafka';
import type { TraceFields } from '@rebootless/telemetry';

const LOG_FILE = 'outbox.log';
const CONFIRMED_FILE = 'outbox.confirmed';
/** Delivered envelopes stay in the log until it is this large: emptying it costs two fsyncs. */
const COMPACT_AT_BYTES = 256 * 1024;
/**
 * How many delivered records the confirmed mark may lag when the sink finds records sent again
 * in the log (the dispatcher's gateway): a mark per delivery was a quarter of an agent's file
 * work in an apply, and a lagging one costs nothing but resending. After a crash the records
 * delivered since the mark go again, said to be sent before, and the gateway does not write them
 * twice (as when an instance died before acknowledging). A clean stop writes the mark. Written
 * straight to Kafka, records sent again would be copies: there the mark follows every delivery.
 */
export const GATEWAY_MARK_EVERY = 32;

export interface OutboxRecord {
  readonly seq: number;
  readonly envelope: Buffer;
  /** The trace the event was recorded in, to send it under (memory only: tracing is best effort). */
  readonly trace?: TraceFields;
  /**
   * Held back until then (ms) for the fact that follows it to share its seal and its delivery
   * (memory only: after a restart nothing is held). docs/adr/0030.
   */
  readonly heldUntil?: number;
}

export interface AppendOptions {
  readonly trace?: TraceFields;
  /** Hold the batch back this long (ms); see OutboxRecord.heldUntil. */
  readonly holdMs?: number;
}

export interface EventOutboxOptions {
  readonly dir: string;
  readonly producerId: string;
  /** fsync every append (the default). Off only for benchmarks of many agents on one disk. */
  readonly syncWrites?: boolean;
  readonly now?: () => number;
  /** Delivered records between two writes of the confirmed mark (default 1; see GATEWAY_MARK_EVERY). */
  readonly markEvery?: number;
}

/** Why a new epoch began, when opening the outbox began one. */
export interface EpochOpened {
  readonly reason: events.EpochReason;
  readonly detail: string;
}

export class EventOutbox {
  private readonly logPath: string;
  private readonly confirmedPath: string;
  private readonly syncWrites: boolean;
  private readonly now: () => number;
  private readonly markEvery: number;
  private records: OutboxRecord[] = [];
  private logBytes = 0;
  private fd: number | undefined;
  /** The last seq delivered, and how many records were delivered since the mark on disk said so. */
  private confirmedSeq = 0;
  private unmarked = 0;

  private constructor(
    private readonly state: ChainStateFile,
    readonly key: SigningKey,
    private chainHead: ChainHead,
    options: EventOutboxOptions,
  ) {
    this.logPath = path.join(options.dir, LOG_FILE);
    this.confirmedPath = path.join(options.dir, CONFIRMED_FILE);
    this.syncWrites = options.syncWrites ?? true;
    this.now = options.now ?? Date.now;
    this.markEvery = options.markEvery ?? 1;
  }

  /**
   * Opens the chain where it stands; with no chain state, starts a new epoch and writes its
   * ChainEpochStarted first. `epoch` tells the caller whether that happened and why.
   */
  static open(options: EventOutboxOptions): { outbox: EventOutbox; epoch?: EpochOpened } {
    fs.mkdirSync(options.dir, { recursive: true });
    const state = new ChainStateFile(options.dir, options.producerId);
    const { key, created } = state.loadOrCreateKey();
    const stored = created ? undefined : state.load();
    const logged = readLog(path.join(options.dir, LOG_FILE));
    const confirmed = readConfirmed(path.join(options.dir, CONFIRMED_FILE));
    const last = logged.records[logged.records.length - 1];
    let head: ChainHead | undefined = stored?.head;
    if (last) {
      const view = readEnvelope(last.envelope);
      head = { producerId: options.producerId, epoch: view.epoch, seq: view.seq, hash: Buffer.from(view.hash) };
    }
    const now = options.now ?? Date.now;
    if (head) {
      const outbox = new EventOutbox(state, key, head, options);
      outbox.records = logged.records.filter((r) => r.seq > confirmed);
      outbox.logBytes = logged.validBytes;
      if (logged.tornBytes > 0) fs.truncateSync(outbox.logPath, logged.validBytes);
      return { outbox };
    }
    // Same rule as the services' publisher: the epoch is the start time in seconds, above any
    // earlier epoch of this producer.
    const epochNumber = Math.max(1, Math.floor(now() / 1000));
    const outbox = new EventOutbox(state, key, startEpoch(options.producerId, epochNumber), options);
    if (logged.validBytes > 0 || logged.tornBytes > 0) fs.truncateSync(outbox.logPath, 0);
    const epoch: EpochOpened = created
      ? { reason: events.EpochReason.EPOCH_REASON_FIRST_START, detail: 'new agent key' }
      : {
          reason: events.EpochReason.EPOCH_REASON_STATE_LOST,
          detail: `chain state ${state.statePath} was missing; the previous epoch ends where the log shows it`,
        };
    outbox.append([
      {
        stream: `producer/${options.producerId}`,
        payload: {
          type: 'ChainEpochStarted',
          data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: epoch.reason, detail: epoch.detail },
        },
      },
    ]);
    // The head is in the log now; the state file names the epoch from here on.
    state.save(outbox.chainHead);
    return { outbox, epoch };
  }

  get head(): ChainHead {
    return this.chainHead;
  }

  get publicKey(): Buffer {
    return this.key.rawPublicKey;
  }

  /**
   * Chains the drafts and makes them durable before returning; they are sealed when they are
   * sent (sealed()), held back or not.
   */
  append(drafts: readonly EventDraft[], options: AppendOptions = {}): ChainedEvent[] {
    if (drafts.length === 0) return [];
    const { trace, holdMs } = options;
    const { events: chained, head } = appendToChain(this.chainHead, drafts, this.key, this.now, false);
    const parts: Buffer[] = [];
    for (const event of chained) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(event.envelope.length);
      parts.push(len, event.envelope);
    }
    // Kept open between appends (an open and a close cost more than the write); a failed write
    // closes it, and the next append opens the log again.
    this.fd ??= fs.openSync(this.logPath, 'a', 0o600);
    try {
      fs.writevSync(this.fd, parts);
      if (this.syncWrites) fs.fdatasyncSync(this.fd);
    } catch (error) {
      this.close();
      throw error;
    }
    // The delivery's timers run on the real clock, whatever clock dates the events.
    const heldUntil = holdMs !== undefined && holdMs > 0 ? Date.now() + holdMs : undefined;
    for (const event of chained) {
      this.records.push({
        seq: event.seq,
        envelope: Buffer.from(event.envelope),
        ...(trace ? { trace } : {}),
        ...(heldUntil !== undefined ? { heldUntil } : {}),
      });
      this.logBytes += 4 + event.envelope.length;
    }
    this.chainHead = head;
    return chained;
  }

  /**
   * Releases the log's file descriptor (the next append opens it again). `markDelivered: false`
   * leaves the confirmed mark as it is, as a crash does.
   */
  close(options: { markDelivered?: boolean } = {}): void {
    if ((options.markDelivered ?? true) && this.unmarked > 0) this.writeMark();
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /** Envelopes not yet confirmed, oldest first. */
  pending(max = Number.POSITIVE_INFINITY): readonly OutboxRecord[] {
    return this.records.length <= max ? this.records : this.records.slice(0, max);
  }

  get pendingCount(): number {
    return this.records.length;
  }

  /**
   * The pending record's envelope as a delivery that ends with it must send it: sealed. The seal
   * is kept in memory for a retry; the log on disk keeps the unsealed bytes, and a run after a
   * restart seals them again to the same bytes (Ed25519 is deterministic).
   */
  sealed(record: OutboxRecord): Buffer {
    const envelope = sealEnvelope(record.envelope, this.key);
    if (envelope === record.envelope) return envelope; // sealed already (an earlier version's outbox)
    const i = this.records.indexOf(record);
    if (i >= 0) this.records[i] = { seq: record.seq, envelope, ...(record.trace ? { trace: record.trace } : {}) };
    return envelope;
  }

  /** The log holds everything up to `seq`: those leave the outbox (after a crash some may go again: markEvery). */
  confirm(seq: number): void {
    const before = this.records.length;
    this.records = this.records.filter((r) => r.seq > seq);
    if (this.records.length === before) return;
    this.confirmedSeq = seq;
    this.unmarked += before - this.records.length;
    const compact = this.records.length === 0 && this.logBytes >= COMPACT_AT_BYTES;
    if (compact || this.unmarked >= this.markEvery) this.writeMark();
    if (compact) {
      // Empty and grown: the head goes to the state file, then the log is emptied. A crash in
      // between leaves delivered records in the log that the confirmed mark still filters out.
      this.state.save(this.chainHead);
      fs.truncateSync(this.logPath, 0);
      this.logBytes = 0;
    }
  }

  private writeMark(): void {
    writeSmallFile(this.confirmedPath, String(this.confirmedSeq), this.syncWrites);
    this.unmarked = 0;
  }
}

function readLog(file: string): { records: OutboxRecord[]; validBytes: number; tornBytes: number } {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], validBytes: 0, tornBytes: 0 };
    throw error;
  }
  const records: OutboxRecord[] = [];
  let at = 0;
  while (at + 4 <= raw.length) {
    const len = raw.readUInt32BE(at);
    if (at + 4 + len > raw.length) break;
    const envelope = Buffer.from(raw.subarray(at + 4, at + 4 + len));
    let view;
    try {
      view = readEnvelope(envelope);
    } catch {
      break; // a torn write: everything after it was never acknowledged to anyone
    }
    records.push({ seq: view.seq, envelope });
    at += 4 + len;
  }
  return { records, validBytes: at, tornBytes: raw.length - at };
}

function readConfirmed(file: string): number {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** Atomic replace (temp file, fsync, rename): a crash leaves the old content or the new. */
export function writeSmallFile(file: string, content: string, sync = true): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, content);
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
