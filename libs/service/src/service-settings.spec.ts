import { ConfigError, formatConfigProblem, loadConfig } from './config';
import { enabledLogLevels } from './logger';
import { serviceSettings } from './service-settings';

const ledger = serviceSettings({ name: 'ledger', envPrefix: 'LEDGER', defaultPort: 7453 });

// Transport security must be settled one way or the other; these tests are about the rest.
const PLAINTEXT = { REBOOTLESS_INSECURE: 'true' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(ledger, { ...PLAINTEXT, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map(formatConfigProblem);
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('serviceSettings', () => {
  it('Given an empty environment, When loaded, Then the service binds loopback on its default port with local defaults', () => {
    const config = loadConfig(ledger, PLAINTEXT);

    expect(config).toEqual({
      grpcListen: { host: '127.0.0.1', port: 7453 },
      dataDir: '.data/ledger',
      kafkaBrokers: [{ host: '127.0.0.1', port: 9092 }],
      eventsTopic: 'rebootless.events.v1',
      logLevel: 'info',
      logFormat: 'text',
      maxTokenLifetimeSeconds: 43_200,
      transport: { mode: 'insecure' },
    });
  });

  it('Given only a port, When loaded, Then the service binds that port on loopback', () => {
    expect(loadConfig(ledger, { ...PLAINTEXT, LEDGER_GRPC_PORT: '6000' }).grpcListen).toEqual({
      host: '127.0.0.1',
      port: 6000,
    });
  });

  it('Given a full address, When loaded, Then the service binds exactly there', () => {
    expect(loadConfig(ledger, { ...PLAINTEXT, LEDGER_GRPC_ADDRESS: '0.0.0.0:7000' }).grpcListen).toEqual({
      host: '0.0.0.0',
      port: 7000,
    });
  });

  it('Given both an address and a port, When loaded, Then it refuses to guess which one was meant', () => {
    expect(problemsOf({ LEDGER_GRPC_ADDRESS: '0.0.0.0:7000', LEDGER_GRPC_PORT: '7001' })).toEqual([
      'LEDGER_GRPC_PORT="7001": expected to be unset when LEDGER_GRPC_ADDRESS is set (set one or the other)',
    ]);
  });

  it('Given a bad address and a port as well, When loaded, Then both the address and the clash are reported', () => {
    expect(problemsOf({ LEDGER_GRPC_ADDRESS: 'nowhere', LEDGER_GRPC_PORT: 'abc' })).toEqual([
      'LEDGER_GRPC_ADDRESS="nowhere": expected host:port, e.g. 127.0.0.1:7451 or [::1]:7451',
      'LEDGER_GRPC_PORT="abc": expected to be unset when LEDGER_GRPC_ADDRESS is set (set one or the other)',
    ]);
  });

  it('Given the shared settings set, When loaded, Then they are parsed', () => {
    const config = loadConfig(ledger, {
      ...PLAINTEXT,
      REBOOTLESS_DATA_DIR: '/var/lib/rebootless/ledger',
      KAFKA_BROKERS: '10.0.0.1:9092,10.0.0.2:9092',
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
    });

    expect(config.dataDir).toBe('/var/lib/rebootless/ledger');
    expect(config.kafkaBrokers).toEqual([
      { host: '10.0.0.1', port: 9092 },
      { host: '10.0.0.2', port: 9092 },
    ]);
    expect([config.logLevel, config.logFormat]).toEqual(['debug', 'json']);
  });

  it('Given every shared setting wrong, When loaded, Then each bad variable is named', () => {
    expect(
      problemsOf({
        LEDGER_GRPC_PORT: 'abc',
        KAFKA_BROKERS: 'kafka',
        LOG_LEVEL: 'loud',
        LOG_FORMAT: 'xml',
      }),
    ).toEqual([
      'LEDGER_GRPC_PORT="abc": expected a TCP port 1-65535',
      'KAFKA_BROKERS="kafka": expected a comma-separated list of host:port, e.g. 127.0.0.1:9092,10.0.0.2:9092',
      'LOG_LEVEL="loud": expected one of fatal, error, warn, info, debug, verbose',
      'LOG_FORMAT="xml": expected one of text, json',
    ]);
  });
});

describe('transport security', () => {
  it('Given a pki directory, When loaded, Then the service serves TLS from it', () => {
    expect(loadConfig(ledger, { REBOOTLESS_PKI_DIR: '/etc/rebootless/pki' }).transport).toEqual({
      mode: 'tls',
      pkiDir: '/etc/rebootless/pki',
    });
  });

  it('Given neither a pki directory nor the insecure setting, When loaded, Then it refuses to pick one', () => {
    expect(() => loadConfig(ledger, {})).toThrow(
      'REBOOTLESS_PKI_DIR is not set: expected a pki directory (create one with: node scripts/pki.mjs init), or REBOOTLESS_INSECURE=true for plaintext',
    );
  });

  it('Given both, When loaded, Then it refuses to guess which one was meant', () => {
    expect(() => loadConfig(ledger, { REBOOTLESS_PKI_DIR: '/p', REBOOTLESS_INSECURE: 'yes' })).toThrow(
      'REBOOTLESS_INSECURE="yes": expected to be unset or false when REBOOTLESS_PKI_DIR is set',
    );
  });

  it('Given an insecure setting that is not a boolean, When loaded, Then it names the value', () => {
    expect(() => loadConfig(ledger, { REBOOTLESS_INSECURE: 'maybe' })).toThrow(
      'REBOOTLESS_INSECURE="maybe": expected one of',
    );
  });
});

describe('enabledLogLevels', () => {
  it('Given LOG_LEVEL=info, When mapped to Nest levels, Then info and everything more severe is written', () => {
    expect(enabledLogLevels('info')).toEqual(['fatal', 'error', 'warn', 'log']);
  });

  it('Given LOG_LEVEL=fatal, When mapped, Then only fatal is written', () => {
    expect(enabledLogLevels('fatal')).toEqual(['fatal']);
  });
});
