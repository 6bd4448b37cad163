import { ExitCode } from './exit-codes';

/** An error the CLI reports as one message on stderr and an exit code; never a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The command line (or the local setup it points at) is wrong; the message says how to fix it. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, ExitCode.Usage);
    this.name = 'UsageError';
  }
}
