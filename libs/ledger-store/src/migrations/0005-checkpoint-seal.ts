import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The checkpoint's seal (docs/adr/0028): a digest of every checkpoint row, signed by the ledger
 * that wrote them with its own key, which the database never holds. A ledger resumes from a
 * checkpoint only when the seal verifies with a ledger key it trusts and the rows digest to it.
 */
export class CheckpointSeal1796774400000 implements MigrationInterface {
  name = 'CheckpointSeal1796774400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE checkpoint_seal (topic TEXT PRIMARY KEY, signer TEXT NOT NULL,
      digest TEXT NOT NULL, signature TEXT NOT NULL)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE checkpoint_seal`);
  }
}
