import { QueryRunner } from 'typeorm';
import {
  AgentKeyState,
  ChainState,
  GateCheckpoint,
  SetDigest,
  SigningKey,
  signHash,
  verifyHash,
} from '@rebootless/events';
import { PreparedWrite, TableWriter } from './batch-writer';
import { LedgerDatabase, num } from './database';
import { CHECKPOINT_TABLES } from './migrations/0004-checkpoints';

/** What the ledger keeps of a record the gate holds: its bytes (base64) and Kafka timestamp. */
export interface HeldItem {
  value: string | null;
  timestamp: string;
}

/** The key a ledger seals its checkpoints with: its own producer key (docs/adr/0028). */
export interface CheckpointSigner {
  producerId: string;
  key: SigningKey;
}

/** A checkpoint as loaded, and why it must not be believed (empty: its seal holds). */
export interface LoadedCheckpoint {
  checkpoint: GateCheckpoint<HeldItem>;
  /** One sentence each: a seal missing, not verifying, or not matching the rows. */
  problems: string[];
}

/** Only a ledger seals checkpoints: its own producer id, or `ledger/<instance>`. */
export const LEDGER_PRODUCER = /^ledger(\/[^/]+)?$/;

/** What a seal signs: the topic and the rows' digest, under a label no event hash can be. */
const sealMessage = (topic: string, digest: Buffer) =>
  Buffer.concat([Buffer.from(`rebootless checkpoint seal v1\u0000${topic}\u0000`), digest]);

/** Another ledger took the projection over: this one's writes are refused (docs/adr/0024). */
export class LeaseLostError extends Error {}

const chainKey = (c: Pick<ChainState, 'producerId' | 'epoch'>) => `${c.producerId}@${c.epoch}`;

/**
 * The projection's checkpoint in the ledger's database: read at start, and each batch's changes
 * written in the batch's transaction. The lease row fences a ledger that lost its partitions to
 * another (a member frozen past its session timeout writes nothing once it wakes).
 *
 * Sealed (docs/adr/0028): every row enters a digest of the whole checkpoint (SetDigest, kept up
 * to date row by row as batches change them), and each batch's transaction writes the digest
 * signed with the ledger's key. Someone who can write the database but does not hold a ledger's
 * key cannot add, change, delete or roll back a row, nor the seal, without the next load seeing it.
 */
export class CheckpointStore {
  private readonly w: Record<
    'chains' | 'agentKeys' | 'refused' | 'commands' | 'partitions' | 'held' | 'seal',
    TableWriter
  >;
  /** The digest of every row as this ledger wrote or loaded them. */
  private readonly digest = new SetDigest();
  /** Each row that is ever replaced or deleted, by table and key: its element in the digest. */
  private readonly elements = new Map<string, Buffer>();
  /** Each partition's held rows: offset → element (deleted by offset range). */
  private readonly heldElements = new Map<number, Map<string, Buffer>>();

  constructor(
    private readonly db: LedgerDatabase,
    private readonly topic: string,
    /** Seals each checkpoint written; without it none is, and no restart resumes from one. */
    private readonly signer?: CheckpointSigner,
    /** Keys a seal may verify with: configured producers `ledger` and `ledger/<instance>`. */
    private readonly ledgerKeys: ReadonlyMap<string, readonly Uint8Array[]> = new Map(),
  ) {
    const t = (table: string, columns: string[], key: string[], onConflict: 'update' | 'ignore' = 'update') =>
      new TableWriter(table, columns, key, onConflict, db);
    this.w = {
      chains: t('checkpoint_chains', ['chain_key', 'state'], ['chain_key']),
      agentKeys: t('checkpoint_agent_keys', ['producer_id', 'state'], ['producer_id']),
      refused: t('checkpoint_refused_epochs', ['producer_id', 'epoch'], ['producer_id', 'epoch'], 'ignore'),
      commands: t('checkpoint_commands', ['command_id', 'host_id'], ['command_id'], 'ignore'),
      partitions: t('checkpoint_partitions', ['topic', 'partition_no', 'read_to'], ['topic', 'partition_no']),
      held: t(
        'checkpoint_held',
        ['topic', 'partition_no', 'record_offset', 'verdict', 'item'],
        ['topic', 'partition_no', 'record_offset'],
      ),
      seal: t('checkpoint_seal', ['topic', 'signer', 'digest', 'signature'], ['topic']),
    };
  }

