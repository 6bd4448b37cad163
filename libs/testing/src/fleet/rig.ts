// The real pieces a rollout needs, for the dispatcher's e2e tests and its benchmark: the built
// builder and dispatcher as child processes, a patch really compiled by the builder against a
// cached Debian kernel's headers (signed, published to the log, served by FetchArtifact), and
// plain gRPC clients for both services.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { builder, dispatcher, grpcServices, protoLoaderOptions, type GrpcServiceContract } from '@rebootless/contracts';
import { ChainStateFile } from '@rebootless/kafka';
import { livepatchSample } from '@rebootless/kernel-toolchain';

import { REPO_ROOT } from '../process';
export { REPO_ROOT };

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A built service (apps/<name>/dist/main.js) running as a child process. */
export class ServiceProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    env: Record<string, string>,
    nodeArgs: string[] = [],
  ) {
    const main = path.join(REPO_ROOT, 'apps', name, 'dist', 'main.js');
    if (!fs.existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !/^(BUILDER|DISPATCHER|LEDGER|AGENT)_/.test(key) && key !== 'REBOOTLESS_DATA_DIR',
      ),
    );
    this.child = spawn(process.execPath, [...nodeArgs, main], {
      cwd: REPO_ROOT,
      env: { ...inherited, NO_COLOR: '1', REBOOTLESS_INSECURE: 'true', LOG_FORMAT: 'text', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async waitFor(text: string | RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const seen = () => (typeof text === 'string' ? this.output.includes(text) : text.test(this.output));
    while (!seen()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`${this.name} exited before printing ${String(text)}:\n${this.output}`);
      }
      if (Date.now() > deadline)
        throw new Error(`${this.name}: no ${String(text)} within ${timeoutMs} ms:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    this.kill('SIGTERM');
    await this.exited;
  }
}

/**
 * Extra node arguments for a service from the environment, e.g. DISPATCHER_NODE_ARGS="--cpu-prof
 * --cpu-prof-dir=/tmp/prof" to see where its time goes (BUILDER_, LEDGER_ alike).
 */
function nodeArgs(variable: string): string[] {
  return (process.env[variable] ?? '').split(' ').filter(Boolean);
}

export interface ServiceEnv {
  topic: string;
  brokers: string;
  dataDir: string;
}

export async function startBuilder(
  env: ServiceEnv & { extra?: Record<string, string> },
): Promise<{ process: ServiceProcess; address: string; publicKey: Buffer }> {
  const address = `127.0.0.1:${await freePort()}`;
  const service = new ServiceProcess(
    'builder',
    {
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: env.dataDir,
      EVENTS_TOPIC: env.topic,
      KAFKA_BROKERS: env.brokers,
      BUILDER_WORKERS: '1',
      ...env.extra,
    },
    nodeArgs('BUILDER_NODE_ARGS'),
  );
  await service.waitFor(`builder ready on ${address}`);
  // The key the builder keeps in its data dir signs its manifests: agents pin it.
  const publicKey = new ChainStateFile(path.join(env.dataDir, 'chain'), 'builder').readKey().rawPublicKey;
  return { process: service, address, publicKey };
}

export async function startDispatcher(
  env: ServiceEnv & {
    address?: string;
    extra?: Record<string, string>;
    nodeArgs?: string[];
    /** How long it may take to read the log before it serves (default 60 s). */
    readyWithinMs?: number;
  },
): Promise<{ process: ServiceProcess; address: string }> {
  const address = env.address ?? `127.0.0.1:${await freePort()}`;
  const service = new ServiceProcess(
    'dispatcher',
    {
      DISPATCHER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: env.dataDir,
      EVENTS_TOPIC: env.topic,
      KAFKA_BROKERS: env.brokers,
      DISPATCHER_TICK_INTERVAL_MS: '200',
      ...env.extra,
    },
    [...(env.nodeArgs ?? []), ...nodeArgs('DISPATCHER_NODE_ARGS')],
  );
  try {
    await service.waitFor(`dispatcher ready on ${address}`, env.readyWithinMs);
  } catch (error) {
    // Not left running behind the caller's back (it may be stuck before it handles SIGTERM).
    service.kill('SIGKILL');
    await service.exited;
    throw error;
  }
  return { process: service, address };
}

export async function startLedger(
  env: ServiceEnv & {
    address?: string;
    trustedDataDirs: string[];
    extra?: Record<string, string>;
    nodeArgs?: string[];
  },
): Promise<{ process: ServiceProcess; address: string }> {
  const address = env.address ?? `127.0.0.1:${await freePort()}`;
  const service = new ServiceProcess(
    'ledger',
    {
      LEDGER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: env.dataDir,
      EVENTS_TOPIC: env.topic,
      KAFKA_BROKERS: env.brokers,
      LEDGER_TRUSTED_DATA_DIRS: env.trustedDataDirs.join(','),
      ...env.extra,
    },
    [...(env.nodeArgs ?? []), ...nodeArgs('LEDGER_NODE_ARGS')],
  );
  await service.waitFor(`ledger ready on ${address}`);
  return { process: service, address };
}

/** Builder, dispatcher and ledger as real processes on one topic, wired to each other. */
export interface FleetServices {
  builder: ServiceProcess;
  builderAddress: string;
  /** The key the builder signs manifests with: what agents pin. */
  builderKey: Buffer;
  dispatcher: ServiceProcess;
  dispatcherAddress: string;
  ledger: ServiceProcess;
  ledgerAddress: string;
  dataDirs: { builder: string; dispatcher: string; ledger: string };
  stop(): Promise<void>;
}

/**
 * Starts the builder first (its key is known before anything that must pin it is built), then
 * the dispatcher (DISPATCHER_LEDGER_ADDRESS: Undo asks the ledger to plan) and the ledger on
 * SQLite, which vouches for the builder's and the dispatcher's chains by their data dirs.
 */
export async function startFleetServices(env: {
  topic: string;
  brokers: string;
  root: string;
  dispatcherExtra?: Record<string, string>;
  builderExtra?: Record<string, string>;
}): Promise<FleetServices> {
  const dataDirs = {
    builder: path.join(env.root, 'builder'),
    dispatcher: path.join(env.root, 'dispatcher'),
    ledger: path.join(env.root, 'ledger'),
  };
  const started: ServiceProcess[] = [];
  const stop = async () => {
    for (const service of started.reverse()) await service.stop();
  };
  try {
    const builder = await startBuilder({
      topic: env.topic,
      brokers: env.brokers,
      dataDir: dataDirs.builder,
      extra: env.builderExtra,
    });
    started.push(builder.process);
    const ledgerAddress = `127.0.0.1:${await freePort()}`;
    const dispatcher = await startDispatcher({
      topic: env.topic,
      brokers: env.brokers,
      dataDir: dataDirs.dispatcher,
      // The dispatcher acts only on what a vouched producer sealed (ADR 0012): the builder's key.
      extra: {
        DISPATCHER_LEDGER_ADDRESS: ledgerAddress,
        DISPATCHER_TRUSTED_DATA_DIRS: dataDirs.builder,
        // Its agents fetch modules from its site cache, filled once from the builder (ADR 0026).
        DISPATCHER_BUILDER_ADDRESS: builder.address,
        ...env.dispatcherExtra,
      },
    });
    started.push(dispatcher.process);
    const ledger = await startLedger({
      topic: env.topic,
      brokers: env.brokers,
      dataDir: dataDirs.ledger,
      address: ledgerAddress,
      trustedDataDirs: [dataDirs.builder, dataDirs.dispatcher],
    });
    started.push(ledger.process);
    return {
      builder: builder.process,
      builderAddress: builder.address,
      builderKey: builder.publicKey,
      dispatcher: dispatcher.process,
      dispatcherAddress: dispatcher.address,
      ledger: ledger.process,
      ledgerAddress,
      dataDirs,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Stops the services, first keeping each one's output in <tmp>/rebootless-<label>-<service>.log for whoever reads a failure. */
export async function stopKeepingLogs(services: FleetServices | undefined, label: string): Promise<void> {
  if (!services) return;
  for (const name of ['builder', 'dispatcher', 'ledger'] as const) {
    fs.writeFileSync(path.join(os.tmpdir(), `rebootless-${label}-${name}.log`), services[name].output);
  }
  await services.stop();
}

// ---- gRPC clients -------------------------------------------------------------------------------

export type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** Plaintext by default; the demo passes TLS credentials (with an operator token) instead. */
export function serviceClient(
  contract: GrpcServiceContract,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): Client {
  const definition = protoLoader.loadSync(contract.protoPath, protoLoaderOptions);
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of [...contract.packageName.split('.'), contract.serviceName]) {
    node = (node as Record<string, unknown>)[part];
  }
  const Ctor = node as grpc.ServiceClientConstructor;
  return new Ctor(address, credentials, {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    // With TLS: the development certificates name localhost too, and a server name must not be an IP address.
    'grpc.ssl_target_name_override': 'localhost',
  }) as unknown as Client;
}

export function unary<T>(
  client: Client,
  method: string,
  request: unknown,
  timeoutMs = 30_000,
  metadata: grpc.Metadata = new grpc.Metadata(),
): Promise<T> {
  return new Promise((resolve, reject) => {
    (
      client[method] as (
        r: unknown,
        m: grpc.Metadata,
        o: grpc.CallOptions,
        cb: (e: grpc.ServiceError | null, v: T) => void,
      ) => void
    ).call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (error, value) =>
      error ? reject(error) : resolve(value),
    );
  });
}

/** Reads a server stream until `until` says stop (or it ends); returns what was read. */
export function readStream<T>(
  client: Client,
  method: string,
  request: unknown,
  until: (message: T) => boolean = () => false,
  timeoutMs = 120_000,
): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const call = (client[method] as (r: unknown) => grpc.ClientReadableStream<T>).call(client, request);
    const messages: T[] = [];
    const timer = setTimeout(() => {
      call.cancel();
      reject(
        new Error(`${method}: no end within ${timeoutMs} ms; last: ${JSON.stringify(messages.at(-1))?.slice(0, 2000)}`),
      );
    }, timeoutMs);
    call.on('data', (m: T) => {
      messages.push(m);
      if (until(m)) {
        clearTimeout(timer);
        call.cancel();
        resolve(messages);
      }
    });
    call.on('error', (e: grpc.ServiceError) => {
      clearTimeout(timer);
      if (e.code === grpc.status.CANCELLED) resolve(messages);
      else reject(e);
    });
    call.on('end', () => {
      clearTimeout(timer);
      resolve(messages);
    });
  });
}

export function rolloutClient(address: string): Client {
  return serviceClient(grpcServices.rollout, address);
}

// ---- a real patch ---------------------------------------------------------------------------------

export interface BuiltPatch {
  patchId: string;
  version: string;
  buildId: string;
  kernelReleases: string[];
  /** Release → the signed artifact's digest (what FetchArtifact serves). */
  artifacts: Record<string, string>;
  /** The module's name in the kernel (the builder names it after the patch and version). */
  moduleName: string;
  /** The build as it finished (each release's manifest, smoke test, diagnostics). */
  build?: builder.Build;
}

/**
 * Submits a livepatch module (it replaces cmdline_proc_show) and waits until the builder compiled,
 * signed, stored and published it for every release. The releases' headers must be in the
 * builder's kernel cache already for this to take seconds rather than a download.
 */
export async function buildPatch(
  builderAddress: string,
  options: {
    patchName: string;
    version?: string;
    kernelReleases: string[];
    timeoutMs?: number;
    /** What /proc/cmdline shows while the patch is live. Default "rebootless rollout". */
    replacementText?: string;
    /** The fix as a unified diff against the kernel source (klp-build), instead of module source. */
    unifiedDiff?: string;
    /** A cumulative patch: atomic replace of every older livepatch. */
    replace?: boolean;
    /** TLS (with an operator's token) when the builder serves TLS. */
    credentials?: grpc.ChannelCredentials;
  },
): Promise<BuiltPatch> {
  const { submitted, finished } = await submitBuild(builderAddress, options);
  const failed = finished.kernels.filter((k) => !k.artifactDigest);
  if (failed.length > 0) throw new Error(`build ${submitted.buildId} failed: ${JSON.stringify(finished.kernels)}`);
  return {
    patchId: submitted.patchId,
    version: options.version ?? '1.0.0',
    buildId: submitted.buildId,
    kernelReleases: options.kernelReleases,
    artifacts: Object.fromEntries(finished.kernels.map((k) => [k.kernelRelease, k.artifactDigest])),
    moduleName: finished.kernels[0]?.manifest?.moduleName ?? '',
    build: finished,
  };
}

/** SubmitBuild, then WatchBuild until it finishes: the build as it ended, failed or not. */
export async function submitBuild(
  builderAddress: string,
  options: Parameters<typeof buildPatch>[1],
): Promise<{ submitted: builder.SubmitBuildResponse; finished: builder.Build }> {
  const client = serviceClient(grpcServices.build, builderAddress, options.credentials);
  try {
    const moduleName = `lp_${options.patchName.replace(/[^a-z0-9]/gi, '_')}`.slice(0, 50);
    const submitted = await unary<builder.SubmitBuildResponse>(client, 'submitBuild', {
      patchName: options.patchName,
      version: options.version ?? '1.0.0',
      description: options.unifiedDiff
        ? 'rollout test patch built from a diff'
        : 'rollout test patch: /proc/cmdline shows a fixed text',
      cves: [{ id: 'CVE-2024-1086', severity: 3, cvssScore: '7.8' }],
      replace: options.replace ?? false,
      kernelReleases: options.kernelReleases,
      ...(options.unifiedDiff !== undefined
        ? { unifiedDiff: Buffer.from(options.unifiedDiff) }
        : {
            livepatchModuleSource: Buffer.from(
              livepatchSample({
                moduleName,
                replacementText: options.replacementText ?? 'rebootless rollout',
                replace: options.replace ?? false,
              }),
            ),
          }),
    });
    const updates = await readStream<builder.WatchBuildResponse>(
      client,
      'watchBuild',
      { buildId: submitted.buildId },
      (m) => !!m.finished,
      options.timeoutMs ?? 10 * 60_000,
    );
    const finished = updates.at(-1)?.finished;
    if (!finished) throw new Error(`build ${submitted.buildId} did not finish`);
    return { submitted, finished };
  } finally {
    client.close();
  }
}

/** The rollout as the dispatcher tells it. */
export function hostStates(rollout: dispatcher.Rollout): Map<string, dispatcher.HostRolloutState> {
  return new Map(rollout.waves.flatMap((w) => w.hosts.map((h) => [h.hostId, h.state] as const)));
}

// ---- metrics ---------------------------------------------------------------------------------------

/**
 * The samples of one metric a service's REBOOTLESS_METRICS_ADDRESS serves (Prometheus text), as an
 * operator's scrape sees them: each with its labels. `name` is the exported name, e.g.
 * rebootless_artifacts_served_total.
 */
export async function scrapeMetric(
  address: string,
  name: string,
): Promise<{ labels: Record<string, string>; value: number }[]> {
  const response = await fetch(`http://${address}/metrics`);
  if (!response.ok) throw new Error(`GET http://${address}/metrics: ${response.status}`);
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of (await response.text()).split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}
