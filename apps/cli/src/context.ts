// What a command handler gets: its arguments, the services, and the two ways of answering
// (text for people, one JSON document for scripts) plus progress on stderr for people at a terminal.
import type { ParsedCommand } from './args';
import type { Flags } from './flags';
import { toJsonView } from './json-view';
import { LiveFrame } from './progress';
import type { ServiceCalls } from './service-calls';

export interface Output {
  write(text: string): unknown;
}

export interface TerminalOutput extends Output {
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export class CommandContext {
  readonly flags: Flags;
  readonly positionals: Readonly<Record<string, string>>;
  readonly json: boolean;
  /** Redrawn progress, only for people at a terminal. */
  readonly live: LiveFrame | undefined;
  /** While watching: the command that picks the watch up again after Ctrl-C. */
  followWith: string | undefined;

  constructor(
    parsed: ParsedCommand,
    private readonly lazyCalls: () => ServiceCalls,
    private readonly stdout: Output,
    private readonly stderr: TerminalOutput,
    readonly now: () => Date,
    readonly readFile: (path: string) => Buffer,
  ) {
    this.flags = parsed.flags;
    this.positionals = parsed.positionals;
    this.json = parsed.flags['json'] === true;
    this.live = !this.json && stderr.isTTY ? new LiveFrame(stderr) : undefined;
  }

  get calls(): ServiceCalls {
    return this.lazyCalls();
  }

  /** A message's canonical JSON (enum names, RFC 3339 times), by its full proto type name. */
  view(typeName: string, value: unknown): unknown {
    return toJsonView(this.calls.typeDefinitions, typeName, value);
  }

  /** The answer: `text` for people, or `json()` as one document. */
  answer(text: string, json: () => unknown): void {
    if (this.json) this.document(json());
    else this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** One JSON document on stdout, whatever the output mode. */
  document(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Raw text on stdout (CSV). */
  raw(text: string): void {
    this.stdout.write(text);
  }

  /** A progress line for people when stderr is not a terminal (logs, CI); nothing for --json. */
  note(line: string): void {
    if (!this.json) this.stderr.write(`${line}\n`);
  }
}