  /** A row as the digest takes it: table, key and values, each its text. */
  private static row(table: string, ...fields: unknown[]): string {
    return [table, ...fields.map(String)].join('\u0000');
  }

  /** A row replacing the one with the same key (or the first): the digest takes the new one. */
  private put(key: string, row: string): void {
    const e = this.replace(this.elements.get(key), row);
    if (e) this.elements.set(key, e);
  }

  private putHeld(partition: number, offset: string, row: string): void {
    const held = this.heldElements.get(partition) ?? new Map<string, Buffer>();
    this.heldElements.set(partition, held);
    const e = this.replace(held.get(offset), row);
    if (e) held.set(offset, e);
  }

  /**
   * The digest takes `row` for `old`, and the new element is returned; undefined when the row is
   * the one there already (a partition's position that did not move): its element is expanded
   * twice for nothing otherwise.
   */
  private replace(old: Buffer | undefined, row: string): Buffer | undefined {
    const e = SetDigest.element(row);
    if (old?.equals(e)) return undefined;
    if (old) this.digest.remove(old);
    this.digest.add(e);
    return e;
  }

  /** Held rows below `from` leave the digest as they leave the table. */
  private dropHeldBelow(partition: number, from: string): void {
    const held = this.heldElements.get(partition);
    if (!held) return;
    const below = BigInt(from);
    for (const [offset, e] of held) {
      if (BigInt(offset) >= below) continue;
      this.digest.remove(e);
      held.delete(offset);
    }
  }

  private forget(): void {
    this.digest.clear();
    this.elements.clear();
    this.heldElements.clear();
  }

  /** Why the stored seal does not vouch for the rows that digest to `digest`, or undefined. */
  private async sealProblem(digest: Buffer): Promise<string | undefined> {
    const [seal] = await this.db.query('SELECT signer, digest, signature FROM checkpoint_seal WHERE topic = $1', [
      this.topic,
    ]);
    if (!seal)
      return 'checkpoint_seal: the checkpoint carries no seal (written before docs/adr/0028, or the seal row was deleted)';
    const signer = String(seal['signer']);
    if (!LEDGER_PRODUCER.test(signer)) return `checkpoint_seal: it names ${signer} as its signer, which is no ledger`;
    const keys = this.ledgerKeys.get(signer) ?? [];
    if (keys.length === 0) return `checkpoint_seal: its signer ${signer} is no ledger whose key is configured here`;
    const signature = Buffer.from(String(seal['signature']), 'hex');
    const stored = Buffer.from(String(seal['digest']), 'hex');
    if (!keys.some((k) => verifyHash(k, sealMessage(this.topic, stored), signature)))
      return `checkpoint_seal: the signature does not verify with the key of ${signer}`;
    if (!stored.equals(digest))
      return (
        `checkpoint_seal: the rows of the checkpoint do not digest to what ${signer} sealed ` +
        `(a row was added, changed or deleted, or rolled back, since it wrote them)`
      );
    return undefined;
  }

