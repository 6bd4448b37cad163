import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Kafka } from 'kafkajs';
import { LedgerDatabase, num } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';

// Issue 16: read models a database administrator edits are caught. The verified log is folded
// again, by the same consumer and projection, into a scratch SQLite file; the two sets of read
// models are then compared row by row (docs/adr/0014-one-fold.md).

/**
 * Each read model's primary key (migrations/0001-read-models.ts, 0003-rollout-fold.ts). Every
 * column is compared, the rollout fold's own state (`fold_state`, `rollout_book`) too: the fold
 * gives the same rows whatever order the partitions were read in (docs/adr/0014-one-fold.md).
 */
const KEYS: Record<string, string[]> = {
  agent_keys: ['producer_id'],
  hosts: ['host_id'],
  stack_intervals: ['host_id', 'interval_id'],
  patches: ['patch_id', 'version'],
  builds: ['build_id'],
  rollouts: ['rollout_id'],
  rollout_hosts: ['rollout_id', 'host_id'],
  rollout_book: ['book_key'],
  rollout_host_lists: ['rollout_id', 'list'],
  audit_log: ['partition_no', 'record_offset'],
  integrity_findings: ['partition_no', 'record_offset', 'kind'],
};

export interface ReadModelDifference {
  table: string;
  /** The row's primary key, `column=value` joined by commas. */
  key: string;
  /** 'changed': a column differs; 'missing': the log has the row, the database not; 'extra': the reverse. */
  kind: 'changed' | 'missing' | 'extra';
  column?: string;
  stored?: string | null;
  fromLog?: string | null;
}

export interface ReadModelCheck {
  differences: ReadModelDifference[];
  /** The tables compared: all when the ledger stood where the re-fold did, else audit_log only. */
  tables: string[];
  rowsCompared: number;
}

/** A column value as text, the same from SQLite and PostgreSQL (BIGINT as string, bytes as hex). */
function text(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return String(v);
}

async function offsets(db: LedgerDatabase): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const r of await db.query('SELECT topic, partition_no, next_offset FROM consumer_offsets'))
    out.set(`${String(r['topic'])}/${num(r['partition_no'])}`, String(r['next_offset']));
  return out;
}

async function rows(
  db: LedgerDatabase,
  table: string,
  where = '',
): Promise<Map<string, Record<string, string | null>>> {
  const key = KEYS[table]!;
  const out = new Map<string, Record<string, string | null>>();
  for (const r of await db.query(`SELECT * FROM ${table} ${where}`)) {
    const row: Record<string, string | null> = {};
    for (const [c, v] of Object.entries(r)) row[c] = text(v);
    out.set(key.map((c) => `${c}=${row[c]}`).join(','), row);
  }
  return out;
}

/**
 * Compares the ledger's read models with those re-folded from the log. When the ledger has
 * projected exactly as far as the re-fold, every table is compared; when it has moved on (the
 * log grew meanwhile), only the audit log, which is append-only, up to where both stand.
 */
export async function compareReadModels(stored: LedgerDatabase, refolded: LedgerDatabase): Promise<ReadModelCheck> {
  const [a, b] = [await offsets(stored), await offsets(refolded)];
  const same = a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
  const tables = same ? Object.keys(KEYS) : ['audit_log'];
  let where = '';
  if (!same) {
    const common = [...b].map(([k, v]) => {
      const [, partition] = k.split('/');
      const upTo = BigInt(a.get(k) ?? '0') < BigInt(v) ? (a.get(k) ?? '0') : v;
      return `(partition_no = ${Number(partition)} AND record_offset < ${BigInt(upTo).toString()})`;
    });
    where = common.length > 0 ? `WHERE ${common.join(' OR ')}` : 'WHERE 1 = 0';
  }
  const differences: ReadModelDifference[] = [];
  let rowsCompared = 0;
  for (const table of tables) {
    const [mine, truth] = [await rows(stored, table, where), await rows(refolded, table, where)];
    rowsCompared += truth.size;
    for (const [key, row] of truth) {
      const have = mine.get(key);
      if (!have) {
        differences.push({ table, key, kind: 'missing' });
        continue;
      }
      for (const column of Object.keys(row))
        if (have[column] !== row[column])
          differences.push({ table, key, kind: 'changed', column, stored: have[column] ?? null, fromLog: row[column] });
    }
    for (const key of mine.keys()) if (!truth.has(key)) differences.push({ table, key, kind: 'extra' });
  }
  return { differences, tables, rowsCompared };
}

