// The log shape, against pino and the real OpenTelemetry SDK: what a log shipper or a person
// reading journald gets from every service and the agent.
import { hostname } from 'node:os';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { createLogger, formatLogText, type LogRecord, type LogRecordLevel } from './logs';

const provider = new NodeTracerProvider();
beforeAll(() => provider.register());
afterAll(() => provider.shutdown());

function capture(options: { format: 'json' | 'text'; level?: LogRecordLevel; hostId?: string }) {
  const lines: { line: string; level: LogRecordLevel }[] = [];
  const logger = createLogger({
    service: 'ledger',
    level: options.level ?? 'info',
    format: options.format,
    ...(options.hostId ? { hostId: options.hostId } : {}),
    write: (line, level) => lines.push({ line, level }),
  });
  return { logger, lines };
}

describe('the JSON log shape', () => {
  it('given no span, a line carries level, time, service, host and msg, and no trace ids', () => {
    const { logger, lines } = capture({ format: 'json' });
    logger.info('ledger ready on 127.0.0.1:7453');
    expect(lines).toHaveLength(1);
    const record = JSON.parse(lines[0]!.line) as LogRecord;
    expect(record).toEqual({
      level: 'info',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      service: 'ledger',
      host: hostname(),
      msg: 'ledger ready on 127.0.0.1:7453',
    });
    expect(lines[0]!.line.endsWith('\n')).toBe(true);
  });

  it('when written inside a span, the line carries that span’s trace and span ids', () => {
    const { logger, lines } = capture({ format: 'json' });
    const tracer = provider.getTracer('logs.spec');
    const ids = tracer.startActiveSpan('ApplyPatch', (span) => {
      logger.warn({ context: 'RolloutController' }, 'host web-02 is slow');
      span.end();
      return span.spanContext();
    });
    const record = JSON.parse(lines[0]!.line) as LogRecord;
    expect(record).toMatchObject({
      level: 'warn',
      context: 'RolloutController',
      trace_id: ids.traceId,
      span_id: ids.spanId,
    });
    expect(record.trace_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('the agent’s lines name its host id beside the machine’s hostname', () => {
    const { logger, lines } = capture({ format: 'json', hostId: 'web-01' });
    logger.info('agent ready on 127.0.0.1:7454');
    expect(JSON.parse(lines[0]!.line)).toMatchObject({ service: 'ledger', host: hostname(), host_id: 'web-01' });
  });

  it('below LOG_LEVEL nothing is written; verbose is named verbose; errors are told apart for stderr', () => {
    const { logger, lines } = capture({ format: 'json', level: 'verbose' });
    logger.trace('fine detail');
    logger.error('cannot write to the event log');
    expect(lines.map((l) => [l.level, (JSON.parse(l.line) as LogRecord).level])).toEqual([
      ['verbose', 'verbose'],
      ['error', 'error'],
    ]);
    const quiet = capture({ format: 'json', level: 'warn' });
    quiet.logger.info('ignored');
    quiet.logger.debug('ignored');
    expect(quiet.lines).toEqual([]);
  });
});

describe('LOG_FORMAT=text', () => {
  it('writes the same record as one readable line, the message intact', () => {
    const { logger, lines } = capture({ format: 'text', hostId: 'web-01' });
    logger.info({ context: 'NestFactory', rollout: 'r-1' }, 'agent ready on 127.0.0.1:7454');
    expect(lines[0]!.line).toMatch(
      /^\d{4}-\d\d-\d\dT\S+Z INFO {4}ledger@web-01 \[NestFactory\] agent ready on 127\.0\.0\.1:7454 rollout=r-1\n$/,
    );
  });

  it('puts a stack on the lines after the message, and the trace at the end', () => {
    const text = formatLogText({
      level: 'error',
      time: '2026-12-06T05:00:00.000Z',
      service: 'dispatcher',
      host: 'h',
      msg: 'failed to start',
      stack: 'Error: boom\n    at x (y.js:1:1)',
      trace_id: 'a'.repeat(32),
      span_id: 'b'.repeat(16),
    });
    expect(text).toBe(
      `2026-12-06T05:00:00.000Z ERROR   dispatcher failed to start trace=${'a'.repeat(32)}/${'b'.repeat(16)}\nError: boom\n    at x (y.js:1:1)`,
    );
  });
});