  /**
   * The checkpoint as stored, or undefined when there is none (a new or rebuilt ledger). Every
   * row enters the digest as it is read; `problems` says why the seal does not vouch for them.
   * A row that does not parse is a problem too, never an exception.
   */
  async load(): Promise<LoadedCheckpoint | undefined> {
    const db = this.db;
    this.forget();
    const partitions = await db.query('SELECT partition_no, read_to FROM checkpoint_partitions WHERE topic = $1', [
      this.topic,
    ]);
    if (partitions.length === 0) return undefined;
    const problems: string[] = [];
    const parse = <T>(what: string, text: unknown): T | undefined => {
      try {
        return JSON.parse(String(text)) as T;
      } catch {
        problems.push(`${what}: its state is not JSON`);
        return undefined;
      }
    };
    const held = new Map<number, GateCheckpoint<HeldItem>['partitions'][number]['held']>();
    for (const r of await db.query(
      'SELECT partition_no, record_offset, verdict, item FROM checkpoint_held WHERE topic = $1 ORDER BY partition_no, record_offset',
      [this.topic],
    )) {
      const partition = num(r['partition_no']);
      const offset = String(r['record_offset']);
      this.putHeld(
        partition,
        offset,
        CheckpointStore.row('held', this.topic, partition, offset, r['verdict'], r['item']),
      );
      const stored = parse<HeldItem & { sealedBy?: [number, string][] }>(
        `checkpoint_held ${partition}:${offset}`,
        r['item'],
      );
      if (!stored) continue;
      const { sealedBy, ...item } = stored;
      const list = held.get(partition) ?? [];
      held.set(partition, list);
      list.push({
        offset,
        verdict: String(r['verdict']) as 'waiting' | 'accepted' | 'rejected',
        item,
        ...(sealedBy ? { sealedBy } : {}),
      });
    }
    const chains: ChainState[] = [];
    for (const r of await db.query('SELECT chain_key, state FROM checkpoint_chains')) {
      this.put(`chains/${String(r['chain_key'])}`, CheckpointStore.row('chains', r['chain_key'], r['state']));
      const c = parse<ChainState>(`checkpoint_chains ${String(r['chain_key'])}`, r['state']);
      if (c) chains.push(c);
    }
    const agentKeys: AgentKeyState[] = [];
    for (const r of await db.query('SELECT producer_id, state FROM checkpoint_agent_keys')) {
      this.put(
        `agentKeys/${String(r['producer_id'])}`,
        CheckpointStore.row('agent_keys', r['producer_id'], r['state']),
      );
      const k = parse<AgentKeyState>(`checkpoint_agent_keys ${String(r['producer_id'])}`, r['state']);
      if (k) agentKeys.push(k);
    }
    const untrusted: [string, number][] = [];
    for (const r of await db.query('SELECT producer_id, epoch FROM checkpoint_refused_epochs')) {
      this.digest.add(SetDigest.element(CheckpointStore.row('refused', r['producer_id'], r['epoch'])));
      untrusted.push([String(r['producer_id']), num(r['epoch'])]);
    }
    const commands: [string, string][] = [];
    for (const r of await db.query('SELECT command_id, host_id FROM checkpoint_commands')) {
      this.digest.add(SetDigest.element(CheckpointStore.row('commands', r['command_id'], r['host_id'])));
      commands.push([String(r['command_id']), String(r['host_id'])]);
    }
    for (const r of partitions)
      this.put(
        `partitions/${num(r['partition_no'])}`,
        CheckpointStore.row('partitions', this.topic, num(r['partition_no']), r['read_to']),
      );
    const sealed = await this.sealProblem(this.digest.digest());
    if (sealed) problems.unshift(sealed);
    return {
      checkpoint: {
        chains,
        agentKeys,
        untrusted,
        commands,
        partitions: partitions.map((r) => ({
          partition: num(r['partition_no']),
          nextOffset: String(r['read_to']),
          held: held.get(num(r['partition_no'])) ?? [],
        })),
      },
      problems,
    };
  }

  /**
   * Throws the checkpoint away (it was refused): the ledger reads the log again from offset 0
   * and writes a new one as it goes. Runs in the caller's transaction, under its lease.
   */
  async clear(q: QueryRunner): Promise<void> {
    for (const table of CHECKPOINT_TABLES) {
      const scoped = table === 'checkpoint_partitions' || table === 'checkpoint_held' || table === 'checkpoint_seal';
      await q.query(
        this.db.sql(`DELETE FROM ${table}${scoped ? ' WHERE topic = $1' : ''}`),
        scoped ? [this.topic] : [],
      );
    }
    this.forget();
  }

