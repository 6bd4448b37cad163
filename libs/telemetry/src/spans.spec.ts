// The span helpers against the real SDK with an in-memory exporter (no I/O). Auto-instrumentation
// does not work inside Jest's module sandbox, but the API and the SDK do: what is asserted here
// is our code's use of them (parents, links, carriers, errors).
import { SpanStatusCode, context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import {
  ATTR,
  SPAN,
  activeSpanLink,
  captureTraceContext,
  contextFromCarrier,
  linksFromCarriers,
  spanContextFromCarrier,
  startDomainSpan,
  traceCarrier,
  traceFields,
  withSpan,
  withSpanFrom,
  withContext,
  withSpanFromSync,
  withTraceContext,
} from './spans';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(() => provider.register());
afterEach(() => exporter.reset());
afterAll(() => provider.shutdown());

const finished = (name: string) => {
  const span = exporter.getFinishedSpans().find((s) => s.name === name);
  if (!span) throw new Error(`no finished span "${name}": ${exporter.getFinishedSpans().map((s) => s.name)}`);
  return span;
};

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

describe('withSpan', () => {
  it('nests: a span started inside another is its child, in the same trace, with its attributes', async () => {
    const result = await withSpan(SPAN.rolloutWave, { [ATTR.rolloutId]: 'r-1', [ATTR.wave]: 2 }, () =>
      withSpan(SPAN.agentTransition, { [ATTR.hostId]: 'h-7' }, async () => 'applied'),
    );

    expect(result).toBe('applied');
    const wave = finished('rollout wave');
    const transition = finished('agent transition');
    expect(transition.spanContext().traceId).toBe(wave.spanContext().traceId);
    expect(transition.parentSpanContext?.spanId).toBe(wave.spanContext().spanId);
    expect(wave.attributes).toEqual({ 'rebootless.rollout.id': 'r-1', 'rebootless.rollout.wave': 2 });
    expect(transition.attributes).toEqual({ 'rebootless.host.id': 'h-7' });
  });

  it('marks a span whose work threw as an error with the exception, ends it, and rethrows', async () => {
    await expect(
      withSpan(SPAN.agentVerify, {}, () => {
        throw new Error('manifest signature does not verify');
      }),
    ).rejects.toThrow('manifest signature does not verify');

    const verify = finished('agent verify');
    expect(verify.status).toEqual({ code: SpanStatusCode.ERROR, message: 'manifest signature does not verify' });
    expect(verify.events.map((e) => e.name)).toEqual(['exception']);
    expect(verify.ended).toBe(true);
  });

  it('continues a captured context later, outside the call that captured it (queued work)', async () => {
    let kept!: ReturnType<typeof captureTraceContext>;
    await withSpan('submit', {}, () => {
      kept = captureTraceContext();
    });
    // Later, from an unrelated context: the work still joins the submit's trace.
    await context.with(trace.deleteSpan(context.active()), () =>
      withSpan(SPAN.buildKernel, {}, async () => undefined, { parent: kept }),
    );

    expect(finished('build kernel').parentSpanContext?.spanId).toBe(finished('submit').spanContext().spanId);
  });
});

describe('trace carriers', () => {
  it('writes the active span as a W3C traceparent that names its trace and span', async () => {
    let carrier: Record<string, string> = {};
    await withSpan(SPAN.rolloutWave, {}, () => {
      carrier = traceCarrier();
    });
    const wave = finished('rollout wave').spanContext();

    expect(carrier['traceparent']).toBe(`00-${wave.traceId}-${wave.spanId}-01`);
  });

  it('reads traceparent from Kafka headers as kafkajs hands them (Buffers) and from strings', () => {
    expect(spanContextFromCarrier({ traceparent: Buffer.from(TRACEPARENT) })).toMatchObject({
      traceId: TRACE_ID,
      spanId: PARENT_ID,
      isRemote: true,
    });
    expect(spanContextFromCarrier({ traceparent: TRACEPARENT })?.spanId).toBe(PARENT_ID);
    expect(spanContextFromCarrier({ traceparent: 'garbage' })).toBeUndefined();
    expect(spanContextFromCarrier(undefined)).toBeUndefined();
    expect(trace.getSpan(contextFromCarrier({}))).toBeUndefined();
  });

  it('withSpanFrom makes the remote span the parent and keeps the span it ran in as a link', async () => {
    await withSpan('project batch', {}, () =>
      withSpanFrom({ traceparent: Buffer.from(TRACEPARENT) }, SPAN.ledgerProjection, { [ATTR.eventType]: 'X' }, () =>
        withSpan('insert', {}, () => undefined),
      ),
    );
    const batch = finished('project batch').spanContext();
    const projection = finished('ledger projection');

    expect(projection.spanContext().traceId).toBe(TRACE_ID);
    expect(projection.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(projection.links.map((l) => l.context.spanId)).toEqual([batch.spanId]);
    // Work inside continues under the projection span.
    expect(finished('insert').parentSpanContext?.spanId).toBe(projection.spanContext().spanId);
  });

  it('withSpanFrom without a traceparent is an ordinary child of the active span', async () => {
    await withSpan('outer', {}, () => withSpanFrom({ other: 'x' }, SPAN.ledgerProjection, {}, () => undefined));

    expect(finished('ledger projection').parentSpanContext?.spanId).toBe(finished('outer').spanContext().spanId);
    expect(finished('ledger projection').links).toEqual([]);
  });

  it('withTraceContext makes the remote span the parent of what runs inside, without a span of its own', async () => {
    await withTraceContext({ traceparent: TRACEPARENT }, () => withSpan('send', {}, () => undefined));
    await withTraceContext(undefined, () => withSpan('untraced send', {}, () => undefined));

    expect(finished('send').parentSpanContext).toMatchObject({ traceId: TRACE_ID, spanId: PARENT_ID });
    expect(exporter.getFinishedSpans()).toHaveLength(2);
    expect(finished('untraced send').parentSpanContext).toBeUndefined();
  });

  it('carries trace context in a message with TraceFields: written by traceFields, read from the message as is', async () => {
    let command: { apply: { commandId: string }; traceparent?: string; tracestate?: string } = {
      apply: { commandId: 'c' },
    };
    await withSpan(SPAN.rolloutWave, {}, () => {
      command = { apply: { commandId: 'c-1' }, ...traceFields() };
    });
    await withSpanFrom(command, SPAN.agentVerify, {}, () => undefined);
    const wave = finished('rollout wave').spanContext();

    expect(command.traceparent).toBe(`00-${wave.traceId}-${wave.spanId}-01`);
    expect(command).not.toHaveProperty('tracestate');
    expect(finished('agent verify').parentSpanContext?.spanId).toBe(wave.spanId);
    expect(traceFields()).toEqual({});
  });

  it('links a batch to each distinct producing span once, skipping records without one', () => {
    const other = `00-${TRACE_ID}-1111111111111111-01`;
    const links = linksFromCarriers([
      { traceparent: Buffer.from(TRACEPARENT) },
      { traceparent: Buffer.from(TRACEPARENT) },
      undefined,
      { traceparent: other },
    ]);

    expect(links.map((l) => l.context.spanId)).toEqual([PARENT_ID, '1111111111111111']);
  });
});

describe('spans that outlive a call', () => {
  it('startDomainSpan: a span under a kept context, ended by the caller; work run withContext is its child', async () => {
    let kept!: ReturnType<typeof captureTraceContext>;
    let approval: ReturnType<typeof activeSpanLink>;
    await withSpan('create', {}, () => {
      kept = captureTraceContext();
    });
    await withSpan('approve', {}, () => {
      approval = activeSpanLink();
    });
    const wave = startDomainSpan(SPAN.rolloutWave, { [ATTR.wave]: 0 }, { parent: kept, links: [approval!] });
    await withContext(wave.context, () => withSpan('send', {}, () => undefined));
    wave.span.end();

    const created = finished('create');
    const rolloutWave = finished('rollout wave');
    expect(rolloutWave.parentSpanContext?.spanId).toBe(created.spanContext().spanId);
    expect(rolloutWave.spanContext().traceId).toBe(created.spanContext().traceId);
    expect(rolloutWave.links.map((l) => l.context.spanId)).toEqual([finished('approve').spanContext().spanId]);
    expect(finished('send').parentSpanContext?.spanId).toBe(rolloutWave.spanContext().spanId);
  });

  it('activeSpanLink: nothing outside a span', () => {
    expect(context.with(trace.deleteSpan(context.active()), () => activeSpanLink())).toBeUndefined();
  });

  it('withSpanFromSync: continues the carrier’s trace synchronously, links the enclosing span, rethrows marked', async () => {
    let value = 0;
    await withSpan('batch', {}, () => {
      value = withSpanFromSync({ traceparent: TRACEPARENT }, SPAN.ledgerProjection, { [ATTR.seq]: 1 }, () => 42);
    });
    expect(value).toBe(42);
    const projection = finished('ledger projection');
    expect(projection.spanContext().traceId).toBe(TRACE_ID);
    expect(projection.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(projection.links.map((l) => l.context.spanId)).toEqual([finished('batch').spanContext().spanId]);

    exporter.reset();
    expect(() =>
      withSpanFromSync({}, SPAN.ledgerProjection, {}, () => {
        throw new Error('bad record');
      }),
    ).toThrow('bad record');
    expect(finished('ledger projection').status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad record' });
  });
});
