// Each service as an operator runs it: the built dist/main.js as a child process, reached over a
// real socket. Build first (`npx tsc -b`); this test does not build.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { grpcServices, protoLoaderOptions, type GrpcServiceContract } from '@rebootless/contracts';
import { ChainVerifier, StaticKeyTrust, decodeEvent } from '@rebootless/events';
import { ChainStateFile } from '@rebootless/kafka';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';

const REPO_ROOT = resolve(__dirname, '../../..');
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const EX_CONFIG = 78;

// Each test waits on real processes; these bounds say when to give up, they measure nothing.
jest.setTimeout(60_000);

interface AppUnderTest {
  readonly name: string;
  readonly envPrefix: string;
  readonly services: readonly GrpcServiceContract[];
}

const APPS: readonly AppUnderTest[] = [
  { name: 'builder', envPrefix: 'BUILDER', services: [grpcServices.build] },
  { name: 'dispatcher', envPrefix: 'DISPATCHER', services: [grpcServices.rollout, grpcServices.agentGateway] },
  { name: 'ledger', envPrefix: 'LEDGER', services: [grpcServices.ledger] },
  // Not the agent: it does not boot through bootService. It must start and work with Kafka
  // unreachable (its events wait in its own outbox) and signs its own chain as agent/<host>;
  // apps/agent/src/agent.e2e.spec.ts tests it as a process (docs/adr/0006-agent.md).
];

/** The producer id each service signs as (the agent speaks for its host). */
const producerOf = (app: AppUnderTest) => (app.name === 'agent' ? 'agent/e2e-host' : app.name);

// Every service process in this file writes to one fresh topic, so runs never see each other.
let topic: string;
beforeAll(async () => {
  topic = await freshEventsTopic('services', 3);
});

function fullName(service: GrpcServiceContract): string {
  return `${service.packageName}.${service.serviceName}`;
}

function mainOf(app: AppUnderTest): string {
  return join(REPO_ROOT, 'apps', app.name, 'dist', 'main.js');
}

// ---- a service as a child process -------------------------------------------------------

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

class ServiceProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private readonly child: ChildProcess;

  constructor(app: AppUnderTest, env: Record<string, string>) {
    // Inherit the runner's environment (KAFKA_BROKERS from the global setup, PATH...) but not
    // any listen address of our own that would clash with the one under test.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !key.startsWith(`${app.envPrefix}_GRPC_`) && key !== 'REBOOTLESS_DATA_DIR' && key !== 'LOG_FORMAT',
      ),
    );
    this.child = spawn(process.execPath, [mainOf(app)], {
      cwd: REPO_ROOT,
      env: {
        ...inherited,
        NO_COLOR: '1',
        EVENTS_TOPIC: topic,
        AGENT_HOST_ID: 'e2e-host',
        REBOOTLESS_INSECURE: 'true',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolveExit) => this.child.on('exit', (code, signal) => resolveExit({ code, signal })));
  }

  get output(): string {
    return `--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitForStdout(text: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(text)) {
      if (!this.running) throw new Error(`exited before printing "${text}"\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms\n${this.output}`);
      await sleep(50);
    }
  }

  async waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running ${timeoutMs} ms later\n${this.output}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

function listenOn(port: number): Promise<NetServer> {
  return new Promise((resolveListen, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolveListen(server));
  });
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolveClose) => server.close(() => resolveClose()));
}

async function freePort(): Promise<number> {
  const server = await listenOn(0);
  const address = server.address();
  await closeServer(server);
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

// ---- gRPC clients -----------------------------------------------------------------------

const healthPackage = grpc.loadPackageDefinition(
  protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true }),
) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };

function healthClient(address: string): InstanceType<grpc.ServiceClientConstructor> {
  return new healthPackage.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
}

function healthCheck(address: string, service: string): Promise<string> {
  const client = healthClient(address);
  return new Promise<string>((resolveCheck, reject) => {
    client['check']!({ service }, (error: grpc.ServiceError | null, response: { status: string }) => {
      client.close();
      if (error) reject(error);
      else resolveCheck(response.status);
    });
  });
}

const serviceDefinitions = protoLoader.loadSync(
  Object.values(grpcServices).map((service) => service.protoPath),
  protoLoaderOptions,
);

/** Calls the service's first RPC with an empty request; resolves with the status it ends with. */
function callFirstRpc(address: string, serviceName: string): Promise<{ method: string; code: grpc.status }> {
  const definition = serviceDefinitions[serviceName] as protoLoader.ServiceDefinition | undefined;
  if (!definition) throw new Error(`${serviceName} is not in the loaded protos`);
  const [method, rpc] = Object.entries(definition)[0] ?? [];
  if (!method || !rpc) throw new Error(`${serviceName} has no RPCs`);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolveCall) => {
    const done = (error: grpc.ServiceError | null) => {
      client.close();
      resolveCall({ method, code: error ? error.code : grpc.status.OK });
    };
    const serialize = rpc.requestSerialize;
    const deserialize = rpc.responseDeserialize;
    if (!rpc.requestStream && !rpc.responseStream) {
      client.makeUnaryRequest(rpc.path, serialize, deserialize, {}, (error) => done(error));
    } else if (!rpc.requestStream) {
      const call = client.makeServerStreamRequest(rpc.path, serialize, deserialize, {});
      call.on('data', () => undefined);
      call.on('error', done);
      call.on('end', () => done(null));
    } else if (!rpc.responseStream) {
      const call = client.makeClientStreamRequest(rpc.path, serialize, deserialize, (error) => done(error));
      call.end();
    } else {
      const call = client.makeBidiStreamRequest(rpc.path, serialize, deserialize);
      call.on('data', () => undefined);
      call.on('error', done);
      call.on('end', () => done(null));
      call.write({});
      call.end();
    }
  });
}

// ---- the tests ----------------------------------------------------------------------------

beforeAll(() => {
  const missing = APPS.map(mainOf).filter((main) => !existsSync(main));
  if (missing.length > 0) {
    throw new Error(`not built: ${missing.join(', ')}. Run \`npx tsc -b\` before the e2e tests.`);
  }
});

