// Named domain spans and trace context carried where the instrumentations cannot see it: inside
// messages of a long-lived gRPC stream (a dispatcher command to an agent), and from Kafka record
// headers into a projection that handles batches. With tracing off (no exporter configured) the
// API is the no-op one: these helpers then only run `fn`.
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type TextMapGetter,
} from '@opentelemetry/api';

export {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Link,
  type Span,
} from '@opentelemetry/api';

/** The span names operators see, one per thing the system does (issue 8). */
export const SPAN = {
  /** dispatcher: one wave of a rollout, from WaveStarted to WaveCompleted. */
  rolloutWave: 'rollout wave',
  /** agent: checking a command and its artifact (signature, digest, kernel, version) before the kernel is touched. */
  agentVerify: 'agent verify',
  /** agent: one livepatch transition in the kernel (load+enable, disable, replace), to its end or stall. */
  agentTransition: 'agent transition',
  /** ledger: projecting one event into the read models. */
  ledgerProjection: 'ledger projection',
  /** builder: one kernel release of a build, from queued to stored. */
  buildKernel: 'build kernel',
  /** builder: compiling the livepatch module against one release's headers. */
  buildCompile: 'build compile',
} as const;

/** Attribute keys of the domain spans; values are the ids as they appear in events. */
export const ATTR = {
  buildId: 'rebootless.build.id',
  rolloutId: 'rebootless.rollout.id',
  wave: 'rebootless.rollout.wave',
  waveHosts: 'rebootless.rollout.wave.hosts',
  hostId: 'rebootless.host.id',
  patchId: 'rebootless.patch.id',
  patchVersion: 'rebootless.patch.version',
  kernelRelease: 'rebootless.kernel.release',
  eventType: 'rebootless.event.type',
  eventId: 'rebootless.event.id',
  producerId: 'rebootless.event.producer',
  seq: 'rebootless.event.seq',
  outcome: 'rebootless.outcome',
} as const;

const TRACER_NAME = 'rebootless';

function tracer() {
  return trace.getTracer(TRACER_NAME);
}

export interface DomainSpanOptions {
  readonly kind?: SpanKind;
  readonly links?: Link[];
  /** The context to start under; default: the active one. */
  readonly parent?: Context;
}

/**
 * Runs `fn` inside a new span `name`, child of the active span (or of `options.parent`). The span
 * ends when `fn` settles; a throw records the exception, marks the span as an error and rethrows.
 * Everything `fn` starts (gRPC calls, Kafka sends, further spans) is traced under it.
 */
export async function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => T | Promise<T>,
  options: DomainSpanOptions = {},
): Promise<T> {
  const { span, context: active } = startDomainSpan(name, attributes, options);
  try {
    return await context.with(active, () => fn(span));
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** The active context, kept to continue a trace later (work queued now and run afterwards). */
export function captureTraceContext(): Context {
  return context.active();
}

/** Trace context as W3C headers: `traceparent` and, when set, `tracestate` (and `baggage`). */
export type TraceCarrier = Record<string, string>;

/**
 * The active (or given) trace context as W3C headers, for a message field the instrumentations
 * do not see, e.g. a command sent on an agent's long-lived stream. Empty when tracing is off.
 */
export function traceCarrier(ctx: Context = context.active()): TraceCarrier {
  const carrier: TraceCarrier = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/**
 * The active (or given) trace context as our messages' TraceFields, to spread into a command:
 * `{ apply, ...traceFields() }`. Empty when tracing is off.
 */
export function traceFields(ctx: Context = context.active()): TraceFields {
  const { traceparent, tracestate } = traceCarrier(ctx);
  return { ...(traceparent ? { traceparent } : {}), ...(tracestate ? { tracestate } : {}) };
}

/** Header values as kafkajs hands them to a consumer (Buffers), or as strings. */
export type CarrierValue = Buffer | string | readonly (Buffer | string)[] | undefined;
export type HeaderCarrier = Readonly<Record<string, CarrierValue>>;

/**
 * The trace fields of our own messages (dispatcher.v1 ConnectRequest and ConnectResponse carry
 * `optional string traceparent, tracestate`): such a message can be passed as a carrier as is.
 */
export interface TraceFields {
  readonly traceparent?: string | undefined;
  readonly tracestate?: string | undefined;
}

/** Anything trace context can be read from: Kafka record headers, a message with TraceFields. */
export type Carrier = HeaderCarrier | TraceFields;

const headerGetter: TextMapGetter<Carrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    // Only the propagators' own keys are asked for (traceparent, tracestate, baggage).
    const value = (carrier as HeaderCarrier)[key];
    // null: an unset optional field as grpc's runtime loader hands messages over.
    if (value === undefined || value === null) return undefined;
    if (Array.isArray(value)) return (value as readonly (Buffer | string)[]).map((v) => v.toString());
    return (value as Buffer | string).toString();
  },
};

/** The trace context a carrier (Kafka headers, a TraceCarrier field) holds, on an empty context. */
export function contextFromCarrier(carrier: Carrier | null | undefined): Context {
  if (!carrier) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, carrier, headerGetter);
}

