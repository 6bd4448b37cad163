// The receiver decodes what the real OTLP exporters send over loopback HTTP, in both encodings,
// so the e2e trace tests can trust what it reports. The exporters load their HTTP transport with
// a dynamic import(), which Jest's sandbox refuses: they run in a child Node process here.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { OtlpReceiver } from './otlp-receiver';
import { REPO_ROOT } from './process';

// Plain CommonJS for `node -e`: three spans, a parent/child pair, a link, attributes of each type.
const EXPORTING_PROCESS = `
const { SpanKind, SpanStatusCode, context, trace } = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-node');
const { OTLPTraceExporter } = require(process.env.EXPORTER_PACKAGE);
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'dispatcher' }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: process.env.TRACES_URL }))],
});
const tracer = provider.getTracer('rebootless');
const linked = tracer.startSpan('send rebootless.events.v1', { kind: SpanKind.PRODUCER });
linked.end();
const wave = tracer.startSpan('rollout wave', {
  kind: SpanKind.INTERNAL,
  attributes: { 'rebootless.rollout.id': 'r-1', 'rebootless.rollout.wave': 3, canary: true, ratio: 0.5 },
  links: [{ context: linked.spanContext() }],
});
const host = tracer.startSpan(
  'agent transition',
  { kind: SpanKind.CLIENT, attributes: { hosts: ['h-1', 'h-2'] } },
  trace.setSpan(context.active(), wave),
);
host.setStatus({ code: SpanStatusCode.ERROR, message: 'transition stalled' });
host.end();
wave.end();
provider.shutdown().then(() => {
  process.stdout.write(JSON.stringify({ wave: wave.spanContext(), host: host.spanContext(), linked: linked.spanContext() }));
});
`;

describe.each([
  ['http/protobuf', 'application/x-protobuf', '@opentelemetry/exporter-trace-otlp-proto'],
  ['http/json', 'application/json', '@opentelemetry/exporter-trace-otlp-http'],
] as const)('OtlpReceiver, %s', (_protocol, contentType, exporterPackage) => {
  let receiver: OtlpReceiver;
  beforeEach(async () => (receiver = await OtlpReceiver.start()));
  afterEach(() => receiver.close());

  it('decodes spans with their service, ids, parent, kind, attributes, links and status', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', EXPORTING_PROCESS], {
      cwd: REPO_ROOT,
      env: { ...process.env, EXPORTER_PACKAGE: exporterPackage, TRACES_URL: `${receiver.endpoint}/v1/traces` },
    });
    const sent = JSON.parse(stdout) as Record<'wave' | 'host' | 'linked', { traceId: string; spanId: string }>;

    const spans = await receiver.waitFor((s) => s.length === 3);
    const byName = new Map(spans.map((s) => [s.name, s]));
    const w = byName.get('rollout wave')!;
    const h = byName.get('agent transition')!;
    const l = byName.get('send rebootless.events.v1')!;

    expect(receiver.requests.every((r) => r.contentType === contentType)).toBe(true);
    expect(receiver.rejected).toEqual([]);
    expect(spans.every((s) => s.service === 'dispatcher' && s.scope === 'rebootless')).toBe(true);
    expect(w).toMatchObject({
      traceId: sent.wave.traceId,
      spanId: sent.wave.spanId,
      kind: 'INTERNAL',
      attributes: { 'rebootless.rollout.id': 'r-1', 'rebootless.rollout.wave': 3, canary: true, ratio: 0.5 },
      links: [{ traceId: l.traceId, spanId: l.spanId, attributes: {} }],
      status: { code: 0 },
    });
    expect(w.parentSpanId).toBeUndefined();
    expect(h).toMatchObject({
      traceId: sent.wave.traceId,
      spanId: sent.host.spanId,
      parentSpanId: w.spanId,
      kind: 'CLIENT',
      attributes: { hosts: ['h-1', 'h-2'] },
      status: { code: 2, message: 'transition stalled' },
    });
    expect(l).toMatchObject({ spanId: sent.linked.spanId, kind: 'PRODUCER' });
    expect(w.endTimeUnixNano).toBeGreaterThan(w.startTimeUnixNano);
  });
});