describe.each(APPS)('the $name service', (app) => {
  let service: ServiceProcess;
  let port: number;
  let dataDir: string;
  let address: string;

  beforeAll(async () => {
    port = await freePort();
    address = `127.0.0.1:${port}`;
    dataDir = mkdtempSync(join(tmpdir(), `rebootless-${app.name}-`));
    service = new ServiceProcess(app, {
      [`${app.envPrefix}_GRPC_PORT`]: String(port),
      REBOOTLESS_DATA_DIR: join(dataDir, 'state'),
    });
    await service.waitForStdout(`${app.name} ready on ${address}`, READY_TIMEOUT_MS);
  });

  afterAll(async () => {
    if (service?.running) {
      service.signal('SIGKILL');
      await service.exited;
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates its data directory', () => {
    expect(existsSync(join(dataDir, 'state'))).toBe(true);
  });

  it('reports SERVING on the standard health service, for the server and for each of its services', async () => {
    const names = ['', ...app.services.map(fullName)];
    const statuses = await Promise.all(names.map((name) => healthCheck(address, name)));

    expect(Object.fromEntries(names.map((name, i) => [name, statuses[i]]))).toEqual(
      Object.fromEntries(names.map((name) => [name, 'SERVING'])),
    );
  });

  // Every service checks its input: an empty request is refused as invalid.
  it.each(app.services.map(fullName))(
    'answers an empty call to the first RPC of %s with INVALID_ARGUMENT',
    async (name) => {
      const { method, code } = await callFirstRpc(address, name);

      expect({ method, code: grpc.status[code] }).toEqual({ method, code: 'INVALID_ARGUMENT' });
    },
  );

  it('stops with exit code 0 on SIGTERM and frees its port', async () => {
    service.signal('SIGTERM');
    const exit = await service.waitForExit(STOP_TIMEOUT_MS);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(service.stdout).toContain(`${app.name} stopped`);
    await closeServer(await listenOn(port));
  });

  it('wrote its run into the event log: a new signed chain with ServiceStarted and ServiceStopped', async () => {
    // The key the service keeps in its data dir is the one an operator vouches for.
    const files = new ChainStateFile(join(dataDir, 'state', 'chain'), producerOf(app));
    const key = files.readKey();
    const all = await readWholeTopic(testKafka(), topic);
    const records = all.filter((r) => decodeEvent(r.value!).body.producer?.producerId === producerOf(app));
    const verifier = new ChainVerifier(new StaticKeyTrust().vouch(producerOf(app), key.rawPublicKey));
    records.forEach((r) => verifier.ingest(r.value, { partition: r.partition, offset: r.offset }));
    const report = verifier.finish();

    expect(report.findings).toEqual([]);
    const bodies = records
      .map((r) => decodeEvent(r.value!).body)
      .sort((a, b) => Number(a.producer!.seq) - Number(b.producer!.seq));
    expect(bodies.map((b) => b.type)).toEqual(['ChainEpochStarted', 'ServiceStarted', 'ServiceStopped']);
    expect(bodies[1]!.serviceStarted).toMatchObject({ service: app.name, listenAddress: address });
    expect(bodies[2]!.serviceStopped).toMatchObject({ service: app.name, reason: 'SIGTERM' });
    expect(bodies.every((b) => b.actor?.id === app.name)).toBe(true);
  });
});

describe('a service whose event log is missing', () => {
  const app = APPS[0]!;

  it('exits 69 naming the topic when it does not exist', async () => {
    const service = new ServiceProcess(app, {
      [`${app.envPrefix}_GRPC_PORT`]: String(await freePort()),
      EVENTS_TOPIC: 'no.such.topic',
    });
    const exit = await service.waitForExit(READY_TIMEOUT_MS);

    expect(exit.code).toBe(69);
    expect(service.stderr).toContain('topic no.such.topic (EVENTS_TOPIC) does not exist');
  });

  it('exits 69 naming the brokers when Kafka cannot be reached', async () => {
    const nobody = await freePort();
    const service = new ServiceProcess(app, {
      [`${app.envPrefix}_GRPC_PORT`]: String(await freePort()),
      KAFKA_BROKERS: `127.0.0.1:${nobody}`,
    });
    const exit = await service.waitForExit(READY_TIMEOUT_MS);

    expect(exit.code).toBe(69);
    expect(service.stderr).toContain(`cannot reach Kafka at 127.0.0.1:${nobody} (KAFKA_BROKERS)`);
  });
});

describe.each(APPS)('the $name service, misconfigured', (app) => {
  it(`exits ${EX_CONFIG} when transport security is not settled: no pki directory and no explicit insecure setting`, async () => {
    const service = new ServiceProcess(app, {
      [`${app.envPrefix}_GRPC_PORT`]: String(await freePort()),
      REBOOTLESS_INSECURE: '',
    });
    const exit = await service.waitForExit(READY_TIMEOUT_MS);

    expect(exit.code).toBe(EX_CONFIG);
    expect(service.stderr).toContain(
      'REBOOTLESS_PKI_DIR is not set: expected a pki directory (create one with: node scripts/pki.mjs init), or REBOOTLESS_INSECURE=true for plaintext',
    );
  });

  it(`exits ${EX_CONFIG} naming the bad variable, its value and what is expected`, async () => {
    const service = new ServiceProcess(app, { [`${app.envPrefix}_GRPC_PORT`]: 'abc', LOG_LEVEL: 'loud' });
    const exit = await service.waitForExit(READY_TIMEOUT_MS);

    expect(exit.code).toBe(EX_CONFIG);
    expect(service.stderr).toContain(`${app.name}: configuration error:`);
    expect(service.stderr).toContain(`${app.envPrefix}_GRPC_PORT="abc": expected a TCP port 1-65535`);
    expect(service.stderr).toContain('LOG_LEVEL="loud": expected one of');
  });

  it('exits non-zero naming the address when its port is taken', async () => {
    const port = await freePort();
    const squatter = await listenOn(port);
    const dataDir = mkdtempSync(join(tmpdir(), `rebootless-${app.name}-`));
    try {
      const service = new ServiceProcess(app, {
        [`${app.envPrefix}_GRPC_PORT`]: String(port),
        REBOOTLESS_DATA_DIR: dataDir,
      });
      const exit = await service.waitForExit(READY_TIMEOUT_MS);

      expect(exit.code).not.toBe(0);
      expect(exit.code).not.toBeNull();
      expect(service.stderr).toContain(`cannot listen on 127.0.0.1:${port}`);
      expect(service.stderr).toContain(`${app.envPrefix}_GRPC_PORT`);
    } finally {
      await closeServer(squatter);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('stopping while a client holds a stream open', () => {
  const app = APPS.find((candidate) => candidate.name === 'ledger')!;

  it('tells health watchers NOT_SERVING at once, and a second SIGTERM exits 1 without waiting for the drain', async () => {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const dataDir = mkdtempSync(join(tmpdir(), `rebootless-${app.name}-`));
    const service = new ServiceProcess(app, {
      [`${app.envPrefix}_GRPC_PORT`]: String(port),
      REBOOTLESS_DATA_DIR: dataDir,
    });
    const client = healthClient(address);
    try {
      await service.waitForStdout(`${app.name} ready on ${address}`, READY_TIMEOUT_MS);
      const seen: string[] = [];
      const watch: grpc.ClientReadableStream<{ status: string }> = client['watch']!({ service: '' });
      watch.on('data', (response: { status: string }) => seen.push(response.status));
      watch.on('error', () => undefined);
      await until(() => seen.includes('SERVING'), 'watch reports SERVING', READY_TIMEOUT_MS);

      service.signal('SIGTERM');
      await until(() => seen.includes('NOT_SERVING'), 'watch reports NOT_SERVING', STOP_TIMEOUT_MS);
      // The open Watch stream holds the drain, so the service is still stopping.
      expect(service.running).toBe(true);
      service.signal('SIGTERM');
      const exit = await service.waitForExit(STOP_TIMEOUT_MS);

      expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
      expect(exit).toEqual({ code: 1, signal: null });
      expect(service.stderr).toContain('SIGTERM while stopping, exiting now');
    } finally {
      client.close();
      if (service.running) service.signal('SIGKILL');
      await service.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
