// Tracing as an operator's collector sees it: the built builder runs as a real process (Jest's
// module sandbox would stop the instrumentations from patching anything) and exports OTLP, in
// the default encoding (http/protobuf), to a receiver this test runs. A SubmitBuild call carries
// a traceparent the test made up, as a caller's client span would; the whole build then has to
// be one trace: the builder's gRPC server span under the caller's span, its Kafka producer
// spans, `build kernel` and `build compile`, and the traceparent written into each event's
// Kafka record headers naming the producer span that sent it.
// Build first (`npm run build`); the kernel headers come from Debian's archive into the shared
// cache on the first run, as in apps/builder's e2e test.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { builder, events, grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { readEnvelope } from '@rebootless/events';
import { kafkaBrokersFromEnv } from '@rebootless/kafka';
import { currentDebianCloudRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import {
  OtlpReceiver,
  REPO_ROOT,
  TraceView,
  builtEntry,
  describeSpan,
  freshEventsTopic,
  readWholeTopic,
  startNode,
  testKafka,
  type ReceivedSpan,
  type RunningProcess,
} from '@rebootless/testing';

// The first run downloads the release's header packages; a compile takes a minute on a busy machine.
jest.setTimeout(12 * 60_000);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

const definitions = protoLoader.loadSync(grpcServices.build.protoPath, protoLoaderOptions);
const { BuildService } = (
  grpc.loadPackageDefinition(definitions)['rebootless'] as unknown as {
    builder: { v1: { BuildService: grpc.ServiceClientConstructor } };
  }
).builder.v1;

describe('tracing across the builder process, gRPC and Kafka', () => {
  let receiver: OtlpReceiver;
  let topic: string;
  let dataDir: string;
  let address: string;
  let service: RunningProcess;
  let client: InstanceType<grpc.ServiceClientConstructor>;
  let release: string;
  /** What the first test saw sent, for the consumer test: event type → its producer span. */
  let build: { traceId: string; buildId: string; sentBy: Map<string, ReceivedSpan> } | undefined;

  beforeAll(async () => {
    const main = builtEntry('apps/builder/dist/main.js');
    [receiver, topic, release] = await Promise.all([
      OtlpReceiver.start(),
      freshEventsTopic('telemetry', 3),
      currentDebianCloudRelease(),
    ]);
    dataDir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-telemetry-e2e-'));
    address = `127.0.0.1:${await freePort()}`;
    service = startNode(main, {
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: dataDir,
      EVENTS_TOPIC: topic,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      // Spans leave in small batches, so the test does not wait the default 5 s for each.
      OTEL_BSP_SCHEDULE_DELAY: '200',
      NO_COLOR: '1',
    });
    await service.waitFor(new RegExp(`builder ready on ${address.replace(/\./g, '\\.')}`), 30_000);
    client = new BuildService(address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    if (service && service.child.exitCode === null) {
      service.child.kill('SIGTERM');
      await service.exited();
    }
    await receiver?.close();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('makes one build one trace: caller → SubmitBuild server span → producer spans, build kernel, build compile; Kafka headers carry it', async () => {
    // The caller's client span: made up here, sent as W3C trace context in the gRPC metadata.
    const traceId = randomBytes(16).toString('hex');
    const callerSpanId = randomBytes(8).toString('hex');
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${callerSpanId}-01`);

    const submitted = await new Promise<builder.SubmitBuildResponse>((resolve, reject) =>
      client['submitBuild'](
        {
          patchName: 'cmdline-trace',
          version: '1.0.0',
          description: 'reading /proc/cmdline shows a fixed text',
          cves: [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }],
          replace: false,
          kernelReleases: [release],
          livepatchModuleSource: Buffer.from(
            livepatchSample({ moduleName: 'lp_cmdline_trace', replacementText: 'traced' }),
          ),
        },
        metadata,
        (error: grpc.ServiceError | null, response: builder.SubmitBuildResponse) =>
          error ? reject(error) : resolve(response),
      ),
    );

    // The build's last events (BuildSucceeded, PatchPublished) are sent under "build kernel".
    const inTrace = (spans: readonly ReceivedSpan[]) => spans.filter((s) => s.traceId === traceId);
    const spans = inTrace(
      await receiver.waitFor(
        (all) =>
          inTrace(all).some((s) => s.name === 'build kernel') &&
          inTrace(all).filter((s) => s.kind === 'PRODUCER').length >= 3,
        10 * 60_000,
      ),
    );
    const view = new TraceView(receiver.spans(), traceId);
    const tree = view.describe();
    // Every span hangs from the caller's span, through spans this trace holds.
    expect({ orphans: view.orphans([callerSpanId]).map(describeSpan), tree }).toEqual({ orphans: [], tree });
    const only = (predicate: (s: ReceivedSpan) => boolean, what: string) => {
      const found = spans.filter(predicate);
      if (found.length !== 1) throw new Error(`expected one ${what} in the trace, found ${found.length}:\n${tree}`);
      return found[0]!;
    };

    expect(receiver.rejected).toEqual([]);
    expect(receiver.requests.every((r) => r.contentType === 'application/x-protobuf')).toBe(true);
    expect(spans.every((s) => s.service === 'builder')).toBe(true);

    const server = only((s) => s.kind === 'SERVER', 'gRPC server span');
    expect(server).toMatchObject({
      name: 'grpc.rebootless.builder.v1.BuildService/SubmitBuild',
      parentSpanId: callerSpanId,
      status: { code: 0 },
    });

    const buildKernel = only((s) => s.name === 'build kernel', '"build kernel" span');
    expect(buildKernel).toMatchObject({
      parentSpanId: server.spanId,
      attributes: {
        'rebootless.build.id': submitted.buildId,
        'rebootless.patch.id': 'cmdline-trace',
        'rebootless.kernel.release': release,
      },
    });

    const compile = only((s) => s.name === 'build compile', '"build compile" span');
    expect(compile).toMatchObject({
      parentSpanId: buildKernel.spanId,
      attributes: { 'rebootless.kernel.release': release, 'rebootless.module.name': 'lp_cmdline_trace__v1_0_0' },
      status: { code: 0 },
    });
    expect(compile.startTimeUnixNano).toBeGreaterThanOrEqual(buildKernel.startTimeUnixNano);
    expect(compile.endTimeUnixNano).toBeLessThanOrEqual(buildKernel.endTimeUnixNano);

    // Every event of the build went to Kafka with the traceparent of the producer span that sent
    // it: BuildRequested under the call (written before the caller hears "queued"), the outcome
    // and PatchPublished under "build kernel".
    const records = (await readWholeTopic(testKafka('telemetry-e2e'), topic)).filter((r) => {
      const stream = r.value ? readEnvelope(r.value).stream : '';
      return stream === `build/${submitted.buildId}` || stream === `patch/${submitted.patchId}`;
    });
    const sentBy = (type: string) => {
      const record = records.find((r) => readEnvelope(r.value!).type === type);
      if (!record) throw new Error(`no ${type} in ${topic}`);
      const header = record.headers?.['traceparent'];
      const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(header === undefined ? '' : String(header));
      if (!match) throw new Error(`${type}'s record has no sampled traceparent header: ${String(header)}`);
      expect(match[1]).toBe(traceId);
      return only((s) => s.spanId === match[2], `span named by ${type}'s traceparent`);
    };
    expect(records.map((r) => readEnvelope(r.value!).type).sort()).toEqual([
      'BuildRequested',
      'BuildSucceeded',
      'PatchPublished',
    ]);
    const requested = sentBy('BuildRequested');
    expect(requested).toMatchObject({
      name: `send ${topic}`,
      kind: 'PRODUCER',
      parentSpanId: server.spanId,
      attributes: {
        'messaging.system': 'kafka',
        'messaging.destination.name': topic,
        'messaging.kafka.message.key': `build/${submitted.buildId}`,
      },
    });
    for (const type of ['BuildSucceeded', 'PatchPublished']) {
      expect(sentBy(type)).toMatchObject({ name: `send ${topic}`, kind: 'PRODUCER', parentSpanId: buildKernel.spanId });
    }
    // Nothing else in the trace: no stray span from another build or from the health probes.
    expect(spans).toHaveLength(6);
    build = {
      traceId,
      buildId: submitted.buildId,
      sentBy: new Map(['BuildRequested', 'BuildSucceeded', 'PatchPublished'].map((t) => [t, sentBy(t)])),
    };
  });

  // The CLI's shape: a short-lived process that starts tracing first, calls a service with the
  // instrumented grpc-js client and ends by itself (no process.exit), exporting on the way out.
  const CLI_LIKE_PROCESS = `
const { startTelemetry, withSpan } = require('@rebootless/telemetry');
startTelemetry('cli');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { grpcServices, protoLoaderOptions } = require('@rebootless/contracts');
const definitions = protoLoader.loadSync(grpcServices.build.protoPath, protoLoaderOptions);
const { BuildService } = grpc.loadPackageDefinition(definitions).rebootless.builder.v1;
const client = new BuildService(process.env.BUILDER, grpc.credentials.createInsecure());
withSpan('rebootless build show', {}, (span) =>
  new Promise((resolve) =>
    client.getBuild({ buildId: process.env.BUILD_ID }, (error) => {
      process.stdout.write(JSON.stringify({ traceId: span.spanContext().traceId, code: error ? error.code : 0 }));
      resolve();
    }),
  ),
).finally(() => client.close());
`;

  it('continues a trace from a short-lived caller process: its command span → gRPC client span → the builder’s server span', async () => {
    const unknownBuild = '0190f0c0-0000-7000-8000-000000000000';
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', CLI_LIKE_PROCESS], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        BUILDER: address,
        BUILD_ID: unknownBuild,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      },
    });
    const { traceId, code } = JSON.parse(stdout) as { traceId: string; code: number };
    expect(code).toBe(grpc.status.NOT_FOUND);

    // The caller exited before this point: its spans were exported on its way out.
    const spans = (
      await receiver.waitFor((all) => all.filter((s) => s.traceId === traceId).length >= 3, 30_000)
    ).filter((s) => s.traceId === traceId);
    const tree = new TraceView(spans, traceId).describe();
    const only = (service: string, kind: string) => {
      const found = spans.filter((s) => s.service === service && s.kind === kind);
      if (found.length !== 1) throw new Error(`expected one ${kind} span of ${service}:\n${tree}`);
      return found[0]!;
    };
    const command = only('cli', 'INTERNAL');
    const call = only('cli', 'CLIENT');
    const served = only('builder', 'SERVER');

    expect(spans).toHaveLength(3);
    expect(command).toMatchObject({ name: 'rebootless build show' });
    expect(command.parentSpanId).toBeUndefined();
    expect(call).toMatchObject({
      name: 'grpc.rebootless.builder.v1.BuildService/GetBuild',
      parentSpanId: command.spanId,
      attributes: { 'rpc.grpc.status_code': grpc.status.NOT_FOUND },
    });
    expect(served).toMatchObject({
      name: 'grpc.rebootless.builder.v1.BuildService/GetBuild',
      parentSpanId: call.spanId,
    });
  });

  // A short-lived process whose collector is gone (refuses) or silent (accepts, never answers).
  const ENDING_PROCESS = `
const { startTelemetry, withSpan } = require('@rebootless/telemetry');
startTelemetry('cli');
withSpan('rebootless status', {}, () => {
  process.stdout.write('done');
  process.exitCode = 3;
});
`;

  it.each([
    ['refuses connections', 'refusing'],
    ['accepts and never answers', 'silent'],
  ] as const)(
    'lets a caller end by itself with its own exit code when the collector %s',
    async (_what, collector) => {
      // Silent: a TCP server that never answers an HTTP request. Refusing: a port nobody listens on.
      const sockets = new Set<Socket>();
      const silent = createServer((socket) => sockets.add(socket));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
      const silentPort = (silent.address() as { port: number }).port;
      const refusingPort = await freePort();
      try {
        const child = spawn(process.execPath, ['-e', ENDING_PROCESS], {
          cwd: REPO_ROOT,
          env: {
            ...process.env,
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector === 'silent' ? silentPort : refusingPort}`,
            // Longer than this test may run: only the bound in startTelemetry lets it end.
            OTEL_EXPORTER_OTLP_TIMEOUT: String(30 * 60_000),
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));

        expect({ code, stdout }).toEqual({ code: 3, stdout: 'done' });
        if (collector === 'silent') expect(sockets.size).toBeGreaterThan(0);
      } finally {
        sockets.forEach((socket) => socket.destroy());
        await new Promise<void>((resolve) => silent.close(() => resolve()));
      }
    },
    60_000,
  );

  // The ledger's shape: a consumer group reading batches (runConsumer, as the ledger's consumer
  // does) that projects each record in a span continuing the trace its Kafka headers name.
  const PROJECTING_PROCESS = `
const { startTelemetry, withSpanFrom, SPAN, ATTR } = require('@rebootless/telemetry');
startTelemetry('ledger');
const { runConsumer, kafkaClient } = require('@rebootless/kafka');
const { readEnvelope } = require('@rebootless/events');
const kafka = kafkaClient(process.env.BROKERS.split(','), 'telemetry-e2e-projection');
let seen = 0;
const wanted = Number(process.env.RECORDS);
runConsumer({
  kafka, topic: process.env.TOPIC, groupId: 'telemetry-e2e-' + process.pid,
  handleBatch: async (records) => {
    for (const record of records) {
      const e = readEnvelope(record.value);
      await withSpanFrom(record.headers, SPAN.ledgerProjection, { [ATTR.eventType]: e.type, [ATTR.eventId]: e.eventId }, async () => undefined);
      seen += 1;
    }
  },
}).then((consumer) => {
  const check = setInterval(() => { if (seen >= wanted) { clearInterval(check); void consumer.stop(); } }, 50);
});
`;

  it('lets a consumer of the event log continue each event’s trace: "ledger projection" under the producer span', async () => {
    if (!build) throw new Error('needs the build traced by the first test');
    const { traceId, sentBy } = build;
    const all = await readWholeTopic(testKafka('telemetry-e2e'), topic);
    await promisify(execFile)(process.execPath, ['-e', PROJECTING_PROCESS], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        BROKERS: kafkaBrokersFromEnv().join(','),
        TOPIC: topic,
        RECORDS: String(all.length),
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      },
    });

    const projections = (
      await receiver.waitFor(
        (spans) => spans.filter((s) => s.service === 'ledger' && s.name === 'ledger projection').length >= all.length,
      )
    ).filter((s) => s.service === 'ledger');
    for (const [type, producer] of sentBy) {
      const projected = projections.filter((s) => s.attributes['rebootless.event.type'] === type);
      expect({ type, found: projected.length }).toEqual({ type, found: 1 });
      expect(projected[0]).toMatchObject({ traceId, parentSpanId: producer.spanId, kind: 'INTERNAL' });
    }
    // Only our spans: kafkajs's consumer side is not instrumented (see libs/telemetry/src/sdk.ts).
    expect(new Set(projections.map((s) => s.name))).toEqual(new Set(['ledger projection']));
  });
});
