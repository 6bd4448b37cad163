// scripts/kafka.mjs as a developer runs it: real processes, real ports, a real broker.
// Timeouts are set per test: jest.config.js's per-project testTimeout is not a project option in Jest 29.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const script = path.join(repoRoot, 'scripts', 'kafka.mjs');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

/** Runs `node scripts/kafka.mjs <args> --json` without the KAFKA_BROKERS the global setup exported. */
function kafkaCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv['KAFKA_BROKERS'];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args, '--json'], { cwd: repoRoot, env: childEnv });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        // asserted by the tests
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

async function listen(): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
const portOf = (server: net.Server) => (server.address() as net.AddressInfo).port;
const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('scripts/kafka.mjs', () => {
  let tmp: string;
  let spare: net.Server[];

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kafka-cli-spec-'));
    spare = [await listen(), await listen()];
  });
  afterEach(async () => {
    await Promise.all(spare.map(close));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Two ports that were free a moment ago (released just before use). */
  async function freePorts(): Promise<[number, number]> {
    const [first, second] = spare.map(portOf);
    if (first === undefined || second === undefined) throw new Error('freePorts() may be called once per test');
    const ports: [number, number] = [first, second];
    await Promise.all(spare.map(close));
    spare = [];
    return ports;
  }

  it.each([
    ['KAFKA_PORT', 0],
    ['KAFKA_CONTROLLER_PORT', 1],
  ] as const)(
    'refuses to start when %s is taken, naming the port',
    async (variable, taken) => {
      // Given another process listens on the broker (or controller) port
      const occupied = await listen();
      const [free] = await freePorts();
      const ports = taken === 0 ? [portOf(occupied), free] : [free, portOf(occupied)];
      try {
        // When the script is asked to start a broker there
        const result = await kafkaCli(['start'], {
          KAFKA_PORT: String(ports[0]),
          KAFKA_CONTROLLER_PORT: String(ports[1]),
          KAFKA_DATA_DIR: path.join(tmp, 'data'),
        });

        // Then it exits non-zero, naming the taken port and its variable, and starts nothing
        expect(result.code).not.toBe(0);
        expect(result.stderr).toContain(`port ${portOf(occupied)} on 127.0.0.1 is already in use (${variable})`);
        expect(result.json).toEqual({ ok: false, error: expect.stringContaining(`port ${portOf(occupied)}`) });
        expect(fs.existsSync(path.join(tmp, 'data', 'kafka.pid'))).toBe(false);
      } finally {
        await close(occupied);
      }
    },
    30_000,
  );

  it('names java when it is not on PATH', async () => {
    // Given a PATH without java
    const [port, controllerPort] = await freePorts();
    // When the script is asked to start a broker
    const result = await kafkaCli(['start'], {
      PATH: tmp,
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(controllerPort),
      KAFKA_DATA_DIR: path.join(tmp, 'data'),
    });
    // Then it fails saying java is missing
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('java not found on PATH');
  }, 30_000);

  it('names mvn when the jars must be fetched and Maven is not on PATH', async () => {
    // Given a PATH with java but without mvn, and an empty jar cache
    const javaDir = path.join(tmp, 'bin');
    fs.mkdirSync(javaDir);
    const java = (process.env['PATH'] ?? '')
      .split(path.delimiter)
      .map((dir) => path.join(dir, 'java'))
      .find((candidate) => fs.existsSync(candidate));
    if (!java) throw new Error('this test needs java on PATH');
    fs.symlinkSync(java, path.join(javaDir, 'java'));
    const [port, controllerPort] = await freePorts();
    // When the script is asked to start a broker
    const result = await kafkaCli(['start'], {
      PATH: javaDir,
      REBOOTLESS_KAFKA_CACHE: path.join(tmp, 'cache'),
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(controllerPort),
      KAFKA_DATA_DIR: path.join(tmp, 'data'),
    });
    // Then it fails saying mvn is missing
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('mvn not found on PATH');
  }, 30_000);

  it('starts a broker, finds it running, and stops it by PID', async () => {
    // Given free ports and an empty data dir
    const [port, controllerPort] = await freePorts();
    const env = {
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(controllerPort),
      KAFKA_DATA_DIR: path.join(tmp, 'data'),
    };
    try {
      // When it starts
      const start = await kafkaCli(['start'], env);
      // Then it serves on the port and reports the address to use
      expect(start.stderr).not.toContain('error');
      expect(start.code).toBe(0);
      expect(start.json).toMatchObject({
        ok: true,
        brokers: `127.0.0.1:${port}`,
        alreadyRunning: false,
        pid: expect.any(Number),
      });
      const properties = fs.readFileSync(path.join(tmp, 'data', 'server.properties'), 'utf8');
      expect(properties).toContain('auto.create.topics.enable=false');
      expect(properties).toContain('log.retention.ms=-1');

      // When it is started again and asked for its status
      const again = await kafkaCli(['start'], env);
      const status = await kafkaCli(['status'], env);
      // Then it says the broker is already running, and answering
      expect(again.json).toMatchObject({ ok: true, alreadyRunning: true, pid: start.json['pid'] });
      expect(status.json).toMatchObject({ ok: true, running: true, ready: true, pid: start.json['pid'], port });

      // When it is stopped
      const stop = await kafkaCli(['stop'], env);
      // Then the process is gone, with its PID file, and the port is free again
      expect(stop.json).toMatchObject({ ok: true, stopped: true, pid: start.json['pid'], forced: false });
      const reuse = net.createServer();
      await new Promise<void>((resolve, reject) => {
        reuse.once('error', reject);
        reuse.listen(port, '127.0.0.1', resolve);
      });
      await close(reuse);
      expect(fs.existsSync(path.join(tmp, 'data', 'kafka.pid'))).toBe(false);
      expect((await kafkaCli(['status'], env)).json).toMatchObject({ ok: true, running: false });

      // And stopping again quietly succeeds
      const twice = await kafkaCli(['stop'], env);
      expect(twice.code).toBe(0);
      expect(twice.json).toMatchObject({ ok: true, stopped: false });
    } finally {
      await kafkaCli(['stop'], env);
    }
  }, 120_000);
});
