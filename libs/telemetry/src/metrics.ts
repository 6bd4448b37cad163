// OpenTelemetry metrics for one process: scrapeable as Prometheus text on
// REBOOTLESS_METRICS_ADDRESS (host:port, path /metrics) and pushed over OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) names a collector. With
// neither, nothing is loaded and the API's meter is the no-op one. Instruments are observable:
// each service reads its own state when a scrape or an export asks (ADR 0019).
import { metrics, type Meter } from '@opentelemetry/api';

export type MetricsStatus =
  | { readonly on: false; readonly why: string }
  | { readonly on: true; readonly scrape?: { host: string; port: number }; readonly otlp?: string };

export interface MetricsEnv {
  readonly REBOOTLESS_METRICS_ADDRESS?: string;
  readonly OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  readonly OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?: string;
  readonly OTEL_METRIC_EXPORT_INTERVAL?: string;
  readonly OTEL_SDK_DISABLED?: string;
  readonly [name: string]: string | undefined;
}

/** What the environment asks for, decided without side effects (unit-tested). */
export function metricsPlan(env: MetricsEnv): MetricsStatus | { readonly invalid: string } {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true')
    return { on: false, why: 'OTEL_SDK_DISABLED=true' };
  const address = env.REBOOTLESS_METRICS_ADDRESS?.trim();
  let scrape: { host: string; port: number } | undefined;
  if (address) {
    const match = /^(.*):(\d{1,5})$/.exec(address);
    const port = match ? Number(match[2]) : NaN;
    if (!match || !match[1] || port < 1 || port > 65535)
      return { invalid: `REBOOTLESS_METRICS_ADDRESS=${JSON.stringify(address)} is not host:port, e.g. 127.0.0.1:9464` };
    scrape = { host: match[1].replace(/^\[(.*)\]$/, '$1'), port };
  }
  const metricsEndpoint = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const otlp = metricsEndpoint || (base ? `${base.replace(/\/+$/, '')}/v1/metrics` : undefined);
  if (otlp && !/^https?:\/\//.test(otlp))
    return { invalid: `the OTLP metrics endpoint ${JSON.stringify(otlp)} is not an http(s) URL` };
  if (!scrape && !otlp) return { on: false, why: 'neither REBOOTLESS_METRICS_ADDRESS nor an OTLP endpoint is set' };
  return { on: true, ...(scrape ? { scrape } : {}), ...(otlp ? { otlp } : {}) };
}

let stopMetrics: (() => Promise<void>) | undefined;
let metricsState: MetricsStatus | undefined;

/** Starts the meter provider for `serviceName`; idempotent. A bad setting is said on stderr, never fatal. */
export function startMetrics(serviceName: string, env: MetricsEnv = process.env): MetricsStatus {
  if (metricsState) return metricsState;
  const plan = metricsPlan(env);
  if ('invalid' in plan) {
    process.stderr.write(`${serviceName}: metrics are off: ${plan.invalid}\n`);
    return (metricsState = { on: false, why: plan.invalid });
  }
  if (!plan.on) return (metricsState = plan);
  // Loaded only when metrics are on, as the tracing SDK is.
  const sdk = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const readers: import('@opentelemetry/sdk-metrics').IMetricReader[] = [];
  if (plan.scrape) {
    const { PrometheusExporter } =
      require('@opentelemetry/exporter-prometheus') as typeof import('@opentelemetry/exporter-prometheus');
    readers.push(
      new PrometheusExporter({ host: plan.scrape.host, port: plan.scrape.port }, (error) => {
        if (error) process.stderr.write(`${serviceName}: metrics endpoint: ${String(error)}\n`);
      }),
    );
  }
  if (plan.otlp) {
    const { OTLPMetricExporter } =
      require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
    const interval = Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? '') || 60_000;
    readers.push(
      new sdk.PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: plan.otlp }),
        exportIntervalMillis: interval,
      }),
    );
  }
  const provider = new sdk.MeterProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    readers,
  });
  metrics.setGlobalMeterProvider(provider);
  stopMetrics = () => provider.shutdown();
  return (metricsState = plan);
}

/** The meter every rebootless instrument hangs from (the no-op one while metrics are off). */
export function rebootlessMeter(): Meter {
  return metrics.getMeter('rebootless');
}

/** Flushes the last OTLP export and closes the scrape endpoint. Never throws. */
export async function shutdownMetrics(): Promise<void> {
  const stop = stopMetrics;
  stopMetrics = undefined;
  await stop?.().catch(() => undefined);
}
