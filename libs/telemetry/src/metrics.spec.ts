import { metricsPlan } from './metrics';

describe('metricsPlan', () => {
  it('is off without a scrape address or an OTLP endpoint, or when the SDK is disabled', () => {
    expect(metricsPlan({})).toEqual({
      on: false,
      why: 'neither REBOOTLESS_METRICS_ADDRESS nor an OTLP endpoint is set',
    });
    expect(metricsPlan({ REBOOTLESS_METRICS_ADDRESS: '127.0.0.1:9464', OTEL_SDK_DISABLED: 'true' })).toEqual({
      on: false,
      why: 'OTEL_SDK_DISABLED=true',
    });
  });

  it('serves Prometheus text on host:port and pushes OTLP to the collector named, metrics path appended', () => {
    expect(
      metricsPlan({ REBOOTLESS_METRICS_ADDRESS: '[::1]:9464', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' }),
    ).toEqual({ on: true, scrape: { host: '::1', port: 9464 }, otlp: 'http://127.0.0.1:4318/v1/metrics' });
    expect(metricsPlan({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'https://collector/otlp/metrics' })).toEqual({
      on: true,
      otlp: 'https://collector/otlp/metrics',
    });
  });

  it('names the setting that is wrong', () => {
    expect(metricsPlan({ REBOOTLESS_METRICS_ADDRESS: '9464' })).toEqual({
      invalid: 'REBOOTLESS_METRICS_ADDRESS="9464" is not host:port, e.g. 127.0.0.1:9464',
    });
    expect(metricsPlan({ REBOOTLESS_METRICS_ADDRESS: 'localhost:70000' })).toMatchObject({
      invalid: expect.any(String),
    });
    expect(metricsPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toEqual({
      invalid: 'the OTLP metrics endpoint "collector:4318/v1/metrics" is not an http(s) URL',
    });
  });
});
