import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { QueryRunner } from 'typeorm';
import { CopyColumnType, encodeCopyBinary, isCopyColumnType } from './copy-binary';
import { pgArrayLiteral } from './pg-array-literal';
import { LedgerDatabase } from './database';

/**
 * Multi-row INSERT ... ON CONFLICT for one table, or COPY for rows written once: the replay path
 * writes each consumed batch with a few statements instead of a statement per row
 * (docs/adr/0005).
 */
export class TableWriter {
  /**
   * SQLite: rows go in statements of a few sizes (powers of 4, largest first), never of the
   * batch's own: the driver keeps each text compiled, where a size per batch was compiled again.
   */
  private readonly chunkSizes: number[] = [];
  private readonly inserts = new Map<number, string>();

  constructor(
    readonly table: string,
    readonly columns: readonly string[],
    readonly key: readonly string[],
    /**
     * 'update': a row with the same key is replaced; 'ignore': the first one stays; 'append': the
     * caller never writes a key twice (a duplicate fails the transaction), so PostgreSQL takes the
     * rows by COPY, which cannot resolve conflicts, and SQLite by a plain INSERT.
     */
    readonly onConflict: 'update' | 'ignore' | 'append',
    private readonly db: LedgerDatabase,
  ) {
    // SQLite allows 32766 parameters a statement.
    const rowsPerStatement = Math.max(1, Math.min(2000, Math.floor(30_000 / columns.length)));
    for (let size = 1; size <= rowsPerStatement; size *= 4) this.chunkSizes.unshift(size);
    const types = db.columnTypes.get(table);
    if (db.dialect === 'postgres') {
      if (!types) throw new Error(`table ${table} is missing from the database`);
      this.pgTypes = columns.map((c) => {
        const t = types.get(c);
        if (!t) throw new Error(`column ${table}.${c} is missing from the database`);
        // Both ways of writing (binary COPY, array literals) encode the values themselves.
        if (!isCopyColumnType(t)) throw new Error(`column ${table}.${c} has type ${t}, which the writer cannot encode`);
        return t;
      });
    }
  }

  /** PostgreSQL: COPY for 'append', else one array parameter per column, unnest()ed. */
  private readonly pgTypes: CopyColumnType[] | undefined;

  private conflictClause(): string {
    const update = this.columns.filter((c) => !this.key.includes(c));
    return this.onConflict === 'ignore' || update.length === 0
      ? 'DO NOTHING'
      : `DO UPDATE SET ${update.map((c) => `${c} = excluded.${c}`).join(', ')}`;
  }

  /**
   * The statements for these rows, encoded now: the consumer prepares a batch while the one
   * before it is written, so only the database's own work stays on the chain of writes.
   */
  prepare(rows: readonly unknown[][]): PreparedWrite {
    const table = this.table;
    if (rows.length === 0) return { table, run: async () => undefined };
    for (const row of rows)
      if (row.length !== this.columns.length)
        throw new Error(`${table}: a row has ${row.length} values for ${this.columns.length} columns`);
    if (this.pgTypes && this.onConflict === 'append') {
      const payload = encodeCopyBinary(this.pgTypes, rows);
      return { table, run: (q) => this.copy(q, payload) };
    }
    if (this.pgTypes) {
      const statements = this.unnestStatements(rows, this.pgTypes);
      return { table, run: (q) => runAll(q, statements) };
    }
    const statements: Statement[] = [];
    let i = 0;
    for (const size of this.chunkSizes) {
      for (; rows.length - i >= size; i += size) {
        const params: unknown[] = [];
        for (let r = i; r < i + size; r++) for (const v of rows[r]!) params.push(v);
        statements.push([this.insertOf(size), params]);
      }
    }
    return { table, run: (q) => runAll(q, statements) };
  }

  private insertOf(rows: number): string {
    let sql = this.inserts.get(rows);
    if (!sql) {
      const tuple = `(${this.columns.map(() => '?').join(',')})`;
      sql =
        `INSERT INTO ${this.table} (${this.columns.join(',')}) VALUES ${Array(rows).fill(tuple).join(',')}` +
        (this.onConflict === 'append' ? '' : ` ON CONFLICT (${this.key.join(',')}) ${this.conflictClause()}`);
      this.inserts.set(rows, sql);
    }
    return sql;
  }

  /** Deletes the rows with these keys (the table's key is one column), in the caller's transaction. */
  prepareDelete(keys: readonly unknown[]): PreparedWrite {
    const table = this.table;
    const [column, ...more] = this.key;
    if (!column || more.length > 0) throw new Error(`${table}: deleting by key needs a one-column key`);
    if (keys.length === 0) return { table, run: async () => undefined };
    const statements: Statement[] = [];
    for (let i = 0; i < keys.length; i += 1_000) {
      const chunk = keys.slice(i, i + 1_000);
      const type = this.pgTypes?.[this.columns.indexOf(column)];
      statements.push(
        type
          ? [`DELETE FROM ${table} WHERE ${column} = ANY($1::${type}[])`, [pgArrayLiteral(type, chunk)]]
          : [`DELETE FROM ${table} WHERE ${column} IN (${chunk.map(() => '?').join(',')})`, [...chunk]],
      );
    }
    return { table, run: (q) => runAll(q, statements) };
  }

  private unnestStatements(rows: readonly unknown[][], types: CopyColumnType[]): Statement[] {
    const statements: Statement[] = [];
    for (let i = 0; i < rows.length; i += 10_000) {
      const chunk = rows.slice(i, i + 10_000);
      const arrays = types.map((t, c) =>
        pgArrayLiteral(
          t,
          chunk.map((row) => row[c] ?? null),
        ),
      );
      statements.push([
        `INSERT INTO ${this.table} (${this.columns.join(',')}) ` +
          `SELECT * FROM unnest(${types.map((t, c) => `$${c + 1}::${t}[]`).join(',')}) ` +
          `ON CONFLICT (${this.key.join(',')}) ${this.conflictClause()}`,
        arrays,
      ]);
    }
    return statements;
  }

  /** COPY FROM STDIN in the caller's transaction, on the connection TypeORM holds for it. */
  private async copy(q: QueryRunner, payload: Buffer): Promise<void> {
    const client = (await q.connect()) as PoolClient;
    const sink = client.query(copyFrom(`COPY ${this.table} (${this.columns.join(',')}) FROM STDIN (FORMAT binary)`));
    await pipeline(Readable.from([payload]), sink);
  }
}

/** A table's rows as statements ready to send, inside the caller's transaction. */
export interface PreparedWrite {
  readonly table: string;
  run(q: QueryRunner): Promise<void>;
}

type Statement = [sql: string, params: unknown[]];

async function runAll(q: QueryRunner, statements: readonly Statement[]): Promise<void> {
  for (const [sql, params] of statements) await q.query(sql, params);
}
