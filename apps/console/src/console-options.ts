import type { ConsoleData } from './console-data';
import type { SessionStore } from './sessions';

export const CONSOLE_OPTIONS = Symbol('CONSOLE_OPTIONS');

export interface ConsoleOptions {
  readonly data: ConsoleData;
  readonly sessions: SessionStore;
  /** Served over HTTPS: cookies are Secure. */
  readonly secure: boolean;
}