/** The remote span a carrier names, if it holds a valid traceparent. */
export function spanContextFromCarrier(carrier: Carrier | null | undefined): SpanContext | undefined {
  const span = trace.getSpan(contextFromCarrier(carrier));
  const spanContext = span?.spanContext();
  return spanContext && trace.isSpanContextValid(spanContext) ? spanContext : undefined;
}

/**
 * Runs `fn` with the carrier's remote span as the active context, starting no span of its own:
 * for work that the instrumentations trace themselves, e.g. an outbox sending an event later
 * under the trace it was written in (kafkajs then makes the producer span a child of it).
 */
export function withTraceContext<T>(carrier: Carrier | null | undefined, fn: () => T): T {
  const remote = spanContextFromCarrier(carrier);
  if (!remote) return fn();
  return context.with(trace.setSpanContext(context.active(), remote), fn);
}

/**
 * Continues the trace a carrier names: `fn` runs in a new span `name` whose parent is the
 * remote span (the Kafka producer span for record headers), so e.g. the ledger's projection of
 * an event joins the trace of whoever wrote it. The span the caller was in, if any (a batch
 * span of its own), is kept as a link. Without a valid traceparent it is a child of the active
 * span.
 */
export function withSpanFrom<T>(
  carrier: Carrier | null | undefined,
  name: string,
  attributes: Attributes,
  fn: (span: Span) => T | Promise<T>,
  options: Omit<DomainSpanOptions, 'parent'> = {},
): Promise<T> {
  const remote = spanContextFromCarrier(carrier);
  if (!remote) return withSpan(name, attributes, fn, options);
  const current = trace.getSpan(context.active())?.spanContext();
  const links = [...(options.links ?? [])];
  if (current && trace.isSpanContextValid(current)) links.push({ context: current });
  return withSpan(name, attributes, fn, {
    ...options,
    links,
    // Keeps the active context's other entries (baggage, suppression) under the remote parent.
    parent: trace.setSpanContext(context.active(), remote),
  });
}

/**
 * One link per distinct remote span among the carriers: for a span covering a batch of
 * records from many traces (a projection's transaction), which cannot have them all as parent.
 */
export function linksFromCarriers(carriers: Iterable<Carrier | null | undefined>): Link[] {
  const seen = new Set<string>();
  const links: Link[] = [];
  for (const carrier of carriers) {
    const remote = spanContextFromCarrier(carrier);
    if (!remote || seen.has(remote.spanId)) continue;
    seen.add(remote.spanId);
    links.push({ context: remote });
  }
  return links;
}

/**
 * Starts a span the caller ends later, for work that spans many steps with no one function
 * around it (a rollout wave, open from WaveStarted to WaveCompleted). `context` has the span
 * active: run the steps under it with `withContext`.
 */
export function startDomainSpan(
  name: string,
  attributes: Attributes,
  options: DomainSpanOptions = {},
): { span: Span; context: Context } {
  const parent = options.parent ?? context.active();
  const span = tracer().startSpan(
    name,
    {
      attributes,
      ...(options.kind !== undefined ? { kind: options.kind } : {}),
      ...(options.links ? { links: options.links } : {}),
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` with `ctx` as the active context (a span kept from earlier, a captured context). */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** The active span's context, to link to from work it causes later (an approval starting a wave). */
export function activeSpanLink(): Link | undefined {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  return spanContext && trace.isSpanContextValid(spanContext) ? { context: spanContext } : undefined;
}

/**
 * `withSpanFrom` for synchronous work in a loop that must not await per item (projecting one
 * record of a batch): the span ends when `fn` returns; a throw marks it ERROR and rethrows.
 */
export function withSpanFromSync<T>(
  carrier: Carrier | null | undefined,
  name: string,
  attributes: Attributes,
  fn: (span: Span) => T,
): T {
  const remote = spanContextFromCarrier(carrier);
  const active = context.active();
  const current = trace.getSpan(active)?.spanContext();
  const links = remote && current && trace.isSpanContextValid(current) ? [{ context: current }] : undefined;
  const parent = remote ? trace.setSpanContext(active, remote) : active;
  const span = tracer().startSpan(name, { attributes, ...(links ? { links } : {}) }, parent);
  try {
    return context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}
