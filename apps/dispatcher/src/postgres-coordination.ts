// Several dispatcher instances against one PostgreSQL (docs/adr/0025). A rollout's lease is a
// session-level advisory lock: PostgreSQL grants it to one session at a time and drops it the
// moment that session ends, so an instance SIGKILLed loses its leases as its socket closes, and
// no timer decides anything. The same session is the instance's liveness: presence rows of an
// instance whose session is gone count for nothing.
import { Client, type QueryResult, type QueryResultRow } from 'pg';
import type { CommandAnswer, Coordination, PeerPresence } from './coordination';

/** Presence changes are written together at most this often. */
const PRESENCE_FLUSH_MS = 100;
/** How often the other instances' presence is read. */
const PRESENCE_POLL_MS = 250;
const RECONNECT_MS = 1_000;
/**
 * How long the lease session may take to answer before a write: past it, the instance takes
 * itself to be cut off, and its leases to be someone else's to take.
 */
const LEASE_CONFIRM_MS = 2_000;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS dispatcher_instances (
    instance text PRIMARY KEY,
    pid integer NOT NULL,
    backend_start timestamptz NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS dispatcher_agent_presence (
    host_id text PRIMARY KEY,
    instance text NOT NULL,
    connected boolean NOT NULL,
    since timestamptz NOT NULL
  );
  -- The transaction that last wrote the row: a reader reads again only what was written by
  -- transactions its last read could not see (ADR 0029). It replaces a sequence number, which
  -- commits out of order across sessions and so needed a full read now and then.
  ALTER TABLE dispatcher_agent_presence ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id();
  ALTER TABLE dispatcher_agent_presence DROP COLUMN IF EXISTS seq;
  DROP SEQUENCE IF EXISTS dispatcher_presence_seq;
  CREATE INDEX IF NOT EXISTS dispatcher_agent_presence_xid ON dispatcher_agent_presence (xid);
  -- An agent's answer to a command another instance wrote, for that instance's caller.
  CREATE TABLE IF NOT EXISTS dispatcher_command_answers (
    command_id text PRIMARY KEY,
    instance text NOT NULL,
    outcome integer NOT NULL,
    stage text NOT NULL,
    error text NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now()
  );
  -- Their callers waited seconds: a day's answers are more than enough to keep.
  DELETE FROM dispatcher_command_answers WHERE answered_at < now() - interval '1 day';
`;

/** Namespaces the advisory lock keys (hashtextextended of the text) so they meet nobody else's. */
const rolloutLockKey = (rolloutId: string) => `rebootless/dispatcher/rollout/${rolloutId}`;
const instanceLockKey = (instance: string) => `rebootless/dispatcher/instance/${instance}`;
const SCHEMA_LOCK_KEY = 'rebootless/dispatcher/schema';

export class InstanceNameTakenError extends Error {}

export interface PostgresCoordinationOptions {
  instance: string;
  databaseUrl: string;
  log: { warn(message: string): void; error(message: string): void };
}

interface PresenceRow {
  instance: string;
  connected: boolean;
  since: number;
}

export class PostgresCoordination implements Coordination {
  readonly instance: string;
  private session!: Client;
  private reader!: Client;
  private readonly held = new Set<string>();
  /** Sessions known ended or cut off (the current one among them until a new one is open). */
  private readonly sessionGone = new WeakSet<Client>();
  private readonly lostListeners: (() => void)[] = [];
  private readonly pending = new Map<string, { connected: boolean; at: number }>();
  private readonly presence = new Map<string, PresenceRow>();
  /** Other instances' hosts whose row says disconnected, and those connected, by instance: what awayElsewhere gives. */
  private readonly disconnected = new Set<string>();
  private readonly connectedTo = new Map<string, Set<string>>();
  private readonly alive = new Set<string>();
  /** When an instance was first seen dead: its agents are offline since then. */
  private readonly deadSince = new Map<string, number>();
  /**
   * The oldest transaction the last read could not see (its snapshot's xmin): every row written
   * by a transaction committed since has an xid at least this.
   */
  private readFrom = '0';
  /** Presence rows read so far (each poll reads only rows changed since the one before). */
  presenceRowsRead = 0;
  private flushTimer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private closed = false;
  private flushing: Promise<void> = Promise.resolve();

  private constructor(private readonly opts: PostgresCoordinationOptions) {
    this.instance = opts.instance;
  }

  /** Connects, creates the tables if missing, and registers the instance (refused if its name is live elsewhere). */
  static async open(opts: PostgresCoordinationOptions): Promise<PostgresCoordination> {
    const c = new PostgresCoordination(opts);
    await c.openSession();
    c.reader = new Client({ connectionString: opts.databaseUrl, keepAlive: true });
    c.reader.on('error', (e) => opts.log.warn(`coordination reader: ${e.message}`));
    await c.reader.connect();
    await c.poll();
    c.flushTimer = setInterval(() => void c.flush(), PRESENCE_FLUSH_MS);
    c.pollTimer = setInterval(
      () => void c.poll().catch((e: Error) => opts.log.warn(`presence: ${e.message}`)),
      PRESENCE_POLL_MS,
    );
    return c;
  }

  private async openSession(): Promise<void> {
    const session = new Client({ connectionString: this.opts.databaseUrl, keepAlive: true });
    await session.connect();
    try {
      await session.query('BEGIN');
      await session.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [SCHEMA_LOCK_KEY]);
      await session.query(SCHEMA);
      await session.query('COMMIT');
      const { rows } = await session.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok',
        [instanceLockKey(this.instance)],
      );
      if (!rows[0]?.ok)
        throw new InstanceNameTakenError(
          `another live dispatcher is instance "${this.instance}" (DISPATCHER_INSTANCE): each instance needs its own name`,
        );
      await session.query(
        `INSERT INTO dispatcher_instances (instance, pid, backend_start)
           SELECT $1, pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
         ON CONFLICT (instance) DO UPDATE SET pid = EXCLUDED.pid, backend_start = EXCLUDED.backend_start, registered_at = now()`,
        [this.instance],
      );
    } catch (error) {
      await session.end().catch(() => undefined);
      throw error;
    }
    session.on('error', (e) => this.sessionLost(session, e.message));
    session.on('end', () => this.sessionLost(session, 'the connection ended'));
    this.session = session;
  }

  /** The session is the leases: once it ends, every lease is someone else's to take. */
  private sessionLost(session: Client, why: string): void {
    if (this.session !== session || this.sessionGone.has(session)) return;
    this.sessionGone.add(session);
    this.held.clear();
    for (const listener of this.lostListeners) listener();
    if (this.closed) return;
    this.opts.log.error(`coordination session lost (${why}): this instance drives no rollout until it is back`);
    this.scheduleReconnect();
  }

  async confirmLeases(): Promise<boolean> {
    const session = this.session;
    if (this.sessionGone.has(session)) return false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), LEASE_CONFIRM_MS)));
    try {
      // A session the server still has still holds its advisory locks: no other instance can.
      const answer = await Promise.race([serially(session, 'SELECT 1'), late]);
      if (answer !== 'late') return this.session === session;
      this.sessionLost(session, `it did not answer within ${LEASE_CONFIRM_MS} ms`);
      // Not awaited: a connection cut off may never close cleanly. Ending it lets the server
      // drop the locks as soon as it hears, if it has not already.
      void session.end().catch(() => undefined);
      return false;
    } catch (error) {
      this.sessionLost(session, (error as Error).message);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.openSession().catch((e: Error) => {
        this.opts.log.warn(`coordination: cannot open a session again: ${e.message}`);
        this.scheduleReconnect();
      });
    }, RECONNECT_MS);
  }

  async claim(rolloutId: string): Promise<boolean> {
    if (this.held.has(rolloutId)) return true;
    const session = this.session;
    const { rows } = await serially<{ ok: boolean }>(
      session,
      'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok',
      [rolloutLockKey(rolloutId)],
    );
    const ok = rows[0]?.ok === true && this.session === session;
    if (ok) this.held.add(rolloutId);
    return ok;
  }

  async release(rolloutId: string): Promise<void> {
    if (!this.held.delete(rolloutId)) return;
    await serially(this.session, 'SELECT pg_advisory_unlock(hashtextextended($1, 0))', [rolloutLockKey(rolloutId)]);
  }

  async holderOf(rolloutId: string): Promise<string | undefined> {
    const { rows } = await serially<{ instance: string }>(
      this.reader,
      `SELECT i.instance FROM pg_locks l
         JOIN dispatcher_instances i ON i.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)`,
      [rolloutLockKey(rolloutId)],
    );
    return rows[0]?.instance;
  }

  onLeasesLost(listener: () => void): void {
    this.lostListeners.push(listener);
  }

  async recordAnswer(answer: CommandAnswer): Promise<void> {
    await serially(
      this.reader,
      `INSERT INTO dispatcher_command_answers (command_id, instance, outcome, stage, error)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id) DO NOTHING`,
      [answer.commandId, this.instance, answer.outcome, answer.stage, answer.error],
    );
  }

  async answerOf(commandId: string): Promise<CommandAnswer | undefined> {
    const { rows } = await serially<{ outcome: number; stage: string; error: string }>(
      this.reader,
      'SELECT outcome, stage, error FROM dispatcher_command_answers WHERE command_id = $1',
      [commandId],
    );
    const row = rows[0];
    return row && { commandId, outcome: row.outcome, stage: row.stage, error: row.error };
  }

  agentAttached(hostId: string, at: number): void {
    this.pending.set(hostId, { connected: true, at });
  }

  agentDetached(hostId: string, at: number): void {
    this.pending.set(hostId, { connected: false, at });
  }

  elsewhere(hostId: string): PeerPresence | undefined {
    const row = this.presence.get(hostId);
    if (!row || row.instance === this.instance) return undefined;
    if (!row.connected) return { online: false, offlineSince: row.since };
    if (this.alive.has(row.instance)) return { online: true };
    return { online: false, offlineSince: Math.max(row.since, this.deadSince.get(row.instance) ?? row.since) };
  }

  *awayElsewhere(): Iterable<string> {
    yield* this.disconnected;
    for (const [instance, hosts] of this.connectedTo) if (!this.alive.has(instance)) yield* hosts;
  }

  private remember(hostId: string, row: PresenceRow): void {
    const before = this.presence.get(hostId);
    if (before) {
      this.disconnected.delete(hostId);
      this.connectedTo.get(before.instance)?.delete(hostId);
    }
    this.presence.set(hostId, row);
    if (row.instance === this.instance) return;
    if (!row.connected) this.disconnected.add(hostId);
    else {
      let hosts = this.connectedTo.get(row.instance);
      if (!hosts) this.connectedTo.set(row.instance, (hosts = new Set()));
      hosts.add(hostId);
    }
  }

  private flush(): Promise<void> {
    if (this.pending.size === 0) return this.flushing;
    const batch = [...this.pending];
    this.pending.clear();
    this.flushing = this.flushing.then(async () => {
      try {
        // An attach wins over any detach (the agent is here now, whenever the old instance noticed
        // its stream gone) and over an older attach; an instance detaches only its own streams.
        await serially(
          this.reader,
          `INSERT INTO dispatcher_agent_presence AS p (host_id, instance, connected, since, xid)
             SELECT h, $4, c, to_timestamp(t / 1000.0), pg_current_xact_id()
               FROM unnest($1::text[], $2::boolean[], $3::float8[]) AS u(h, c, t)
           ON CONFLICT (host_id) DO UPDATE
             SET instance = EXCLUDED.instance, connected = EXCLUDED.connected, since = EXCLUDED.since, xid = EXCLUDED.xid
           WHERE (EXCLUDED.connected AND (NOT p.connected OR EXCLUDED.since >= p.since))
              OR (NOT EXCLUDED.connected AND p.instance = EXCLUDED.instance AND EXCLUDED.since >= p.since)`,
          [batch.map(([h]) => h), batch.map(([, p]) => p.connected), batch.map(([, p]) => p.at), this.instance],
        );
      } catch (error) {
        // Kept for the next flush unless a newer change of the same host came meanwhile.
        for (const [h, p] of batch) if (!this.pending.has(h)) this.pending.set(h, p);
        this.opts.log.warn(`presence: ${(error as Error).message}`);
      }
    });
    return this.flushing;
  }

  private async poll(): Promise<void> {
    const instances = await serially<{ instance: string; alive: boolean }>(
      this.reader,
      `SELECT i.instance, a.pid IS NOT NULL AS alive FROM dispatcher_instances i
         LEFT JOIN pg_stat_activity a ON a.pid = i.pid AND a.backend_start = i.backend_start`,
    );
    const now = Date.now();
    this.alive.clear();
    for (const r of instances.rows) {
      if (r.alive) {
        this.alive.add(r.instance);
        this.deadSince.delete(r.instance);
      } else if (!this.deadSince.has(r.instance)) this.deadSince.set(r.instance, now);
    }
    // One statement, one snapshot: the rows written by transactions not older than the last
    // read's xmin, and this snapshot's xmin for the next read. A transaction still running now
    // has an xid at least that xmin, so whenever it commits, the next reads see its rows.
    const changed = await serially<{
      read_from: string;
      host_id: string | null;
      instance: string;
      connected: boolean;
      since: number;
    }>(
      this.reader,
      `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS read_from, p.host_id, p.instance, p.connected,
              (extract(epoch FROM p.since) * 1000)::float8 AS since
         FROM (SELECT 1) AS one
         LEFT JOIN dispatcher_agent_presence p ON p.xid >= $1::xid8`,
      [this.readFrom],
    );
    for (const r of changed.rows) {
      if (r.host_id === null) continue; // no row changed: the one line carries read_from alone
      this.remember(r.host_id, { instance: r.instance, connected: r.connected, since: Number(r.since) });
      this.presenceRowsRead += 1;
    }
    this.readFrom = changed.rows[0]?.read_from ?? this.readFrom;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.flushTimer);
    clearInterval(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    await this.flush().catch(() => undefined);
    await this.reader.end().catch(() => undefined);
    // Ending the session lets every lease go at once.
    await this.session.end().catch(() => undefined);
  }
}

const lastQuery = new WeakMap<Client, Promise<unknown>>();

/**
 * A query on a client once its previous one has answered: the flush, the poll and a lease's
 * confirmation come from separate timers, and pg has deprecated queuing queries itself.
 */
function serially<R extends QueryResultRow>(client: Client, text: string, params?: unknown[]): Promise<QueryResult<R>> {
  const run = (lastQuery.get(client) ?? Promise.resolve()).then(() => client.query<R>(text, params));
  lastQuery.set(
    client,
    run.catch(() => undefined),
  );
  return run;
}
