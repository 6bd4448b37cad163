// A typed reader for the environment. Pure: it takes the environment as an argument, so every
// rule is unit-tested without touching process.env, and it reports every bad setting at once
// so an operator fixes their unit file in one pass instead of one restart per typo.

/** One thing wrong with the environment, named by the variable the operator must change. */
export interface ConfigProblem {
  readonly env: string;
  /** The raw value as found; undefined when the variable is not set. */
  readonly value: string | undefined;
  /** What would have been accepted, phrased to follow "expected". */
  readonly expected: string;
}

export function formatConfigProblem(problem: ConfigProblem): string {
  const found = problem.value === undefined ? ' is not set' : `=${JSON.stringify(problem.value)}`;
  return `${problem.env}${found}: expected ${problem.expected}`;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map(formatConfigProblem).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Turns one raw string into a value, or undefined when the string is not acceptable. */
export interface Parser<T> {
  readonly expected: string;
  parse(raw: string): T | undefined;
}

export type Env = Readonly<Record<string, string | undefined>>;

export type ReadResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/**
 * A setting reads one or more variables. Most read exactly one (see `setting`); a few, like the
 * gRPC listen address, combine two.
 */
export interface Setting<T> {
  /** The variables this setting reads, for documentation. */
  readonly env: readonly string[];
  readonly description: string;
  /** The default as an operator would write it, for documentation. */
  readonly defaultText?: string;
  read(env: Env): ReadResult<T>;
}

export type ConfigSpec = Readonly<Record<string, Setting<unknown>>>;

export type ConfigOf<S extends ConfigSpec> = {
  readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never;
};

/** An unset variable and an empty one mean the same: use the default. */
export function rawValue(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

interface SettingOptions<T> {
  readonly env: string;
  readonly parser: Parser<T>;
  readonly description: string;
}

export function setting<T>(options: SettingOptions<T> & { readonly default: string }): Setting<T>;
export function setting<T>(options: SettingOptions<T> & { readonly required: true }): Setting<T>;
export function setting<T>(options: SettingOptions<T>): Setting<T | undefined>;
export function setting<T>(
  options: SettingOptions<T> & { readonly default?: string; readonly required?: boolean },
): Setting<T | undefined> {
  const { env: name, parser, description } = options;
  return {
    env: [name],
    description,
    ...(options.default === undefined ? {} : { defaultText: options.default }),
    read(env) {
      const raw = rawValue(env, name) ?? options.default;
      if (raw === undefined) {
        return options.required
          ? { ok: false, problems: [{ env: name, value: undefined, expected: parser.expected }] }
          : { ok: true, value: undefined };
      }
      const value = parser.parse(raw);
      return value === undefined
        ? { ok: false, problems: [{ env: name, value: raw, expected: parser.expected }] }
        : { ok: true, value };
    },
  };
}

/** Reads every setting of the spec; throws one ConfigError that lists every problem found. */
export function loadConfig<S extends ConfigSpec>(spec: S, env: Env): ConfigOf<S> {
  const values: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [key, entry] of Object.entries(spec)) {
    const result = entry.read(env);
    if (result.ok) values[key] = result.value;
    else problems.push(...result.problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values as ConfigOf<S>;
}

// ---- parsers -------------------------------------------------------------------------------

export function port(): Parser<number> {
  return {
    expected: 'a TCP port 1-65535',
    parse: (raw) => parseIntegerIn(raw, 1, 65535),
  };
}

export function integer(min: number, max: number): Parser<number> {
  return {
    expected: `an integer from ${min} to ${max}`,
    parse: (raw) => parseIntegerIn(raw, min, max),
  };
}

function parseIntegerIn(raw: string, min: number, max: number): number | undefined {
  if (!/^-?\d+$/.test(raw.trim())) return undefined;
  const value = Number(raw.trim());
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
}

/** A host and a port; the host is a name, an IPv4 address or a bracketed IPv6 address. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function formatHostPort({ host, port: p }: HostPort): string {
  return host.includes(':') ? `[${host}]:${p}` : `${host}:${p}`;
}

const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d+)$/;

function parseHostPortText(raw: string): HostPort | undefined {
  const match = HOST_PORT.exec(raw.trim());
  if (!match) return undefined;
  const host = match[1] ?? match[2];
  const p = parseIntegerIn(match[3] ?? '', 1, 65535);
  if (host === undefined || p === undefined) return undefined;
  if (match[1] !== undefined && !host.includes(':')) return undefined;
  return { host, port: p };
}

export function hostPort(): Parser<HostPort> {
  return {
    expected: 'host:port, e.g. 127.0.0.1:7451 or [::1]:7451',
    parse: parseHostPortText,
  };
}

export function hostPortList(): Parser<readonly HostPort[]> {
  return {
    expected: 'a comma-separated list of host:port, e.g. 127.0.0.1:9092,10.0.0.2:9092',
    parse(raw) {
      const items = raw.split(',').map((item) => parseHostPortText(item));
      return items.length > 0 && items.every((item): item is HostPort => item !== undefined) ? items : undefined;
    },
  };
}

export function path(): Parser<string> {
  return {
    expected: 'a filesystem path',
    // A NUL byte cannot be part of any path on the systems we run on.
    parse: (raw) => (raw.includes('\0') ? undefined : raw),
  };
}

const TRUE_WORDS = ['true', '1', 'yes', 'on'];
const FALSE_WORDS = ['false', '0', 'no', 'off'];

export function boolean(): Parser<boolean> {
  return {
    expected: `one of ${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')}`,
    parse(raw) {
      const word = raw.trim().toLowerCase();
      if (TRUE_WORDS.includes(word)) return true;
      if (FALSE_WORDS.includes(word)) return false;
      return undefined;
    },
  };
}

export function oneOf<const V extends readonly [string, ...string[]]>(values: V): Parser<V[number]> {
  return {
    expected: `one of ${values.join(', ')}`,
    parse: (raw) => values.find((value) => value === raw.trim()),
  };
}

export function text(): Parser<string> {
  return {
    expected: 'a non-empty string',
    parse: (raw) => (raw.trim() === '' ? undefined : raw),
  };
}
