// Starts tracing for one process. It must run before grpc-js, kafkajs, NestJS or pg are first
// required: the instrumentations patch those modules as they load (require hooks), so a module
// loaded earlier stays unpatched. Hence each app's main.ts calls startTelemetry on its first
// lines, and this file itself loads none of the instrumented modules. The SDK itself (./sdk) is
// required only when spans are exported, so a service without a collector pays nothing for it.
import type { startSdk } from './sdk';

export type OtlpProtocol = 'http/protobuf' | 'http/json';
/** How spans leave: OTLP over HTTP, or Zipkin's JSON v2 API (OTEL_TRACES_EXPORTER=zipkin). */
export type SpanProtocol = OtlpProtocol | 'zipkin';
/** The OpenTelemetry default for OTEL_EXPORTER_ZIPKIN_ENDPOINT. */
export const DEFAULT_ZIPKIN_ENDPOINT = 'http://localhost:9411/api/v2/spans';

export type TelemetryStatus =
  | { readonly exporting: false; readonly why: string }
  | { readonly exporting: true; readonly protocol: SpanProtocol; readonly endpoint: string };

/** The settings tracing reads, all standard OpenTelemetry variables. */
export interface TelemetryEnv {
  readonly OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  readonly OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string;
  readonly OTEL_EXPORTER_OTLP_PROTOCOL?: string;
  readonly OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?: string;
  readonly OTEL_SDK_DISABLED?: string;
  readonly OTEL_TRACES_EXPORTER?: string;
  readonly OTEL_EXPORTER_ZIPKIN_ENDPOINT?: string;
  readonly OTEL_LOG_LEVEL?: string;
  readonly [name: string]: string | undefined;
}

/** What a setting of OTEL_* says, decided without side effects (unit-tested). */
export function telemetryPlan(env: TelemetryEnv): TelemetryStatus | { readonly invalid: string } {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true')
    return { exporting: false, why: 'OTEL_SDK_DISABLED=true' };
  const exporter = (env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase();
  if (exporter === 'none') return { exporting: false, why: 'OTEL_TRACES_EXPORTER=none' };
  if (exporter === 'zipkin') {
    const endpoint = env.OTEL_EXPORTER_ZIPKIN_ENDPOINT?.trim() || DEFAULT_ZIPKIN_ENDPOINT;
    if (!isHttpUrl(endpoint))
      return { invalid: `OTEL_EXPORTER_ZIPKIN_ENDPOINT=${JSON.stringify(endpoint)} is not an http(s) URL` };
    return { exporting: true, protocol: 'zipkin', endpoint };
  }
  if (exporter !== '' && exporter !== 'otlp') {
    return {
      invalid: `OTEL_TRACES_EXPORTER=${JSON.stringify(env.OTEL_TRACES_EXPORTER)} is not supported here; use otlp (the default), zipkin or none`,
    };
  }
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const baseEndpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!tracesEndpoint && !baseEndpoint) return { exporting: false, why: 'OTEL_EXPORTER_OTLP_ENDPOINT is not set' };
  // Same rule as the exporter applies: the signal-specific endpoint is used as given, the base
  // endpoint gets /v1/traces appended.
  const endpoint = tracesEndpoint || `${baseEndpoint!.replace(/\/+$/, '')}/v1/traces`;
  if (!isHttpUrl(endpoint)) {
    const variable = tracesEndpoint ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
    return { invalid: `${variable}=${JSON.stringify(tracesEndpoint || baseEndpoint)} is not an http(s) URL` };
  }
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ||
    env.OTEL_EXPORTER_OTLP_PROTOCOL ||
    'http/protobuf'
  ).trim();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    return {
      invalid: `OTLP protocol ${JSON.stringify(protocol)} is not supported here; use http/protobuf (the default) or http/json`,
    };
  }
  return { exporting: true, protocol, endpoint };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

let stopSdk: (() => Promise<void>) | undefined;
let status: TelemetryStatus | undefined;

/**
 * Starts the OpenTelemetry SDK for the service `serviceName` (the `service.name` resource):
 * W3C trace context (and baggage) propagation, instrumentations for gRPC (client and server,
 * metadata carries traceparent), kafkajs (record headers carry traceparent), NestJS and pg, and
 * a batching OTLP exporter. Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is started at all: the
 * API stays the no-op one, so the span helpers cost a function call. Idempotent.
 */
export function startTelemetry(
  serviceName: string,
  attributes: Record<string, string> = {},
  env: TelemetryEnv = process.env,
): TelemetryStatus {
  if (status) return status;
  const plan = telemetryPlan(env);
  if ('invalid' in plan) {
    // Tracing is an aid, not the service's job: a bad setting is said loudly, never fatal.
    process.stderr.write(`${serviceName}: tracing is off: ${plan.invalid}\n`);
    status = { exporting: false, why: plan.invalid };
    return status;
  }
  if (!plan.exporting) {
    status = plan;
    return status;
  }
  // Required here, not imported above: loaded only when exporting (see the top of this file).
  const sdk = require('./sdk') as { startSdk: typeof startSdk };
  stopSdk = sdk.startSdk({
    serviceName,
    attributes,
    protocol: plan.protocol,
    endpoint: plan.endpoint,
    logLevel: env.OTEL_LOG_LEVEL,
    env,
  });
  // A process that ends by running out of work (the CLI) exports its last spans on the way out.
  // process.exit skips this event: a service that calls it awaits shutdownTelemetry() first
  // (libs/service does). A collector that does not answer must not hold the process open, nor
  // change its exit code: after the bound, exit with the code the process had set.
  process.once('beforeExit', () => {
    void shutdownTelemetry().then((finished) => {
      if (!finished) process.exit();
    });
  });
  status = plan;
  return status;
}

/** How tracing was started in this process (before startTelemetry: off). */
export function telemetryStatus(): TelemetryStatus {
  return status ?? { exporting: false, why: 'startTelemetry was not called' };
}

/**
 * Exports the spans still buffered and stops the SDK; call it before process.exit (which would
 * drop them). Bounded: a collector that does not answer costs at most `timeoutMs`. Never
 * throws; resolves false when the bound passed first.
 */
export async function shutdownTelemetry(timeoutMs = 3_000): Promise<boolean> {
  const stop = stopSdk;
  if (!stop) return true;
  stopSdk = undefined;
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    stop().then(
      () => true,
      (error: unknown) => {
        process.stderr.write(`tracing: exporting the last spans failed: ${String(error)}\n`);
        return true;
      },
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  return finished;
}
