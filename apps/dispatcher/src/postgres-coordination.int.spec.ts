// The rollout leases and the agents' presence on a real PostgreSQL (docs/adr/0025): what two
// dispatcher instances rely on, including a DBA's view that a session killed hard frees its leases.
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

describe("agents' presence", () => {
  it('tells the other instances where an agent is, and that it is offline once its instance is gone', async () => {
    const a = await open('presence-a');
    const b = await open('presence-b');
    a.agentAttached('web-01', Date.now());
    await until(() => b.elsewhere('web-01')?.online === true, 'b sees web-01 on a');
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
    b.agentAttached('web-02', t);
    await until(() => a.elsewhere('web-02')?.online === true, 'a sees web-02 on b');

    // b dies: its agents are offline from when a noticed.
    const before = Date.now();
    await killSessionsOf('presence-b');
    await until(() => a.elsewhere('web-01')?.online === false, 'a sees web-01 offline');
    expect(a.elsewhere('web-01')?.offlineSince).toBeGreaterThanOrEqual(before - 1_000);
  });
});
