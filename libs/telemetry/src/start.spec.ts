import { telemetryPlan } from './start';

describe('telemetryPlan: what the OTEL_* settings ask for', () => {
  it('exports nothing without an endpoint', () => {
    expect(telemetryPlan({})).toEqual({ exporting: false, why: 'OTEL_EXPORTER_OTLP_ENDPOINT is not set' });
    expect(telemetryPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toMatchObject({ exporting: false });
  });

  it('exports http/protobuf to <endpoint>/v1/traces by default', () => {
    expect(telemetryPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toEqual({
      exporting: true,
      protocol: 'http/protobuf',
      endpoint: 'http://collector:4318/v1/traces',
    });
  });

  it('takes the traces-specific endpoint and protocol as given', () => {
    expect(
      telemetryPlan({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/otlp/traces',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      }),
    ).toEqual({ exporting: true, protocol: 'http/json', endpoint: 'https://collector/otlp/traces' });
  });

  it('is off when OTEL_SDK_DISABLED=true, whatever else is set', () => {
    expect(telemetryPlan({ OTEL_SDK_DISABLED: 'TRUE', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toEqual({
      exporting: false,
      why: 'OTEL_SDK_DISABLED=true',
    });
  });

  it('names the setting that is wrong: not a URL, an unsupported protocol', () => {
    expect(telemetryPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toEqual({
      invalid: 'OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318" is not an http(s) URL',
    });
    expect(
      telemetryPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
    ).toEqual({
      invalid: 'OTLP protocol "grpc" is not supported here; use http/protobuf (the default) or http/json',
    });
  });

  it('OTEL_TRACES_EXPORTER=zipkin sends to Zipkin’s v2 API, at OTEL_EXPORTER_ZIPKIN_ENDPOINT or its default', () => {
    expect(
      telemetryPlan({
        OTEL_TRACES_EXPORTER: 'zipkin',
        OTEL_EXPORTER_ZIPKIN_ENDPOINT: 'http://127.0.0.1:9411/api/v2/spans',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      }),
    ).toEqual({ exporting: true, protocol: 'zipkin', endpoint: 'http://127.0.0.1:9411/api/v2/spans' });
    expect(telemetryPlan({ OTEL_TRACES_EXPORTER: 'zipkin' })).toEqual({
      exporting: true,
      protocol: 'zipkin',
      endpoint: 'http://localhost:9411/api/v2/spans',
    });
    expect(telemetryPlan({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_EXPORTER_ZIPKIN_ENDPOINT: 'zipkin:9411' })).toEqual({
      invalid: 'OTEL_EXPORTER_ZIPKIN_ENDPOINT="zipkin:9411" is not an http(s) URL',
    });
  });

  it('OTEL_TRACES_EXPORTER=none turns tracing off; an exporter it does not know is named', () => {
    expect(telemetryPlan({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toEqual({
      exporting: false,
      why: 'OTEL_TRACES_EXPORTER=none',
    });
    expect(telemetryPlan({ OTEL_TRACES_EXPORTER: 'jaeger' })).toEqual({
      invalid: 'OTEL_TRACES_EXPORTER="jaeger" is not supported here; use otlp (the default), zipkin or none',
    });
  });
});
