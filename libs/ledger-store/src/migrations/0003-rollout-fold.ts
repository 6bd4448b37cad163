import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The rollout fold's own state (libs/rollout RolloutBook), so that the ledger picks it up again
 * after a restart and derives its rollout rows from it (docs/adr/0014-one-fold.md): each
 * rollout's record, each host's run in it, and what the book holds outside any rollout (outcomes
 * and steps waiting for their command or rollout, hosts whose kernel warned). Rows written before
 * it hold '' and are not picked up: `ledger rebuild` refolds the log to fill them.
 */
export class RolloutFold1796601600000 implements MigrationInterface {
  name = 'RolloutFold1796601600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rollouts ADD COLUMN fold_state TEXT NOT NULL DEFAULT ''`);
    await q.query(`ALTER TABLE rollout_hosts ADD COLUMN fold_state TEXT NOT NULL DEFAULT ''`);
    await q.query(`CREATE TABLE rollout_book (book_key TEXT PRIMARY KEY, fold_state TEXT NOT NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE rollout_book`);
    await q.query(`ALTER TABLE rollout_hosts DROP COLUMN fold_state`);
    await q.query(`ALTER TABLE rollouts DROP COLUMN fold_state`);
  }
}
