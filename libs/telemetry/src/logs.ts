// One log shape for every service and the agent: a JSON object a line (for journald and log
// shippers) or, with LOG_FORMAT=text, the same record as one readable line. Records written
// inside an active span carry its trace and span ids, so a line leads to its trace.
import { hostname } from 'node:os';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';

export const LOG_RECORD_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'verbose'] as const;
export type LogRecordLevel = (typeof LOG_RECORD_LEVELS)[number];
export type LogRecordFormat = 'json' | 'text';

/** The fields every line has; trace_id and span_id only inside a span, context when one is given. */
export interface LogRecord {
  readonly level: LogRecordLevel;
  readonly time: string;
  readonly service: string;
  readonly host: string;
  readonly host_id?: string;
  readonly msg: string;
  readonly context?: string;
  readonly trace_id?: string;
  readonly span_id?: string;
  readonly [field: string]: unknown;
}

export interface LogOptions {
  readonly service: string;
  readonly level: LogRecordLevel;
  readonly format: LogRecordFormat;
  /** The agent's host id (the name it enrolled with), next to the machine's hostname. */
  readonly hostId?: string;
  /** Where lines go; stdout, and stderr for error and fatal, when absent (tests capture lines here). */
  readonly write?: (line: string, level: LogRecordLevel) => void;
}

// pino's numbers; "verbose" stands where pino has "trace".
const LEVEL_VALUE: Record<LogRecordLevel, number> = {
  fatal: 60,
  error: 50,
  warn: 40,
  info: 30,
  debug: 20,
  verbose: 10,
};
const LEVEL_NAME = new Map(Object.entries(LEVEL_VALUE).map(([name, value]) => [value, name as LogRecordLevel]));
const PINO_LEVEL: Record<LogRecordLevel, pino.Level> = {
  fatal: 'fatal',
  error: 'error',
  warn: 'warn',
  info: 'info',
  debug: 'debug',
  verbose: 'trace',
};

export type RebootlessLogger = Logger;

export function createLogger(options: LogOptions): RebootlessLogger {
  const write =
    options.write ??
    ((line: string, level: LogRecordLevel) =>
      (level === 'error' || level === 'fatal' ? process.stderr : process.stdout).write(line));
  const destination = {
    write(json: string): void {
      // pino hands over one serialized record; the level decides stdout or stderr.
      const record = JSON.parse(json) as LogRecord;
      write(options.format === 'text' ? `${formatLogText(record)}\n` : json, record.level);
    },
  };
  return pino(
    {
      level: PINO_LEVEL[options.level],
      base: { service: options.service, host: hostname(), ...(options.hostId ? { host_id: options.hostId } : {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (_label, value) => ({ level: LEVEL_NAME.get(value) ?? 'info' }) },
      mixin: activeSpanIds,
    },
    destination,
  );
}

/** The ids of the span active where the line is written: none without tracing. */
function activeSpanIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan()?.spanContext();
  return span && isSpanContextValid(span) ? { trace_id: span.traceId, span_id: span.spanId } : {};
}

const TEXT_FIELDS = new Set([
  'level',
  'time',
  'service',
  'host',
  'host_id',
  'msg',
  'context',
  'trace_id',
  'span_id',
  'stack',
]);

/** `2026-12-06T05:44:34.123Z INFO  ledger [Context] message key=value trace=…/…` */
export function formatLogText(record: LogRecord): string {
  const extra = Object.entries(record)
    .filter(([key]) => !TEXT_FIELDS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const parts = [
    record.time,
    record.level.toUpperCase().padEnd(7),
    record.host_id ? `${record.service}@${record.host_id}` : record.service,
    ...(record.context ? [`[${record.context}]`] : []),
    record.msg,
    ...extra,
    ...(record.trace_id ? [`trace=${record.trace_id}/${record.span_id ?? ''}`] : []),
  ];
  const line = parts.join(' ');
  return typeof record['stack'] === 'string' ? `${line}\n${record['stack']}` : line;
}
