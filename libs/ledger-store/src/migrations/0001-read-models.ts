import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger's read models (docs/adr/0005-ledger-read-models.md). Written once for both
 * databases: times are epoch milliseconds (BIGINT), flags SMALLINT 0/1, lists and maps JSON
 * text, so every row reads the same from SQLite and PostgreSQL.
 */
export class ReadModels1795305600000 implements MigrationInterface {
  name = 'ReadModels1795305600000';

  async up(q: QueryRunner): Promise<void> {
    const bytes = q.connection.options.type === 'postgres' ? 'BYTEA' : 'BLOB';
    const statements = [
      `CREATE TABLE consumer_offsets (topic TEXT NOT NULL, partition_no INTEGER NOT NULL, next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition_no))`,
      `CREATE TABLE agent_keys (producer_id TEXT PRIMARY KEY, public_key ${bytes} NOT NULL, bound_at BIGINT NOT NULL,
        partition_no INTEGER NOT NULL, record_offset BIGINT NOT NULL)`,
      `CREATE TABLE hosts (host_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, machine_id TEXT NOT NULL,
        kernel_release TEXT NOT NULL, kernel_version TEXT NOT NULL, arch TEXT NOT NULL, distro TEXT NOT NULL,
        boot_id TEXT NOT NULL, labels TEXT NOT NULL, agent_version TEXT NOT NULL, tainted BIGINT NOT NULL,
        taint_flags TEXT NOT NULL, enrolled_at BIGINT, enrolled_event_id TEXT NOT NULL, last_seen_at BIGINT NOT NULL, stack_observed_at BIGINT,
        stack_counter INTEGER NOT NULL, last_event_id TEXT NOT NULL)`,
      `CREATE INDEX hosts_kernel ON hosts (kernel_release)`,
      `CREATE TABLE stack_intervals (host_id TEXT NOT NULL, interval_id TEXT NOT NULL, stack_seq INTEGER NOT NULL,
        module_name TEXT NOT NULL, patch_id TEXT NOT NULL, version TEXT NOT NULL, boot_id TEXT NOT NULL,
        applied_at BIGINT NOT NULL, removed_at BIGINT, removal_reason TEXT, state TEXT NOT NULL,
        enabled SMALLINT NOT NULL, replace_flag SMALLINT NOT NULL, forced SMALLINT NOT NULL, functions TEXT NOT NULL,
        applied_by TEXT NOT NULL, rollout_id TEXT NOT NULL, applied_event_id TEXT NOT NULL, removed_event_id TEXT,
        PRIMARY KEY (host_id, interval_id))`,
      `CREATE INDEX stack_intervals_open ON stack_intervals (host_id, removed_at)`,
      `CREATE INDEX stack_intervals_patch ON stack_intervals (patch_id, removed_at)`,
      `CREATE TABLE patches (patch_id TEXT NOT NULL, version TEXT NOT NULL, patch_name TEXT NOT NULL,
        description TEXT NOT NULL, cves TEXT NOT NULL, severity INTEGER NOT NULL, replace_flag SMALLINT NOT NULL,
        build_id TEXT NOT NULL, artifacts TEXT NOT NULL, published_at BIGINT NOT NULL, published_event_id TEXT NOT NULL,
        retracted SMALLINT NOT NULL, retraction_reason TEXT NOT NULL, retracted_at BIGINT,
        PRIMARY KEY (patch_id, version))`,
      `CREATE TABLE builds (build_id TEXT PRIMARY KEY, patch_id TEXT NOT NULL, version TEXT NOT NULL,
        patch_name TEXT NOT NULL, description TEXT NOT NULL, cves TEXT NOT NULL, replace_flag SMALLINT NOT NULL,
        kernel_releases TEXT NOT NULL, requested_at BIGINT NOT NULL, artifacts TEXT NOT NULL, failures TEXT NOT NULL)`,
      `CREATE TABLE rollouts (rollout_id TEXT PRIMARY KEY, patch_id TEXT NOT NULL, version TEXT NOT NULL,
        state TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, created_by TEXT NOT NULL,
        selector TEXT NOT NULL, strategy TEXT NOT NULL, waves TEXT NOT NULL, current_wave INTEGER NOT NULL,
        succeeded INTEGER NOT NULL, failed INTEGER NOT NULL, skipped INTEGER NOT NULL, reason TEXT NOT NULL)`,
      `CREATE TABLE rollout_hosts (rollout_id TEXT NOT NULL, host_id TEXT NOT NULL, wave_index INTEGER NOT NULL,
        command_id TEXT NOT NULL, outcome INTEGER NOT NULL, detail TEXT NOT NULL, updated_at BIGINT NOT NULL,
        planned SMALLINT NOT NULL,
        PRIMARY KEY (rollout_id, host_id))`,
      `CREATE TABLE audit_log (partition_no INTEGER NOT NULL, record_offset BIGINT NOT NULL, event_id TEXT NOT NULL,
        type TEXT NOT NULL, occurred_at BIGINT NOT NULL, producer_id TEXT NOT NULL, epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL, actor_kind INTEGER NOT NULL, actor_id TEXT NOT NULL, actor_origin TEXT NOT NULL,
        outcome TEXT NOT NULL, host_id TEXT NOT NULL, patch_id TEXT NOT NULL, patch_version TEXT NOT NULL,
        correlation_id TEXT NOT NULL, summary TEXT NOT NULL, envelope ${bytes} NOT NULL,
        PRIMARY KEY (partition_no, record_offset))`,
      `CREATE INDEX audit_time ON audit_log (occurred_at)`,
      `CREATE INDEX audit_host ON audit_log (host_id, occurred_at)`,
      // Most events belong to no rollout or build: the index holds only those that do.
      `CREATE INDEX audit_correlation ON audit_log (correlation_id) WHERE correlation_id <> ''`,
      `CREATE TABLE integrity_findings (partition_no INTEGER NOT NULL, record_offset BIGINT NOT NULL,
        kind TEXT NOT NULL, producer_id TEXT NOT NULL, epoch BIGINT NOT NULL, seq BIGINT NOT NULL,
        to_seq BIGINT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (partition_no, record_offset, kind))`,
    ];
    for (const sql of statements) await q.query(sql);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of READ_MODEL_TABLES) await q.query(`DROP TABLE IF EXISTS ${table}`);
  }
}

/** Every table the projection writes; `rebuild` empties them all. */
export const READ_MODEL_TABLES = [
  'consumer_offsets',
  'agent_keys',
  'hosts',
  'stack_intervals',
  'patches',
  'builds',
  'rollouts',
  'rollout_hosts',
  // Added by 0003-rollout-fold.
  'rollout_book',
  // Added by 0006-rollout-host-lists.
  'rollout_host_lists',
  'audit_log',
  'integrity_findings',
] as const;
