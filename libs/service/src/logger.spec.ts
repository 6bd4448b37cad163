// Nest's LoggerService calling conventions, through the adapter, to the one log shape.
import { createLogger } from '@rebootless/telemetry';
import { ServiceLogger } from './logger';

function capture() {
  const records: Record<string, unknown>[] = [];
  const logger = new ServiceLogger(
    createLogger({
      service: 'dispatcher',
      level: 'verbose',
      format: 'json',
      write: (line) => records.push(JSON.parse(line) as Record<string, unknown>),
    }),
  );
  return { logger, records };
}

const STACK = 'Error: boom\n    at start (main.js:1:1)';

describe('ServiceLogger', () => {
  it('takes Nest’s last string argument as the context', () => {
    const { logger, records } = capture();
    logger.log('Starting Nest application...', 'NestFactory');
    logger.verbose('detail', 'RolloutService');
    expect(records).toEqual([
      expect.objectContaining({ level: 'info', msg: 'Starting Nest application...', context: 'NestFactory' }),
      expect.objectContaining({ level: 'verbose', msg: 'detail', context: 'RolloutService' }),
    ]);
  });

  it('keeps an error’s stack apart from its context, and writes no stack that was not given', () => {
    const { logger, records } = capture();
    logger.error('failed to start: boom', STACK, 'NestFactory');
    logger.error('failed to start: boom', STACK);
    logger.error('start hook failed', undefined);
    expect(records[0]).toMatchObject({
      level: 'error',
      msg: 'failed to start: boom',
      stack: STACK,
      context: 'NestFactory',
    });
    expect(records[1]).toMatchObject({ stack: STACK });
    expect(records[1]).not.toHaveProperty('context');
    expect(records[2]).not.toHaveProperty('stack');
  });

  it('writes an Error’s message with its stack, and objects as JSON', () => {
    const { logger, records } = capture();
    logger.warn(new Error('relay failed'));
    logger.debug({ hosts: 3 });
    expect(records[0]).toMatchObject({
      level: 'warn',
      msg: 'relay failed',
      stack: expect.stringContaining('relay failed'),
    });
    expect(records[1]).toMatchObject({ level: 'debug', msg: '{"hosts":3}' });
  });
});
