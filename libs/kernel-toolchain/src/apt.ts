// Debian's package index as apt sees it on this builder: apt-cache show / madison / pkgnames,
// always with argument arrays. Nothing here installs anything.
import * as os from 'node:os';
import { ToolchainError } from './errors';
import { minimalEnv, runProcess, SpawnError, type RunResult } from './process';
import { compareReleases, isValidKernelRelease, releaseMajorMinor } from './validate';

/** One package stanza of `apt-cache show` (field names as Debian spells them). */
export type Stanza = Record<string, string>;

/** A dependency alternative: `name (op version)`. */
export interface Dependency {
  name: string;
  op?: string;
  version?: string;
}

/** Parses deb822 stanzas (apt-cache show output): blank lines separate, indented lines continue. */
export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  let current: Stanza = {};
  let last: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') {
      if (Object.keys(current).length > 0) out.push(current);
      current = {};
      last = undefined;
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (last !== undefined) current[last] += `\n${line.trim()}`;
      continue;
    }
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*):\s?(.*)$/.exec(line);
    if (m) {
      last = m[1]!;
      current[last] = m[2]!;
    }
  }
  if (Object.keys(current).length > 0) out.push(current);
  return out;
}

/**
 * Parses a Depends field into groups of alternatives:
 * `a (= 1), b | c (>= 2), d:any` becomes [[a =1], [b, c >=2], [d]].
 */
export function parseDepends(field: string | undefined): Dependency[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((group) =>
      group
        .split('|')
        .map((alt) => {
          const m = /^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?/.exec(alt);
          if (!m) return undefined;
          const dep: Dependency = { name: m[1]! };
          if (m[2]) dep.op = m[2];
          if (m[3]) dep.version = m[3];
          return dep;
        })
        .filter((d): d is Dependency => d !== undefined),
    )
    .filter((g) => g.length > 0);
}

export interface AptOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Runs an apt tool (apt-cache, apt-get, dpkg-query, dpkg-deb) with the C locale. */
export async function runAptTool(
  tool: string,
  args: string[],
  opts: AptOptions & { cwd?: string; onLine?: (line: string) => void } = {},
): Promise<RunResult> {
  try {
    return await runProcess(tool, args, {
      cwd: opts.cwd ?? os.tmpdir(),
      env: minimalEnv(os.tmpdir(), { DEBIAN_FRONTEND: 'noninteractive' }),
      timeoutMs: opts.timeoutMs ?? 120_000,
      signal: opts.signal,
      onLine: opts.onLine,
    });
  } catch (error) {
    if (error instanceof SpawnError) {
      throw new ToolchainError(
        'FAILED_PRECONDITION',
        'fetch-headers',
        `${tool} is not available on this builder (${error.errno}); kernel headers come from Debian's ` +
          `packages, so the builder must run on Debian or Ubuntu with apt and dpkg`,
      );
    }
    throw error;
  }
}

/** Turns a timed-out or aborted run into the matching error; returns the result otherwise. */
export function checkInterrupted(result: RunResult, what: string, stage: 'fetch-headers' | 'compile'): RunResult {
  if (result.timedOut) {
    throw new ToolchainError(
      'DEADLINE_EXCEEDED',
      stage,
      `${what} did not finish in time and was killed`,
      undefined,
      result.lines,
    );
  }
  if (result.aborted) {
    throw new ToolchainError('CANCELLED', stage, `${what} was cancelled`, undefined, result.lines);
  }
  return result;
}

/** `apt-cache show --no-all-versions` (the candidate version only); [] when apt knows none of them. */
export async function aptShow(packages: string[], opts: AptOptions = {}): Promise<Stanza[]> {
  const result = checkInterrupted(
    await runAptTool('apt-cache', ['show', '--no-all-versions', '--', ...packages], opts),
    'apt-cache show',
    'fetch-headers',
  );
  const stanzas = parseStanzas(result.stdout).filter((s) => s['Package'] && s['Version']);
  if (result.code !== 0 && stanzas.length === 0) {
    if (/No packages found|Unable to locate|purely virtual/i.test(result.stderr)) return [];
    throw new ToolchainError(
      'INTERNAL',
      'fetch-headers',
      `apt-cache show ${packages.join(' ')} failed (exit ${result.code})`,
      errorLines(result),
    );
  }
  return stanzas;
}

/** True when apt has package lists at all (false right after install, before any `apt-get update`). */
export async function aptHasLists(opts: AptOptions = {}): Promise<boolean> {
  const result = await runAptTool('apt-cache', ['pkgnames', 'linux-'], opts);
  return result.code === 0 && result.stdout.trim().length > 0;
}

