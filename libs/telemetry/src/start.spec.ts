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
});
