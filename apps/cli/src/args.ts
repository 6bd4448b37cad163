// A small command-line parser driven by the command table (commands.ts). Pure, so every
// mistake an operator can make is a unit test: the message says what is wrong and what is valid.
import { UsageError } from './errors';

export interface FlagSpec {
  readonly name: string;
  /** What the value looks like, e.g. "FILE"; absent for a switch. */
  readonly value?: string;
  readonly repeatable?: boolean;
  readonly required?: boolean;
  readonly help: string;
}

export interface PositionalSpec {
  readonly name: string;
  readonly help: string;
}

export interface CommandSpec {
  /** ["build", "submit"], or ["audit"] for a command without subcommands. */
  readonly path: readonly string[];
  readonly summary: string;
  readonly positionals: readonly PositionalSpec[];
  readonly flags: readonly FlagSpec[];
  readonly examples?: readonly string[];
}

export type FlagValue = string | boolean | string[];

export interface ParsedCommand {
  readonly kind: 'command';
  readonly command: CommandSpec;
  readonly positionals: Readonly<Record<string, string>>;
  readonly flags: Readonly<Record<string, FlagValue>>;
}

export interface HelpRequest {
  readonly kind: 'help';
  /** The words of the command or group asked about; empty for the whole CLI. */
  readonly topic: readonly string[];
}

/** `--version` anywhere: the program's version, whatever else was given (as --help). */
export interface VersionRequest {
  readonly kind: 'version';
  readonly json: boolean;
}

export type ParseResult = ParsedCommand | HelpRequest | VersionRequest;

export interface CommandTable {
  readonly program: string;
  readonly commands: readonly CommandSpec[];
  /** Flags every command takes (output and connection settings). */
  readonly globalFlags: readonly FlagSpec[];
}

/** Top-level words: groups ("build") and single commands ("audit"), in table order. */
export function topLevelWords(table: CommandTable): string[] {
  return [...new Set(table.commands.map((c) => c.path[0]!))];
}

export function subcommandsOf(table: CommandTable, group: string): string[] {
  return table.commands.filter((c) => c.path[0] === group && c.path.length > 1).map((c) => c.path[1]!);
}

/** Edits (insert, delete, substitute, swap two neighbours) from a to b: "lsit" is one from "list". */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate when it is close enough to be a typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate);
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  return best && best.distance <= Math.max(1, Math.floor(best.candidate.length / 3)) ? best.candidate : undefined;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const guess = suggest(word, candidates);
  return guess ? ` (did you mean "${guess}"?)` : '';
}

export function flagUsage(flag: FlagSpec): string {
  return flag.value ? `--${flag.name} ${flag.value}` : `--${flag.name}`;
}

interface Scan {
  words: string[];
  flags: Map<string, FlagValue>;
}