export function noListsError(): ToolchainError {
  return new ToolchainError(
    'FAILED_PRECONDITION',
    'fetch-headers',
    "apt has no package lists for Debian's kernels on this builder: run `apt-get update` (as root) first",
  );
}

/** The E:/W: lines of an apt run, or its last lines when it printed none. */
export function errorLines(result: RunResult): string[] {
  const flagged = result.lines.filter((l) => /^(E|W|dpkg-deb|dpkg-query):/.test(l) || /error/i.test(l));
  return (flagged.length > 0 ? flagged : result.lines.slice(-10)).slice(0, 40);
}

const CLOUD_FLAVOUR = 'cloud-amd64';

/**
 * The release Debian's cloud kernel metapackage points at right now: the candidate of
 * `linux-image-cloud-amd64` depends on `linux-image-<release>` (6.1.0-56-cloud-amd64 when written).
 */
export async function currentDebianCloudRelease(opts: AptOptions = {}): Promise<string> {
  const meta = `linux-image-${CLOUD_FLAVOUR}`;
  const [stanza] = await aptShow([meta], opts);
  if (!stanza) {
    if (!(await aptHasLists(opts))) throw noListsError();
    throw new ToolchainError(
      'NOT_FOUND',
      'fetch-headers',
      `Debian has no ${meta} package in this builder's apt sources`,
    );
  }
  for (const group of parseDepends(stanza['Depends'])) {
    for (const dep of group) {
      const m = /^linux-image-(.+)$/.exec(dep.name);
      if (m && m[1]!.endsWith(`-${CLOUD_FLAVOUR}`) && isValidKernelRelease(m[1])) return m[1]!;
    }
  }
  throw new ToolchainError(
    'INTERNAL',
    'fetch-headers',
    `${meta} ${stanza['Version']} depends on no linux-image-<release>-${CLOUD_FLAVOUR} (Depends: ${stanza['Depends'] ?? 'none'})`,
  );
}

/**
 * Every cloud-amd64 kernel release whose headers Debian serves to this builder right now (a
 * downloadable candidate, not just a name apt has heard of), oldest first. On bookworm this lists
 * the 6.1 ABIs still in the archive and the 6.12 line (`+deb12`) together.
 */
export async function debianCloudReleases(opts: AptOptions = {}): Promise<string[]> {
  const names = await runAptTool('apt-cache', ['pkgnames', 'linux-headers-'], opts);
  checkInterrupted(names, 'apt-cache pkgnames', 'fetch-headers');
  const candidates = names.stdout
    .split('\n')
    .map((n) => n.trim())
    .map((n) => /^linux-headers-(.+)$/.exec(n)?.[1])
    .filter((r): r is string => !!r && r.endsWith(`-${CLOUD_FLAVOUR}`) && isValidKernelRelease(r));
  if (candidates.length === 0) return [];
  const madison = checkInterrupted(
    await runAptTool('apt-cache', ['madison', '--', ...candidates.map((r) => `linux-headers-${r}`)], opts),
    'apt-cache madison',
    'fetch-headers',
  );
  const served = new Set<string>();
  for (const line of madison.stdout.split('\n')) {
    const [pkg, , source] = line.split('|').map((f) => f.trim());
    const release = pkg ? /^linux-headers-(.+)$/.exec(pkg)?.[1] : undefined;
    if (release && source && / Packages$/.test(source)) served.add(release);
  }
  return [...served].sort(compareReleases);
}

/**
 * Debian's current cloud kernel release and the newest other one of its line still served (for
 * 6.1.0-57: 6.1.0-56), both resolved now: a fleet halfway through a kernel upgrade, which is what
 * demos and tests build for without naming a release that will one day leave the archive.
 */
export async function currentAndPreviousCloudReleases(opts: AptOptions = {}): Promise<[string, string]> {
  const current = await currentDebianCloudRelease(opts);
  const others = (await debianCloudReleases(opts)).filter((r) => r !== current);
  const sameLine = others.filter((r) => releaseMajorMinor(r) === releaseMajorMinor(current));
  const previous = sameLine.filter((r) => compareReleases(r, current) < 0).at(-1) ?? sameLine.at(-1) ?? others.at(-1);
  if (!previous) {
    throw new ToolchainError(
      'NOT_FOUND',
      'fetch-headers',
      `Debian serves headers for no cloud kernel besides ${current}`,
    );
  }
  return [current, previous];
}
