// The rebootless command: parse, dispatch to the command's handler, map every failure to one
// message on stderr and an exit code (exit-codes.ts). Everything from outside comes in through
// CliIo, so the whole CLI runs the same in a test as from a shell.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { telemetryStatus, withSpan } from '@rebootless/telemetry';
import { parseArgs, helpText, type ParsedCommand } from './args';
import { audit, hostsCount, hostsList, hostsShow, ledgerVerify, reportPci, reportVex } from './ledger-commands';
import { buildList, buildShow, buildSubmit, buildWatch, patchList, patchRetract } from './build-commands';
import { CLI } from './commands';
import { CommandContext, type Output, type TerminalOutput } from './context';
import { CliError } from './errors';
import { CHECK_UNKNOWN, hostsCheck, upgrade } from './fleet-commands';
import { hostsRevokeKey } from './key-commands';
import { ExitCode } from './exit-codes';
import {
  rolloutAbort,
  rolloutApprove,
  rolloutCreate,
  rolloutList,
  rolloutPause,
  rolloutResume,
  rolloutRollback,
  rolloutShow,
  rolloutWatch,
  undo,
} from './rollout-commands';
import { hostsClearQuarantine } from './quarantine-commands';
import { ServiceCalls } from './service-calls';
import { resolveSettings } from './settings';

/** The package's version: dist/ and src/ both sit next to package.json. */
export const CLI_VERSION = (
  JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
).version;

type Handler = (ctx: CommandContext) => Promise<ExitCode>;

const HANDLERS: Readonly<Record<string, Handler>> = {
  'build submit': buildSubmit,
  'build watch': buildWatch,
  'build list': buildList,
  'build show': buildShow,
  'patch retract': patchRetract,
  'patch list': patchList,
  'rollout create': rolloutCreate,
  'rollout watch': rolloutWatch,
  'rollout pause': rolloutPause,
  'rollout resume': rolloutResume,
  'rollout approve': rolloutApprove,
  'rollout abort': rolloutAbort,
  'rollout rollback': rolloutRollback,
  'rollout list': rolloutList,
  'rollout show': rolloutShow,
  'hosts list': hostsList,
  'hosts count': hostsCount,
  'hosts show': hostsShow,
  'hosts check': hostsCheck,
  'hosts clear-quarantine': hostsClearQuarantine,
  'hosts revoke-key': hostsRevokeKey,
  upgrade,
  undo,
  audit,
  'report pci': reportPci,
  'report vex': reportVex,
  'ledger verify': ledgerVerify,
};

export interface CliIo {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: Output;
  readonly stderr: TerminalOutput;
  readonly now: () => Date;
  readonly readFile: (path: string) => Buffer;
  readonly exists: (path: string) => boolean;
  /** Where `node scripts/pki.mjs init` and the local stack keep the pki. */
  readonly defaultPkiDir: string;
  /** Registers a Ctrl-C handler; returns its removal. */
  readonly onInterrupt: (handler: () => void) => () => void;
}

export async function runCli(io: CliIo): Promise<ExitCode> {
  const fail = (error: unknown): ExitCode => {
    if (error instanceof CliError) {
      io.stderr.write(`rebootless: ${error.message}\n`);
      return error.exitCode;
    }
    io.stderr.write(
      `rebootless: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return ExitCode.Internal;
  };

  let parsed: ParsedCommand;
  try {
    const result = parseArgs(io.argv, CLI);
    if (result.kind === 'help') {
      io.stdout.write(`${helpText(CLI, result.topic)}\n`);
      return ExitCode.Ok;
    }
    if (result.kind === 'version') {
      io.stdout.write(
        result.json
          ? `${JSON.stringify({ program: CLI.program, version: CLI_VERSION })}\n`
          : `${CLI.program} ${CLI_VERSION}\n`,
      );
      return ExitCode.Ok;
    }
    parsed = result;
  } catch (error) {
    return fail(error);
  }

  let calls: ServiceCalls | undefined;
  const lazyCalls = () => {
    calls ??= new ServiceCalls(resolveSettings(parsed.flags, io.env, io.defaultPkiDir, io.exists));
    return calls;
  };
  const ctx = new CommandContext(parsed, lazyCalls, io.stdout, io.stderr, io.now, io.readFile);
  const name = parsed.command.path.join(' ');
  let interrupted = false;
  const removeInterrupt = io.onInterrupt(() => {
    interrupted = true;
    calls?.cancelStreams();
  });
  try {
    // Settle the connection settings before anything else, so a bad setting is a usage error
    // even for commands that fail on their own flags later.
    lazyCalls();
    // One span per command: the root of its trace (a rollout's, for rollout create and undo),
    // so its calls (create, then watch) hang together.
    return await withSpan(`rebootless ${name}`, {}, async (span) => {
      // With tracing on, where to look: the trace this command roots, in the tracer's UI.
      if (telemetryStatus().exporting) io.stderr.write(`rebootless: trace ${span.spanContext().traceId}\n`);
      const code = await HANDLERS[name]!(ctx);
      span.setAttribute('rebootless.cli.exit_code', code);
      return code;
    });
  } catch (error) {
    if (interrupted) {
      io.stderr.write(
        `rebootless: stopped watching (Ctrl-C); it goes on in the service${ctx.followWith ? `: ${ctx.followWith} follows it again` : ''}\n`,
      );
      return ExitCode.Interrupted;
    }
    const code = fail(error);
    if (name !== 'hosts check') return code;
    // A monitoring system reads stdout and the plugin's state: a check that could not run is UNKNOWN.
    io.stdout.write(`REBOOTLESS UNKNOWN - the check could not run (rebootless exit ${code}; stderr says why)\n`);
    return CHECK_UNKNOWN as ExitCode;
  } finally {
    removeInterrupt();
    calls?.close();
  }
}
