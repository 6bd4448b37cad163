import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataSource, QueryRunner } from 'typeorm';
import { READ_MODEL_TABLES, ReadModels1795305600000 } from './migrations/0001-read-models';
import { StackHistory1796515200000 } from './migrations/0002-stack-history';
import { RolloutFold1796601600000 } from './migrations/0003-rollout-fold';
import { CHECKPOINT_TABLES, Checkpoints1796688000000 } from './migrations/0004-checkpoints';
import { CheckpointSeal1796774400000 } from './migrations/0005-checkpoint-seal';
import { RolloutHostLists1796860800000 } from './migrations/0006-rollout-host-lists';

/** The schema, in order; never synchronize. */
const MIGRATIONS = [
  ReadModels1795305600000,
  StackHistory1796515200000,
  RolloutFold1796601600000,
  Checkpoints1796688000000,
  CheckpointSeal1796774400000,
  RolloutHostLists1796860800000,
];

export type Dialect = 'postgres' | 'sqlite';

export interface LedgerDatabaseOptions {
  /** postgres://... ; unset: a SQLite file under dataDir. */
  databaseUrl?: string;
  /** Where the SQLite file lives (ledger.sqlite). */
  dataDir?: string;
  /** An explicit SQLite file, for tests and tools. */
  sqliteFile?: string;
}

/** The ledger's database: a TypeORM DataSource, migrated, plus the dialect the SQL is written for. */
export class LedgerDatabase {
  private constructor(
    readonly dataSource: DataSource,
    readonly dialect: Dialect,
    readonly description: string,
    /** PostgreSQL: each table's column types, for array-typed bulk inserts (unnest). */
    readonly columnTypes: ReadonlyMap<string, ReadonlyMap<string, string>>,
  ) {}

  static async open(opts: LedgerDatabaseOptions): Promise<LedgerDatabase> {
    let ds: DataSource;
    let description: string;
    if (opts.databaseUrl) {
      ds = new DataSource({
        type: 'postgres',
        url: opts.databaseUrl,
        migrations: MIGRATIONS,
        migrationsTableName: 'ledger_migrations',
        // The projection parses BIGINT itself; the pool stays small (one writer, a few readers).
        extra: { max: 6 },
      });
      description = `PostgreSQL ${redact(opts.databaseUrl)}`;
    } else {
      const file = opts.sqliteFile ?? path.join(opts.dataDir ?? '.', 'ledger.sqlite');
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      ds = new DataSource({
        type: 'better-sqlite3',
        database: file,
        migrations: MIGRATIONS,
        migrationsTableName: 'ledger_migrations',
        enableWAL: true,
        // Each table's inserts come in a few fixed sizes (batch-writer.ts): kept compiled, all of them.
        statementCacheSize: 400,
        // NORMAL with WAL: a commit survives a process kill (the WAL is written before commit
        // returns); only an OS crash may lose the last transactions, which a replay redoes.
        prepareDatabase: (db: { pragma(s: string): unknown }) => {
          db.pragma('synchronous = NORMAL');
          db.pragma('busy_timeout = 5000');
        },
      });
      description = `SQLite ${file}`;
    }
    await ds.initialize();
    // Never synchronize: the schema is what the migrations say, on both databases.
    await ds.runMigrations({ transaction: 'each' });
    const types = new Map<string, Map<string, string>>();
    if (opts.databaseUrl) {
      const rows = (await ds.query(
        `SELECT table_name, column_name, udt_name FROM information_schema.columns WHERE table_schema = current_schema()`,
      )) as { table_name: string; column_name: string; udt_name: string }[];
      for (const r of rows) {
        const t = types.get(r.table_name) ?? new Map<string, string>();
        t.set(r.column_name, r.udt_name);
        types.set(r.table_name, t);
      }
    }
    return new LedgerDatabase(ds, opts.databaseUrl ? 'postgres' : 'sqlite', description, types);
  }

  /** Placeholder for the n-th (1-based) parameter. */
  param(n: number): string {
    return this.dialect === 'postgres' ? `$${n}` : '?';
  }

  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.dataSource.query(this.sql(sql), params)) as T[];
  }

  /** SQL written with $1, $2... placeholders, turned into ? for SQLite. */
  sql(text: string): string {
    return this.dialect === 'postgres' ? text : text.replace(/\$\d+/g, '?');
  }

  async transaction<T>(work: (q: QueryRunner) => Promise<T>): Promise<T> {
    const q = this.dataSource.createQueryRunner();
    await q.connect();
    await q.startTransaction();
    try {
      // The read models and their offsets commit together or not at all, so a commit the server
      // has not flushed yet can only be lost together with its offsets (a server crash), and is
      // then replayed: there is no need to wait for the disk (docs/adr/0005).
      if (this.dialect === 'postgres') await q.query('SET LOCAL synchronous_commit = off');
      const out = await work(q);
      await q.commitTransaction();
      return out;
    } catch (err) {
      await q.rollbackTransaction().catch(() => undefined);
      throw err;
    } finally {
      await q.release();
    }
  }

  /** Empties every read model, the offsets and the checkpoint: the next start replays from offset 0. */
  async dropReadModels(): Promise<void> {
    await this.transaction(async (q) => {
      for (const table of [...READ_MODEL_TABLES, ...CHECKPOINT_TABLES]) await q.query(`DELETE FROM ${table}`);
    });
    if (this.dialect === 'sqlite') await this.dataSource.query('VACUUM');
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

/** BIGINT columns come back as strings from pg and numbers from SQLite. */
export function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

export function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : num(v);
}
