import { QueryRunner } from 'typeorm';
import { AgentKeyState, ChainState, GateCheckpoint } from '@rebootless/events';
import { PreparedWrite, TableWriter } from './batch-writer';
import { LedgerDatabase, num } from './database';

/** What the ledger keeps of a record the gate holds: its bytes (base64) and Kafka timestamp. */
export interface HeldItem {
  value: string | null;
  timestamp: string;
}

/** Another ledger took the projection over: this one's writes are refused (docs/adr/0024). */
export class LeaseLostError extends Error {}

const chainKey = (c: Pick<ChainState, 'producerId' | 'epoch'>) => `${c.producerId}@${c.epoch}`;

/**
 * The projection's checkpoint in the ledger's database: read at start, and each batch's changes
 * written in the batch's transaction. The lease row fences a ledger that lost its partitions to
 * another (a member frozen past its session timeout writes nothing once it wakes).
 */
export class CheckpointStore {
  private readonly w: Record<'chains' | 'agentKeys' | 'refused' | 'commands' | 'partitions' | 'held', TableWriter>;

  constructor(
    private readonly db: LedgerDatabase,
    private readonly topic: string,
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
    };
  }

  /** The checkpoint as stored, or undefined when there is none (a new or rebuilt ledger, or one from before it). */
  async load(): Promise<GateCheckpoint<HeldItem> | undefined> {
    const db = this.db;
    const partitions = await db.query('SELECT partition_no, read_to FROM checkpoint_partitions WHERE topic = $1', [
      this.topic,
    ]);
    if (partitions.length === 0) return undefined;
    const held = new Map<number, GateCheckpoint<HeldItem>['partitions'][number]['held']>();
    for (const r of await db.query(
      'SELECT partition_no, record_offset, verdict, item FROM checkpoint_held WHERE topic = $1 ORDER BY partition_no, record_offset',
      [this.topic],
    )) {
      const list = held.get(num(r['partition_no'])) ?? [];
      held.set(num(r['partition_no']), list);
      list.push({
        offset: String(r['record_offset']),
        verdict: String(r['verdict']) as 'waiting' | 'accepted' | 'rejected',
        item: JSON.parse(String(r['item'])) as HeldItem,
      });
    }
    const rows = async (sql: string) => db.query(sql);
    return {
      chains: (await rows('SELECT state FROM checkpoint_chains')).map(
        (r) => JSON.parse(String(r['state'])) as ChainState,
      ),
      agentKeys: (await rows('SELECT state FROM checkpoint_agent_keys')).map(
        (r) => JSON.parse(String(r['state'])) as AgentKeyState,
      ),
      untrusted: (await rows('SELECT producer_id, epoch FROM checkpoint_refused_epochs')).map((r) => [
        String(r['producer_id']),
        num(r['epoch']),
      ]),
      commands: (await rows('SELECT command_id, host_id FROM checkpoint_commands')).map((r) => [
        String(r['command_id']),
        String(r['host_id']),
      ]),
      partitions: partitions.map((r) => ({
        partition: num(r['partition_no']),
        nextOffset: String(r['read_to']),
        held: held.get(num(r['partition_no'])) ?? [],
      })),
    };
  }

  /** The statements writing a checkpoint's changes, encoded now (the batch's transaction runs them). */
  prepare(cp: GateCheckpoint<HeldItem>): PreparedWrite[] {
    const w = this.w;
    const tables: [TableWriter, unknown[][]][] = [
      [w.chains, cp.chains.map((c) => [chainKey(c), JSON.stringify(c)])],
      [w.agentKeys, cp.agentKeys.map((k) => [k.producerId, JSON.stringify(k)])],
      [w.refused, cp.untrusted.map(([producerId, epoch]) => [producerId, epoch])],
      [w.commands, cp.commands.map(([command, host]) => [command, host])],
      [w.partitions, cp.partitions.map((p) => [this.topic, p.partition, p.nextOffset])],
      [
        w.held,
        cp.partitions.flatMap((p) =>
          p.held.map((h) => [this.topic, p.partition, h.offset, h.verdict, JSON.stringify(h.item)]),
        ),
      ],
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
