import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The plan's host lists of each rollout (each wave's hosts, the hosts skipped at planning) in a
 * table of their own: they never change once planned, while the rollout's record changes with
 * every answer. Kept inside the record, a 100,000-host rollout rewrote a megabyte and a half with
 * each of its batches. Records written before this hold their lists and keep them until the
 * rollout next changes.
 */
export class RolloutHostLists1796860800000 implements MigrationInterface {
  name = 'RolloutHostLists1796860800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE rollout_host_lists (rollout_id TEXT NOT NULL, list TEXT NOT NULL,
      host_ids TEXT NOT NULL, PRIMARY KEY (rollout_id, list))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE rollout_host_lists`);
  }
}
