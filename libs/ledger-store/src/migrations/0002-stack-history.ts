import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What the domain's stack fold (evolveHostStack) returns and the first schema dropped: each
 * interval's state history and when its code was live (docs/adr/0014-one-fold.md). Rows written
 * before it get an empty history and no live-from/until; `ledger rebuild` refolds the log to fill them.
 */
export class StackHistory1796515200000 implements MigrationInterface {
  name = 'StackHistory1796515200000';

  async up(q: QueryRunner): Promise<void> {
    // One column a statement: SQLite's ALTER TABLE adds one at a time.
    for (const column of [
      `states TEXT NOT NULL DEFAULT '[]'`,
      'live_from BIGINT',
      'live_from_event_id TEXT',
      'live_until BIGINT',
      'live_until_event_id TEXT',
    ])
      await q.query(`ALTER TABLE stack_intervals ADD COLUMN ${column}`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const column of ['states', 'live_from', 'live_from_event_id', 'live_until', 'live_until_event_id'])
      await q.query(`ALTER TABLE stack_intervals DROP COLUMN ${column}`);
  }
}