export function parseArgs(argv: readonly string[], table: CommandTable): ParseResult {
  const globals = new Map(table.globalFlags.map((f) => [f.name, f]));
  const scan: Scan = { words: [], flags: new Map() };
  let command: CommandSpec | undefined;
  let help = false;
  let onlyPositionals = false;

  const resolve = (): CommandSpec | undefined => {
    const [first, second] = scan.words;
    if (first === undefined) return undefined;
    const single = table.commands.find((c) => c.path.length === 1 && c.path[0] === first);
    if (single) return single;
    if (second === undefined) return undefined;
    return table.commands.find((c) => c.path[0] === first && c.path[1] === second);
  };

  const checkWords = () => {
    const [first, second] = scan.words;
    if (first === undefined) return;
    const tops = topLevelWords(table);
    if (!tops.includes(first)) {
      throw new UsageError(
        `unknown command "${first}"${didYouMean(first, tops)}; the commands are: ${tops.join(', ')} ` +
          `(${table.program} --help lists them with what they do)`,
      );
    }
    if (second !== undefined && !command) {
      const subs = subcommandsOf(table, first);
      throw new UsageError(
        `unknown subcommand "${first} ${second}"${didYouMean(second, subs)}; ${first} takes: ${subs.join(', ')} ` +
          `(${table.program} ${first} --help)`,
      );
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (onlyPositionals || !arg.startsWith('-') || arg === '-') {
      scan.words.push(arg);
      if (!command && scan.words[0] !== 'help') {
        command = resolve();
        checkWords();
      }
      continue;
    }
    if (arg === '--') {
      onlyPositionals = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    // Commands that take a patch's --version VERSION keep it; everywhere else it is the program's.
    if (arg === '-V' || (arg === '--version' && !command?.flags.some((f) => f.name === 'version')))
      return { kind: 'version', json: argv.includes('--json') };
    if (!arg.startsWith('--')) {
      throw new UsageError(`unknown option "${arg}": options are spelled out, e.g. --json (--help lists them)`);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const spec = globals.get(name) ?? command?.flags.find((f) => f.name === name);
    if (!spec) {
      if (!command) {
        // A command's own flag before the command: say where it belongs rather than "unknown".
        const owners = table.commands.filter((c) => c.flags.some((f) => f.name === name));
        throw new UsageError(
          owners.length > 0
            ? `--${name} belongs after the command (${owners.map((c) => c.path.join(' ')).join(', ')}), e.g. ${table.program} ${owners[0]!.path.join(' ')} --${name} ...`
            : `unknown option --${name}${didYouMean(name, [...globals.keys()])}; the options every command takes: ${table.globalFlags.map(flagUsage).join(', ')}`,
        );
      }
      const names = [...command.flags, ...table.globalFlags].map((f) => f.name);
      throw new UsageError(
        `${command.path.join(' ')} does not take --${name}${didYouMean(name, names)}; ` +
          `its options: ${command.flags.map(flagUsage).join(', ') || '(none of its own)'} ` +
          `(${table.program} ${command.path.join(' ')} --help)`,
      );
    }
    let value: FlagValue;
    if (!spec.value) {
      if (inline !== undefined) {
        if (!['true', 'false'].includes(inline)) {
          throw new UsageError(`--${name} is a switch and takes no value (write --${name}, not --${name}=${inline})`);
        }
        value = inline === 'true';
      } else value = true;
    } else {
      const next = inline ?? argv[i + 1];
      if (next === undefined || (inline === undefined && next.startsWith('--'))) {
        throw new UsageError(`--${name} needs a value: ${flagUsage(spec)} (${spec.help})`);
      }
      if (inline === undefined) i++;
      value = next;
    }
    const previous = scan.flags.get(name);
    if (spec.repeatable) {
      scan.flags.set(name, [...((previous as string[] | undefined) ?? []), value as string]);
    } else if (previous !== undefined && spec.value) {
      throw new UsageError(`--${name} is given twice ("${previous as string}" and "${value as string}"); give it once`);
    } else {
      scan.flags.set(name, value);
    }
  }

  if (help || scan.words[0] === 'help') {
    const topic = scan.words[0] === 'help' ? scan.words.slice(1) : (command?.path ?? scan.words);
    return { kind: 'help', topic };
  }
  if (!command) {
    const [first] = scan.words;
    if (first === undefined) {
      throw new UsageError(
        `no command given; the commands are: ${topLevelWords(table).join(', ')} (${table.program} --help)`,
      );
    }
    const subs = subcommandsOf(table, first);
    throw new UsageError(`${first} needs a subcommand: ${subs.join(', ')} (${table.program} ${first} --help)`);
  }

  // The command's own words come first; what follows are its positionals.
  const given = scan.words.slice(command.path.length);
  const label = command.path.join(' ');
  if (given.length > command.positionals.length) {
    const extra = given.slice(command.positionals.length);
    throw new UsageError(
      `${label} takes ${command.positionals.length === 0 ? 'no arguments' : command.positionals.map((p) => p.name).join(' ')}` +
        `, but was also given: ${extra.map((e) => `"${e}"`).join(' ')}`,
    );
  }
  if (given.length < command.positionals.length) {
    const missing = command.positionals[given.length]!;
    throw new UsageError(`${label} needs ${missing.name}: ${missing.help} (usage: ${usageLine(table, command)})`);
  }
  for (const flag of command.flags) {
    if (flag.required && !scan.flags.has(flag.name)) {
      throw new UsageError(`${label} needs ${flagUsage(flag)}: ${flag.help}`);
    }
  }
  return {
    kind: 'command',
    command,
    positionals: Object.fromEntries(command.positionals.map((p, i) => [p.name, given[i]!])),
    flags: Object.fromEntries(scan.flags),
  };
}

export function usageLine(table: CommandTable, command: CommandSpec): string {
  const required = command.flags.filter((f) => f.required).map(flagUsage);
  return [table.program, ...command.path, ...command.positionals.map((p) => p.name), ...required, '[options]'].join(
    ' ',
  );
}

function flagLines(flags: readonly FlagSpec[]): string[] {
  const width = Math.max(...flags.map((f) => flagUsage(f).length)) + 2;
  return flags.map(
    (f) =>
      `  ${flagUsage(f).padEnd(width)}${f.help}${f.repeatable ? ' (repeatable)' : ''}${f.required ? ' (required)' : ''}`,
  );
}

/** Help text for the CLI, a group or one command; throws a UsageError for an unknown topic. */
export function helpText(table: CommandTable, topic: readonly string[]): string {
  const command = table.commands.find(
    (c) => c.path.length === topic.length && c.path.every((word, i) => word === topic[i]),
  );
  if (command) {
    return [
      `usage: ${usageLine(table, command)}`,
      '',
      command.summary,
      ...(command.positionals.length
        ? ['', 'arguments:', ...command.positionals.map((p) => `  ${p.name}  ${p.help}`)]
        : []),
      ...(command.flags.length ? ['', 'options:', ...flagLines(command.flags)] : []),
      '',
      'options of every command:',
      ...flagLines(table.globalFlags),
      ...(command.examples?.length ? ['', 'examples:', ...command.examples.map((e) => `  ${e}`)] : []),
    ].join('\n');
  }
  const group = topic[0];
  const inGroup = table.commands.filter((c) => group === undefined || c.path[0] === group);
  if (topic.length > 1 || inGroup.length === 0) {
    // Reuse the parser's messages for an unknown topic.
    parseArgs(topic, table);
  }
  const width = Math.max(...inGroup.map((c) => c.path.join(' ').length)) + 2;
  return [
    `usage: ${table.program} ${group ?? '<command>'}${group ? ' <subcommand>' : ''} [options]`,
    '',
    'commands:',
    ...inGroup.map((c) => `  ${c.path.join(' ').padEnd(width)}${c.summary}`),
    '',
    'options of every command:',
    ...flagLines(table.globalFlags),
    '',
    `${table.program} <command> --help shows a command's own options; ${table.program} --version (or -V) its version.`,
  ].join('\n');
}
