// The rollout leases and the agents' presence on a real PostgreSQL (docs/adr/0025): what two
// dispatcher instances rely on, including a DBA's view that a session killed hard frees its leases.
import * as net from 'node:net';
import { Client } from 'pg';
import { PostgresCoordination } from './postgres-coordination';

const PG_ADMIN = process.env['DATABASE_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASE = `rebootless_coordination_${process.pid}`;
let url: string;
const opened: PostgresCoordination[] = [];
const quiet = { warn: () => undefined, error: () => undefined };

async function admin<T>(work: (c: Client) => Promise<T>, to = PG_ADMIN): Promise<T> {
  const c = new Client({ connectionString: to });
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

async function open(instance: string): Promise<PostgresCoordination> {
  const c = await PostgresCoordination.open({ instance, databaseUrl: url, log: quiet });
  opened.push(c);
  return c;
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Ends an instance's sessions from the server side, as a crash or a DBA's pg_terminate_backend would. */
async function killSessionsOf(instance: string): Promise<void> {
  await admin(
    (c) =>
      c.query(
        `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a
          WHERE a.datname = $1 AND a.pid IN (SELECT pid FROM dispatcher_instances WHERE instance = $2)`,
        [DATABASE, instance],
      ),
    url,
  );
}

/** A TCP relay to PostgreSQL that can stop relaying without closing anything, as a cut network does. */
class CuttableLink {
  cut = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor(to: URL) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(to.port || 5432), to.hostname);
      for (const [from, into] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(from);
        from.on('data', (d) => {
          if (!this.cut) into.write(d);
        });
        from.on('end', () => {
          if (!this.cut) into.end();
        });
        from.on('error', () => into.destroy());
      }
    });
  }

  static async open(to: URL): Promise<CuttableLink> {
    const link = new CuttableLink(to);
    await new Promise<void>((r) => link.server.listen(0, '127.0.0.1', r));
    return link;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

beforeAll(async () => {
  await admin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${DATABASE}`);
  });
  const u = new URL(PG_ADMIN);
  u.pathname = `/${DATABASE}`;
  url = u.toString();
});

afterAll(async () => {
  for (const c of opened) await c.close();
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`));
});

describe('rollout leases', () => {
  it('are held by one instance at a time, named to the others, and taken over once given back', async () => {
    const a = await open('lease-a');
    const b = await open('lease-b');
    expect(await a.claim('r1')).toBe(true);
    expect(await a.claim('r1')).toBe(true);
    expect(await b.claim('r1')).toBe(false);
    expect(await b.holderOf('r1')).toBe('lease-a');
    expect(await b.claim('r2')).toBe(true);

    await a.release('r1');
    expect(await b.claim('r1')).toBe(true);
    expect(await a.claim('r1')).toBe(false);
  });

  it('go with the session that held them: a killed instance frees them at once, and hears it lost them', async () => {
    const a = await open('kill-a');
    const b = await open('kill-b');
    let lost = 0;
    a.onLeasesLost(() => (lost += 1));
    expect(await a.claim('r3')).toBe(true);
    expect(await b.claim('r3')).toBe(false);

    await killSessionsOf('kill-a');
    await until(() => lost > 0, 'instance a hears its leases are lost');
    expect(await b.claim('r3')).toBe(true);
    // Once its session is back, it holds nothing it had, and cannot take what b took.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await a.claim('r3')).toBe(false);
  });

  it('refuse a second live instance of the same name', async () => {
    await open('twin');
    await expect(open('twin')).rejects.toThrow('another live dispatcher is instance "twin"');
  });
});

describe('an instance cut off from the database', () => {
  it('learns before its next write that its leases are gone, though no connection closed', async () => {
    // Given instance a, connected through a link that can be cut, driving a rollout, and b beside it
    const link = await CuttableLink.open(new URL(url));
    const via = new URL(url);
    via.hostname = '127.0.0.1';
    via.port = String(link.port);
    const a = await PostgresCoordination.open({ instance: 'cut-a', databaseUrl: via.toString(), log: quiet });
    const b = await open('cut-b');
    let lost = 0;
    a.onLeasesLost(() => (lost += 1));
    try {
      expect(await a.claim('r-cut')).toBe(true);
      expect(await a.confirmLeases()).toBe(true);
      expect(await b.claim('r-cut')).toBe(false);
      // When the network between a and the database is cut and the database ends a's session
      // (its keepalive, or a DBA): a hears nothing of it
      link.cut = true;
      await killSessionsOf('cut-a');
      let taken = false;
      for (let i = 0; i < 100 && !taken; i++) {
        taken = await b.claim('r-cut');
        if (!taken) await new Promise((r) => setTimeout(r, 50));
      }
      // Then b drives the rollout, and a, asked before its next write, holds nothing
      expect(taken).toBe(true);
      expect(lost).toBe(0);
      expect(await a.confirmLeases()).toBe(false);
      expect(lost).toBe(1);
      expect(await a.confirmLeases()).toBe(false);
    } finally {
      link.close();
      await a.close();
    }
  });
});