  /** The statements writing a checkpoint's changes, encoded now (the batch's transaction runs them). */
  prepare(cp: GateCheckpoint<HeldItem>): PreparedWrite[] {
    const w = this.w;
    const chains = cp.chains.map((c) => [chainKey(c), JSON.stringify(c)]);
    for (const [key, state] of chains) this.put(`chains/${key}`, CheckpointStore.row('chains', key, state));
    const agentKeys = cp.agentKeys.map((k) => [k.producerId, JSON.stringify(k)]);
    for (const [id, state] of agentKeys) this.put(`agentKeys/${id}`, CheckpointStore.row('agent_keys', id, state));
    for (const [producerId, epoch] of cp.untrusted)
      this.digest.add(SetDigest.element(CheckpointStore.row('refused', producerId, epoch)));
    for (const [command, host] of cp.commands)
      this.digest.add(SetDigest.element(CheckpointStore.row('commands', command, host)));
    for (const p of cp.partitions) {
      this.put(`partitions/${p.partition}`, CheckpointStore.row('partitions', this.topic, p.partition, p.nextOffset));
      this.dropHeldBelow(p.partition, p.heldFrom ?? p.nextOffset);
    }
    const held = cp.partitions.flatMap((p) =>
      p.held.map((h) => {
        const item = JSON.stringify(h.sealedBy ? { ...h.item, sealedBy: h.sealedBy } : h.item);
        this.putHeld(
          p.partition,
          h.offset,
          CheckpointStore.row('held', this.topic, p.partition, h.offset, h.verdict, item),
        );
        return [this.topic, p.partition, h.offset, h.verdict, item];
      }),
    );
    const seal = this.signer
      ? [
          [
            this.topic,
            this.signer.producerId,
            this.digest.digest().toString('hex'),
            signHash(this.signer.key, sealMessage(this.topic, this.digest.digest())).toString('hex'),
          ],
        ]
      : [];
    const tables: [TableWriter, unknown[][]][] = [
      [w.chains, chains],
      [w.agentKeys, agentKeys],
      [w.refused, cp.untrusted.map(([producerId, epoch]) => [producerId, epoch])],
      [w.commands, cp.commands.map(([command, host]) => [command, host])],
      [w.partitions, cp.partitions.map((p) => [this.topic, p.partition, p.nextOffset])],
      [w.held, held],
      [w.seal, seal],
    ];
    // Held records the gate has let go of: every one below the partition's first still held.
    const released: PreparedWrite[] = cp.partitions.map((p) => ({
      table: 'checkpoint_held',
      run: async (q) => {
        await q.query(
          this.db.sql('DELETE FROM checkpoint_held WHERE topic = $1 AND partition_no = $2 AND record_offset < $3'),
          [this.topic, p.partition, p.heldFrom ?? p.nextOffset],
        );
      },
    }));
    return [...released, ...tables.filter(([, rows]) => rows.length > 0).map(([writer, rows]) => writer.prepare(rows))];
  }

  /**
   * Takes the projection over: the next generation of the lease, named for `holder`. On
   * PostgreSQL the update waits for the transaction of the previous holder's batch under way
   * (it holds the row), so what this ledger loads next is all that holder committed.
   */
  async takeLease(holder: string): Promise<number> {
    return this.db.transaction(async (q) => {
      const rows = (await q.query(
        this.db.sql(
          `INSERT INTO projection_lease (topic, generation, holder, taken_at) VALUES ($1, 1, $2, $3)
           ON CONFLICT (topic) DO UPDATE SET generation = projection_lease.generation + 1,
             holder = excluded.holder, taken_at = excluded.taken_at
           RETURNING generation`,
        ),
        [this.topic, holder, Date.now()],
      )) as Record<string, unknown>[];
      return num(rows[0]!['generation']);
    });
  }

  /** The lease's current generation (undefined: never taken). */
  async leaseGeneration(): Promise<number | undefined> {
    const [row] = await this.db.query('SELECT generation FROM projection_lease WHERE topic = $1', [this.topic]);
    return row ? num(row['generation']) : undefined;
  }

  /** First statement of each batch's transaction: refuses it once another ledger took over. */
  async holdLease(q: QueryRunner, generation: number): Promise<void> {
    const lock = this.db.dialect === 'postgres' ? ' FOR SHARE' : '';
    const rows = (await q.query(
      this.db.sql(`SELECT generation, holder FROM projection_lease WHERE topic = $1${lock}`),
      [this.topic],
    )) as Record<string, unknown>[];
    const now = rows[0] ? num(rows[0]['generation']) : undefined;
    if (now !== generation)
      throw new LeaseLostError(
        `the projection of ${this.topic} was taken over by ${String(rows[0]?.['holder'] ?? 'nobody')} ` +
          `(lease generation ${now ?? 'none'}, this ledger held ${generation}): its batch is not written`,
      );
  }
}
