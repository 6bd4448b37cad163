import type { LoggerService, LogLevel as NestLogLevel } from '@nestjs/common';
import { createLogger, type RebootlessLogger } from '@rebootless/telemetry';
import { LOG_LEVELS, type LogFormat, type LogLevel } from './service-settings';

const NEST_LEVEL: Record<LogLevel, NestLogLevel> = {
  fatal: 'fatal',
  error: 'error',
  warn: 'warn',
  info: 'log',
  debug: 'debug',
  verbose: 'verbose',
};

/** The Nest levels written for a LOG_LEVEL: that level and every more severe one. */
export function enabledLogLevels(level: LogLevel): NestLogLevel[] {
  return LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1).map((name) => NEST_LEVEL[name]);
}

const STACK_LINE = /\n\s+at /;

/**
 * Nest's LoggerService over the shared pino logger (@rebootless/telemetry), so that Nest's own
 * lines ("Starting Nest application") and ours have one shape. Nest passes the context last and,
 * for errors, a stack before it.
 */
export class ServiceLogger implements LoggerService {
  constructor(readonly pino: RebootlessLogger) {}

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.write('error', message, params, true);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.write('trace', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params, true);
  }

  private write(
    level: 'info' | 'error' | 'warn' | 'debug' | 'trace' | 'fatal',
    message: unknown,
    params: unknown[],
    mayHaveStack = false,
  ): void {
    const rest = params.filter((p) => p !== undefined);
    const fields: Record<string, unknown> = {};
    const last = rest[rest.length - 1];
    if (typeof last === 'string' && !(mayHaveStack && STACK_LINE.test(last))) {
      fields['context'] = last;
      rest.pop();
    }
    const stack = rest.find((p): p is string => typeof p === 'string' && STACK_LINE.test(p));
    if (stack) fields['stack'] = stack;
    if (message instanceof Error) {
      fields['stack'] ??= message.stack;
      this.pino[level](fields, message.message);
    } else {
      this.pino[level](fields, typeof message === 'string' ? message : JSON.stringify(message));
    }
  }
}

export function createServiceLogger(
  service: string,
  options: { readonly level: LogLevel; readonly format: LogFormat },
): ServiceLogger {
  return new ServiceLogger(createLogger({ service, level: options.level, format: options.format }));
}