describe("agents' presence", () => {
  it('tells the other instances where an agent is, and that it is offline once its instance is gone', async () => {
    const a = await open('presence-a');
    const b = await open('presence-b');
    // The hosts a decider asks about for silence: those elsewhere() may call offline, and no others.
    const away = (c: PostgresCoordination) => [...c.awayElsewhere()].sort();
    a.agentAttached('web-01', Date.now());
    await until(() => b.elsewhere('web-01')?.online === true, 'b sees web-01 on a');
    expect(away(b)).toEqual([]);
    // An instance does not count its own agents as elsewhere.
    expect(a.elsewhere('web-01')).toBeUndefined();

    // The agent moves to b; a's late detach of its old stream does not undo that.
    b.agentAttached('web-01', Date.now());
    a.agentDetached('web-01', Date.now() + 1);
    await new Promise((r) => setTimeout(r, 600));
    const rows = await admin(
      (c) =>
        c.query<{ instance: string; connected: boolean }>(
          "SELECT instance, connected FROM dispatcher_agent_presence WHERE host_id = 'web-01'",
        ),
      url,
    );
    expect(rows.rows).toEqual([{ instance: 'presence-b', connected: true }]);
    await until(() => a.elsewhere('web-01')?.online === true, 'a sees web-01 on b');

    // The other order: the old instance's late detach is written first, then the new attach (older by the clock).
    const t = Date.now();
    a.agentAttached('web-02', t - 10);
    await until(() => b.elsewhere('web-02')?.online === true, 'b sees web-02 on a');
    a.agentDetached('web-02', t + 5);
    await until(() => b.elsewhere('web-02')?.online === false, 'b sees web-02 gone from a');
    expect(away(b)).toEqual(['web-02']);
    b.agentAttached('web-02', t);
    await until(() => a.elsewhere('web-02')?.online === true, 'a sees web-02 on b');
    expect(away(a)).toEqual([]);

    // b dies: its agents are offline from when a noticed.
    const before = Date.now();
    await killSessionsOf('presence-b');
    await until(() => a.elsewhere('web-01')?.online === false, 'a sees web-01 offline');
    expect(a.elsewhere('web-01')?.offlineSince).toBeGreaterThanOrEqual(before - 1_000);
    expect(away(a)).toEqual(['web-01', 'web-02']);
  });

  it('sees a change whose transaction commits after a later one was read (no full reread to wait for)', async () => {
    const reader = await open('order-reader');
    await open('order-writer'); // the live instance the rows below are written as
    // Given a writer whose transaction began first and is still open when another commits
    const slow = new Client({ connectionString: url });
    await slow.connect();
    const write = (c: Client, host: string) =>
      c.query(
        `INSERT INTO dispatcher_agent_presence (host_id, instance, connected, since, xid)
           VALUES ($1, 'order-writer', true, now(), pg_current_xact_id())`,
        [host],
      );
    try {
      await slow.query('BEGIN');
      await write(slow, 'late-01');
      await admin((c) => write(c, 'early-01'), url);
      // When the reader has read the one committed, and only then the first commits
      await until(() => reader.elsewhere('early-01')?.online === true, 'the reader sees early-01');
      await new Promise((r) => setTimeout(r, 600));
      expect(reader.elsewhere('late-01')).toBeUndefined();
      await slow.query('COMMIT');
      // Then its row is read within a few polls (a sequence number would have put it behind early-01)
      await until(() => reader.elsewhere('late-01')?.online === true, 'the reader sees late-01', 1_500);
    } finally {
      await slow.end();
    }
  });

  it('reads again only what changed: polls with nothing new read no row', async () => {
    const reader = await open('quiet-reader');
    const writer = await open('quiet-writer');
    for (let i = 0; i < 500; i++) writer.agentAttached(`quiet-${i}`, Date.now());
    await until(() => reader.elsewhere('quiet-499')?.online === true, 'the reader sees the 500 agents');
    await new Promise((r) => setTimeout(r, 500));
    // When nothing changes for six seconds (24 polls; the old reader read every row every 5 s)
    const before = reader.presenceRowsRead;
    await new Promise((r) => setTimeout(r, 6_000));
    // Then not one of the 500 rows was read again
    expect(reader.presenceRowsRead - before).toBe(0);
    writer.agentDetached('quiet-7', Date.now());
    await until(() => reader.elsewhere('quiet-7')?.online === false, 'the reader sees quiet-7 gone');
    expect(reader.presenceRowsRead - before).toBeLessThan(10);
  });
});
