// A log line leads to its trace: the built builder runs as a real process with LOG_FORMAT=json
// and tracing on (OTLP to a receiver this test runs). A SubmitBuild call carries a traceparent
// made up here; the line saying the build is queued, written while the call is served, must
// carry that trace id and the id of a span the builder exported in it. The build is cancelled
// at once: the compile is not what is under test.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { builder, events, grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { currentDebianCloudRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import { OtlpReceiver, builtEntry, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';

// Bounds on waiting for real processes; they measure nothing.
jest.setTimeout(3 * 60_000);

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

const { BuildService } = (
  grpc.loadPackageDefinition(protoLoader.loadSync(grpcServices.build.protoPath, protoLoaderOptions))[
    'rebootless'
  ] as unknown as { builder: { v1: { BuildService: grpc.ServiceClientConstructor } } }
).builder.v1;

function call<T>(client: grpc.Client, method: string, request: object, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (...a: unknown[]) => void>)[method]!.call(
      client,
      request,
      metadata,
      (error: grpc.ServiceError | null, response: T) => (error ? reject(error) : resolve(response)),
    ),
  );
}

describe('JSON logs with tracing on', () => {
  let receiver: OtlpReceiver;
  let dataDir: string;
  let service: RunningProcess;
  let client: grpc.Client;
  let release: string;

  beforeAll(async () => {
    let topic: string;
    [receiver, topic, release] = await Promise.all([
      OtlpReceiver.start(),
      freshEventsTopic('logs', 1),
      currentDebianCloudRelease(),
    ]);
    dataDir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-logs-e2e-'));
    const address = `127.0.0.1:${await freePort()}`;
    service = startNode(builtEntry('apps/builder/dist/main.js'), {
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: dataDir,
      EVENTS_TOPIC: topic,
      LOG_FORMAT: 'json',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    await service.waitFor(new RegExp(`builder ready on ${address.replace(/\./g, '\\.')}`), 60_000);
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

  it('every stdout line is one JSON record; the line written during SubmitBuild names its trace and span', async () => {
    const traceId = randomBytes(16).toString('hex');
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    const submitted = await call<builder.SubmitBuildResponse>(
      client,
      'submitBuild',
      {
        patchName: 'logs-trace',
        version: '1.0.0',
        description: 'reading /proc/cmdline shows a fixed text',
        cves: [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }],
        replace: false,
        kernelReleases: [release],
        livepatchModuleSource: Buffer.from(livepatchSample({ moduleName: 'lp_logs_trace', replacementText: 'x' })),
      },
      metadata,
    );
    await call(client, 'cancelBuild', { buildId: submitted.buildId, reason: 'only the log line is under test' });

    const queued = `build ${submitted.buildId} queued`;
    await service.waitFor(queued, 30_000);
    const lines = service.output().split('\n').filter(Boolean);
    expect(lines.filter((l) => !l.startsWith('{'))).toEqual([]);
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = records.find((r) => typeof r['msg'] === 'string' && r['msg'].startsWith(queued));
    expect(line).toMatchObject({ level: 'info', service: 'builder', trace_id: traceId });
    expect(line!['span_id']).toMatch(/^[0-9a-f]{16}$/);
    // The span named in the line is one the builder exported in that trace.
    const spans = await receiver.waitFor((all) => all.some((s) => s.spanId === line!['span_id']), 30_000);
    expect(spans.find((s) => s.spanId === line!['span_id'])?.traceId).toBe(traceId);
    // Nest's own lines (its bootstrap) have the same shape.
    expect(records.find((r) => r['context'] === 'NestFactory')).toMatchObject({ service: 'builder', level: 'info' });
  });
});