/** One difference as a finding's detail: the table, the row, and what the log says instead. */
export function describeDifference(d: ReadModelDifference): string {
  if (d.kind === 'missing') return `read model ${d.table}: row ${d.key} is missing; the log has it`;
  if (d.kind === 'extra') return `read model ${d.table}: row ${d.key} is not in the log`;
  return `read model ${d.table}: row ${d.key}, column ${d.column} is ${JSON.stringify(d.stored)}; the log says ${JSON.stringify(d.fromLog)}`;
}

/** A scratch database holding the log re-folded up to `end` (the sum of its partitions' ends). */
interface Refold {
  readonly end: bigint;
  readonly ready: Promise<{ db: LedgerDatabase; dir: string }>;
}

/**
 * Keeps the last re-fold of the log while the log has not grown, so that many `ledger verify`
 * calls cost one re-fold, not one each (an auditor's loop must not become a rebuild per call).
 * Only the log is cached: the stored read models are compared afresh on every call, so an edit
 * made by a database administrator a second ago is still found.
 */
export class ReadModelChecker {
  private last: Refold | undefined;

  constructor(
    private readonly opts: {
      kafka: Kafka;
      topic: string;
      serviceKeys: ReadonlyMap<string, readonly Uint8Array[]>;
      stored: LedgerDatabase;
      timeoutMs?: number;
    },
  ) {}

  async check(): Promise<ReadModelCheck> {
    const { end } = await replayLag(this.opts.kafka, this.opts.topic, new Map());
    if (!this.last || this.last.end !== end) {
      const previous = this.last;
      this.last = { end, ready: refold(this.opts, end) };
      // A failed re-fold is not kept: the next call tries again.
      this.last.ready.catch(() => {
        if (this.last?.end === end) this.last = undefined;
      });
      if (previous) void previous.ready.then(dropScratch, () => undefined);
    }
    const { db } = await this.last.ready;
    return compareReadModels(this.opts.stored, db);
  }

  async close(): Promise<void> {
    const last = this.last;
    this.last = undefined;
    if (last) await last.ready.then(dropScratch, () => undefined);
  }
}

/**
 * Folds the log (to its end as of the call) into a scratch SQLite file with the production
 * consumer, and compares the result with `stored`. The scratch file is deleted afterwards.
 */
export async function checkReadModels(opts: {
  kafka: Kafka;
  topic: string;
  serviceKeys: ReadonlyMap<string, readonly Uint8Array[]>;
  stored: LedgerDatabase;
  timeoutMs?: number;
}): Promise<ReadModelCheck> {
  const checker = new ReadModelChecker(opts);
  try {
    return await checker.check();
  } finally {
    await checker.close();
  }
}

async function refold(
  opts: { kafka: Kafka; topic: string; serviceKeys: ReadonlyMap<string, readonly Uint8Array[]>; timeoutMs?: number },
  end: bigint,
): Promise<{ db: LedgerDatabase; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-refold-'));
  const scratch = await LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
  const consumer = new LedgerConsumer({
    kafka: opts.kafka,
    db: scratch,
    topic: opts.topic,
    serviceKeys: opts.serviceKeys,
  });
  try {
    await consumer.start();
    const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
    for (;;) {
      const { behind, end: now } = await replayLag(opts.kafka, opts.topic, consumer.positions);
      if (now - behind >= end || behind === 0n) break;
      if (consumer.lastFailure) throw consumer.lastFailure;
      if (Date.now() > deadline) throw new Error(`re-folding the log: still ${behind} record(s) behind`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await consumer.flushGaps();
    return { db: scratch, dir };
  } catch (error) {
    await dropScratch({ db: scratch, dir });
    throw error;
  } finally {
    await consumer.stop();
  }
}

async function dropScratch(s: { db: LedgerDatabase; dir: string }): Promise<void> {
  await s.db.close();
  fs.rmSync(s.dir, { recursive: true, force: true });
}
