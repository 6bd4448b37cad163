import {
  boolean,
  ConfigError,
  formatConfigProblem,
  hostPort,
  hostPortList,
  integer,
  loadConfig,
  oneOf,
  path,
  port,
  setting,
  text,
  type ConfigProblem,
} from './config';

function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map(formatConfigProblem);
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  const spec = {
    port: setting({ env: 'SVC_PORT', parser: port(), default: '7451', description: 'port' }),
    workers: setting({ env: 'SVC_WORKERS', parser: integer(1, 64), default: '4', description: 'workers' }),
    verbose: setting({ env: 'SVC_VERBOSE', parser: boolean(), default: 'false', description: 'verbose' }),
    mode: setting({ env: 'SVC_MODE', parser: oneOf(['fast', 'safe']), default: 'safe', description: 'mode' }),
    key: setting({ env: 'SVC_KEY', parser: path(), required: true, description: 'signing key' }),
    label: setting({ env: 'SVC_LABEL', parser: text(), description: 'label' }),
  };

  it('Given only the required settings, When loaded, Then every other setting takes its default', () => {
    const config = loadConfig(spec, { SVC_KEY: '/etc/rebootless/key' });

    expect(config).toEqual({
      port: 7451,
      workers: 4,
      verbose: false,
      mode: 'safe',
      key: '/etc/rebootless/key',
      label: undefined,
    });
  });

  it('Given every setting in the environment, When loaded, Then each is parsed to its type', () => {
    const config = loadConfig(spec, {
      SVC_PORT: '6000',
      SVC_WORKERS: '64',
      SVC_VERBOSE: 'yes',
      SVC_MODE: 'fast',
      SVC_KEY: 'keys/builder.pem',
      SVC_LABEL: 'canary',
    });

    expect(config).toEqual({
      port: 6000,
      workers: 64,
      verbose: true,
      mode: 'fast',
      key: 'keys/builder.pem',
      label: 'canary',
    });
  });

  it('Given a variable set to the empty string, When loaded, Then it counts as unset', () => {
    const config = loadConfig(spec, { SVC_KEY: 'k', SVC_PORT: '', SVC_LABEL: '' });

    expect(config.port).toBe(7451);
    expect(config.label).toBeUndefined();
  });

  it('Given several bad settings, When loaded, Then one error names every one with its value and what is expected', () => {
    const problems = problemsOf(() =>
      loadConfig(spec, { SVC_PORT: 'abc', SVC_WORKERS: '65', SVC_VERBOSE: 'maybe', SVC_MODE: 'quick' }),
    );

    expect(problems).toEqual([
      'SVC_PORT="abc": expected a TCP port 1-65535',
      'SVC_WORKERS="65": expected an integer from 1 to 64',
      'SVC_VERBOSE="maybe": expected one of true, 1, yes, on, false, 0, no, off',
      'SVC_MODE="quick": expected one of fast, safe',
      'SVC_KEY is not set: expected a filesystem path',
    ]);
  });

  it('Given bad settings, When loaded, Then the error message lists them one a line', () => {
    const attempt = () => loadConfig(spec, { SVC_PORT: '0' });

    expect(attempt).toThrow(
      new ConfigError([
        { env: 'SVC_PORT', value: '0', expected: 'a TCP port 1-65535' },
        { env: 'SVC_KEY', value: undefined, expected: 'a filesystem path' },
      ]),
    );
    expect(attempt).toThrow(
      'SVC_PORT="0": expected a TCP port 1-65535\nSVC_KEY is not set: expected a filesystem path',
    );
  });
});

describe('parsers', () => {
  it.each([
    ['1', 1],
    ['65535', 65535],
    [' 7451 ', 7451],
    ['0', undefined],
    ['65536', undefined],
    ['-1', undefined],
    ['80.5', undefined],
    ['0x50', undefined],
    ['1e3', undefined],
    ['abc', undefined],
  ])('Given port text %j, When parsed, Then the port is %p', (raw, expected) => {
    expect(port().parse(raw)).toBe(expected);
  });

  it.each([
    ['127.0.0.1:7451', { host: '127.0.0.1', port: 7451 }],
    ['0.0.0.0:1', { host: '0.0.0.0', port: 1 }],
    ['ledger.internal:7453', { host: 'ledger.internal', port: 7453 }],
    ['[::1]:7454', { host: '::1', port: 7454 }],
    ['[::]:7454', { host: '::', port: 7454 }],
    ['localhost', undefined],
    [':7451', undefined],
    ['::1:7451', undefined],
    ['host:0', undefined],
    ['host:70000', undefined],
    ['http://host:7451', undefined],
    ['[host]:7451', undefined],
  ])('Given address text %j, When parsed as host:port, Then the result is %p', (raw, expected) => {
    expect(hostPort().parse(raw)).toEqual(expected);
  });

  it('Given a comma-separated broker list, When parsed, Then every broker is kept in order', () => {
    expect(hostPortList().parse('127.0.0.1:9092, kafka-2:9093')).toEqual([
      { host: '127.0.0.1', port: 9092 },
      { host: 'kafka-2', port: 9093 },
    ]);
  });

  it('Given a broker list with one bad entry, When parsed, Then the whole list is refused', () => {
    expect(hostPortList().parse('127.0.0.1:9092,kafka-2')).toBeUndefined();
    expect(hostPortList().parse('127.0.0.1:9092,')).toBeUndefined();
  });

  it.each([
    ['true', true],
    ['ON', true],
    ['1', true],
    ['no', false],
    ['0', false],
    ['False', false],
    ['maybe', undefined],
  ])('Given boolean text %j, When parsed, Then the result is %p', (raw, expected) => {
    expect(boolean().parse(raw)).toBe(expected);
  });

  it('Given an integer range, When parsing its bounds and beyond, Then only the bounds are accepted', () => {
    const workers = integer(-2, 2);

    expect([workers.parse('-2'), workers.parse('2'), workers.parse('-3'), workers.parse('3')]).toEqual([
      -2,
      2,
      undefined,
      undefined,
    ]);
  });

  it('Given a path with a NUL byte, When parsed, Then it is refused', () => {
    expect(path().parse('/var/lib/rebootless')).toBe('/var/lib/rebootless');
    expect(path().parse('/var/\0/x')).toBeUndefined();
  });

  it('Given blank text, When parsed as a string, Then it is refused', () => {
    expect(text().parse('   ')).toBeUndefined();
  });
});

describe('formatConfigProblem', () => {
  it('Given a missing variable, When formatted, Then it says the variable is not set', () => {
    const problem: ConfigProblem = { env: 'LEDGER_DB', value: undefined, expected: 'a filesystem path' };

    expect(formatConfigProblem(problem)).toBe('LEDGER_DB is not set: expected a filesystem path');
  });

  it('Given a value with quotes, When formatted, Then the value is quoted unambiguously', () => {
    const problem: ConfigProblem = { env: 'LOG_LEVEL', value: 'in"fo', expected: 'one of info, debug' };

    expect(formatConfigProblem(problem)).toBe('LOG_LEVEL="in\\"fo": expected one of info, debug');
  });
});
