import { ConsoleLogger, type LogLevel as NestLogLevel } from '@nestjs/common';
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

export function createServiceLogger(
  service: string,
  options: { readonly level: LogLevel; readonly format: LogFormat },
): ConsoleLogger {
  const json = options.format === 'json';
  return new ConsoleLogger(service, {
    prefix: 'rebootless',
    json,
    colors: !json && process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined,
    logLevels: enabledLogLevels(options.level),
  });
}
