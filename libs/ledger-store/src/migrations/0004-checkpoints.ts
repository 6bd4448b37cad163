import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The projection's checkpoint (docs/adr/0024-ledger-checkpoints-and-group.md), written in the
 * transaction of each batch: the gate's chains, agent keys, refused epochs and commands, each
 * partition's reading position and held records, and the lease that fences a ledger that lost
 * its partitions. A ledger starts from these instead of reading the log again from offset 0.
 */
export class Checkpoints1796688000000 implements MigrationInterface {
  name = 'Checkpoints1796688000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE checkpoint_chains (chain_key TEXT PRIMARY KEY, state TEXT NOT NULL)`);
    await q.query(`CREATE TABLE checkpoint_agent_keys (producer_id TEXT PRIMARY KEY, state TEXT NOT NULL)`);
    await q.query(`CREATE TABLE checkpoint_refused_epochs (producer_id TEXT NOT NULL, epoch BIGINT NOT NULL,
      PRIMARY KEY (producer_id, epoch))`);
    await q.query(`CREATE TABLE checkpoint_commands (command_id TEXT PRIMARY KEY, host_id TEXT NOT NULL)`);
    await q.query(`CREATE TABLE checkpoint_partitions (topic TEXT NOT NULL, partition_no INTEGER NOT NULL,
      read_to BIGINT NOT NULL, PRIMARY KEY (topic, partition_no))`);
    await q.query(`CREATE TABLE checkpoint_held (topic TEXT NOT NULL, partition_no INTEGER NOT NULL,
      record_offset BIGINT NOT NULL, verdict TEXT NOT NULL, item TEXT NOT NULL,
      PRIMARY KEY (topic, partition_no, record_offset))`);
    await q.query(`CREATE TABLE projection_lease (topic TEXT PRIMARY KEY, generation BIGINT NOT NULL,
      holder TEXT NOT NULL, taken_at BIGINT NOT NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of [...CHECKPOINT_TABLES.filter((t) => t !== 'checkpoint_seal'), 'projection_lease'])
      await q.query(`DROP TABLE ${table}`);
  }
}

/** The checkpoint's tables (its seal's from 0005): `rebuild` empties them with the read models. */
export const CHECKPOINT_TABLES = [
  'checkpoint_chains',
  'checkpoint_agent_keys',
  'checkpoint_refused_epochs',
  'checkpoint_commands',
  'checkpoint_partitions',
  'checkpoint_held',
  'checkpoint_seal',
] as const;
