// Kernel build trees for any release Debian serves, fetched on demand and cached on disk:
//
//   <cacheDir>/debs/<file>.deb                  the packages as apt downloaded them (sha256-checked)
//   <cacheDir>/releases/<release>/usr/...       dpkg-deb -x of linux-headers-<release>, its -common
//                                               package and its linux-kbuild-* package
//   <cacheDir>/releases/<release>/.rebootless-headers.json   written last: the tree is complete
//   <cacheDir>/staging/                         downloads and extractions in progress
//
// Nothing is installed on the builder. A release's tree appears by one atomic rename of a fully
// prepared staging directory, so concurrent builds (threads of this process share one fetch;
// other processes race harmlessly and the loser's copy is discarded) never see half a tree.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  aptHasLists,
  aptShow,
  checkInterrupted,
  errorLines,
  noListsError,
  parseDepends,
  parseStanzas,
  runAptTool,
  type Dependency,
  type Stanza,
} from './apt';
import { rebootlessCacheDir } from './cache-root';
import { ToolchainError } from './errors';
import { assertKernelRelease, assertSafeDir } from './validate';

export interface KernelHeaders {
  /** The kernel release, e.g. 6.1.0-56-cloud-amd64 (its modules' vermagic starts with it). */
  release: string;
  /** The directory to pass to `make -C`. */
  buildDir: string;
  /** The Debian packages the tree was extracted from. */
  packages: { name: string; version: string }[];
  /**
   * Debian packages the kbuild tools of this release need installed on the builder (from the
   * packages' Depends; alternatives joined by " | "), e.g. libelf1, pahole. compileLivepatchModule
   * checks them and fails with FAILED_PRECONDITION naming the missing ones.
   */
  hostPackages?: string[];
}

export interface KernelHeadersCacheOptions {
  /** Where the .debs and extracted trees live; default defaultKernelCacheDir(). */
  cacheDir?: string;
  log?: (line: string) => void;
  /** Bound on one ensure() that has to fetch (default 10 minutes). */
  timeoutMs?: number;
  /**
   * Share one fetch between concurrent ensure() calls of this process for the same cacheDir and
   * release (default true). Off, each call fetches on its own and the atomic rename decides.
   */
  shareInFlight?: boolean;
}

const MARKER = '.rebootless-headers.json';
const LAYOUT = 1;

interface Marker {
  layout: number;
  release: string;
  buildDir: string; // relative to the release directory
  packages: { name: string; version: string; sha256?: string; file: string }[];
  hostPackages: string[];
  fetchedAt: string;
}

/** $REBOOTLESS_KERNEL_CACHE_DIR, else $XDG_CACHE_HOME/rebootless/kernels, else ~/.cache/rebootless/kernels. */
export function defaultKernelCacheDir(): string {
  return rebootlessCacheDir('kernels', 'REBOOTLESS_KERNEL_CACHE_DIR');
}

interface InFlight {
  promise: Promise<KernelHeaders>;
  controller: AbortController;
  waiters: number;
  /** The log of every caller waiting for this fetch: each sees its progress. */
  listeners: Set<(line: string) => void>;
}

/** Fetches shared by every KernelHeadersCache of this process, keyed by cache dir and release. */
const inFlight = new Map<string, InFlight>();

export class KernelHeadersCache {
  readonly cacheDir: string;
  private readonly log: (line: string) => void;
  private readonly timeoutMs: number;
  private readonly share: boolean;

  constructor(opts: KernelHeadersCacheOptions = {}) {
    this.cacheDir = path.resolve(opts.cacheDir ?? defaultKernelCacheDir());
    this.log = opts.log ?? (() => undefined);
    this.timeoutMs = opts.timeoutMs ?? 10 * 60_000;
    this.share = opts.shareInFlight ?? true;
  }

  /**
   * The build tree of `release`, fetched from Debian on first use. Validates `release` before
   * doing anything at all. Errors: INVALID_ARGUMENT (malformed release), NOT_FOUND (Debian serves
   * no linux-headers-<release>), FAILED_PRECONDITION (no apt lists, no apt), DEADLINE_EXCEEDED,
   * CANCELLED (every caller waiting for this fetch aborted), INTERNAL.
   */
  async ensure(release: string, signal?: AbortSignal): Promise<KernelHeaders> {
    assertKernelRelease(release, 'fetch-headers');
    assertSafeDir(this.cacheDir, 'the kernel cache directory', 'fetch-headers');
    if (signal?.aborted) throw cancelled(release);

    const cached = this.readReady(release);
    if (cached) return cached;

    const key = `${this.cacheDir}\0${release}`;
    let flight = this.share ? inFlight.get(key) : undefined;
    if (flight) {
      this.log(`fetch-headers ${release}: joining the fetch already under way`);
    } else {
      const controller = new AbortController();
      const listeners = new Set<(line: string) => void>();
      const promise = this.fetch(release, controller.signal, (line) => listeners.forEach((listener) => listener(line)));
      const created: InFlight = { promise, controller, waiters: 0, listeners };
      flight = created;
      if (this.share) {
        inFlight.set(key, created);
        const forget = () => {
          if (inFlight.get(key) === created) inFlight.delete(key);
        };
        promise.then(forget, forget);
      }
    }
    const listener = (line: string) => this.log(line);
    flight.listeners.add(listener);
    try {
      return await waitFor(flight, release, signal);
    } finally {
      flight.listeners.delete(listener);
    }
  }

  private releaseDir(release: string): string {
    return path.join(this.cacheDir, 'releases', release);
  }

  /** The cached tree, when its marker says it is complete. */
  private readReady(release: string): KernelHeaders | undefined {
    const dir = this.releaseDir(release);
    let marker: Marker;
    try {
      marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), 'utf8')) as Marker;
    } catch {
      return undefined;
    }
    if (marker.layout !== LAYOUT || marker.release !== release) return undefined;
    if (marker.buildDir !== path.join('usr', 'src', `linux-headers-${release}`)) return undefined;
    const buildDir = path.join(dir, marker.buildDir);
    if (!fs.existsSync(path.join(buildDir, 'Makefile'))) return undefined;
    return {
      release,
      buildDir,
      packages: marker.packages.map(({ name, version }) => ({ name, version })),
      hostPackages: marker.hostPackages,
    };
  }

  private async fetch(release: string, signal: AbortSignal, emit: (line: string) => void): Promise<KernelHeaders> {
    const started = Date.now();
    const deadline = started + this.timeoutMs;
    const budget = () => {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ToolchainError(
          'DEADLINE_EXCEEDED',
          'fetch-headers',
          `fetching headers for ${release} took longer than ${this.timeoutMs} ms`,
        );
      }
      return { timeoutMs: left, signal };
    };
    const log = (line: string) => emit(`fetch-headers ${release}: ${line}`);

    const staging = path.join(this.cacheDir, 'staging');
    const debs = path.join(this.cacheDir, 'debs');
    for (const dir of [staging, debs, path.join(this.cacheDir, 'releases')]) fs.mkdirSync(dir, { recursive: true });
    sweepStaging(staging, Math.max(this.timeoutMs * 2, 60 * 60_000));

    // 1. Which packages: linux-headers-<release>, and from its Depends the -common tree and linux-kbuild.
    const headersName = `linux-headers-${release}`;
    const [headers] = await aptShow([headersName], budget());
    if (!headers) {
      if (!(await aptHasLists(budget()))) throw noListsError();
      throw new ToolchainError(
        'NOT_FOUND',
        'fetch-headers',
        `unknown kernel release ${release}: Debian has no headers package ${headersName} in this builder's apt ` +
          `sources (apt-cache show finds none; list the served releases with apt-cache search linux-headers)`,
      );
    }
    const deps = parseDepends(headers['Depends']);
    const common = pickDependency(deps, (n) => n.startsWith('linux-headers-') && n !== headersName);
    const kbuild = pickDependency(deps, (n) => n.startsWith('linux-kbuild-'));
    if (!common || !kbuild) {
      throw new ToolchainError(
        'INTERNAL',
        'fetch-headers',
        `${headersName} ${headers['Version']} does not depend on a linux-headers-*-common and a linux-kbuild-* package ` +
          `(Depends: ${headers['Depends'] ?? 'none'})`,
      );
    }
    const [commonStanza, kbuildStanza] = (await this.resolve([common, kbuild], budget())) as [Stanza, Stanza];
    const stanzas: Stanza[] = [headers, commonStanza, kbuildStanza];
    log(`packages ${stanzas.map((s) => `${s['Package']} ${s['Version']}`).join(', ')}`);

    // 2. The .debs, downloaded once and checked against the sha256 of the signed index.
    const files = await this.download(stanzas, debs, staging, budget, log);

    // 3. Extract into a staging directory, repair the absolute include, verify, then publish by rename.
    const stage = fs.mkdtempSync(path.join(staging, `tree-${release}-`));
    try {
      const extractStarted = Date.now();
      for (const file of files) {
        const result = checkInterrupted(
          await runAptTool('dpkg-deb', ['-x', path.join(debs, file.file), stage], budget()),
          `dpkg-deb -x ${file.file}`,
          'fetch-headers',
        );
        if (result.code !== 0) {
          throw new ToolchainError(
            'INTERNAL',
            'fetch-headers',
            `dpkg-deb -x ${file.file} failed (exit ${result.code})`,
            errorLines(result),
          );
        }
      }
      log(`extracted ${files.length} packages in ${Date.now() - extractStarted} ms`);
      const buildDirRel = path.join('usr', 'src', headersName);
      relocateTree(stage, buildDirRel, release);
      const hostPackages = hostRequirements([headers, kbuildStanza]);
      const marker: Marker = {
        layout: LAYOUT,
        release,
        buildDir: buildDirRel,
        packages: files,
        hostPackages,
        fetchedAt: new Date().toISOString(),
      };
      fs.writeFileSync(path.join(stage, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
      this.publish(stage, release);
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }

    const ready = this.readReady(release);
    if (!ready)
      throw new ToolchainError(
        'INTERNAL',
        'fetch-headers',
        `the cached tree of ${release} vanished right after it was written`,
      );
    log(`ready in ${Date.now() - started} ms: ${ready.buildDir}`);
    return ready;
  }

  /** The stanzas of the exact versions `=` dependencies pin, else the candidates (one apt-cache call when they agree). */
  private async resolve(deps: Dependency[], opts: { timeoutMs: number; signal: AbortSignal }): Promise<Stanza[]> {
    const candidates = await aptShow(
      deps.map((d) => d.name),
      opts,
    );
    const out: Stanza[] = [];
    for (const dep of deps) {
      const candidate = candidates.find((s) => s['Package'] === dep.name);
      if (candidate && (dep.op !== '=' || candidate['Version'] === dep.version)) {
        out.push(candidate);
        continue;
      }
      if (dep.op === '=') {
        const all = await runAptTool('apt-cache', ['show', '--', dep.name], opts);
        const exact = parseStanzas(all.stdout).find((s) => s['Package'] === dep.name && s['Version'] === dep.version);
        if (exact) {
          out.push(exact);
          continue;
        }
      }
      throw new ToolchainError(
        'NOT_FOUND',
        'fetch-headers',
        `Debian has no ${dep.name}${dep.version ? ` (${dep.op} ${dep.version})` : ''} in this builder's apt sources`,
      );
    }
    return out;
  }

  /** The .debs of `stanzas` in debs/: reused when present and intact, else one apt-get download for the rest. */
  private async download(
    stanzas: Stanza[],
    debs: string,
    staging: string,
    budget: () => { timeoutMs: number; signal: AbortSignal },
    log: (line: string) => void,
  ): Promise<Marker['packages']> {
    const wanted = stanzas.map((stanza) => {
      const name = stanza['Package']!;
      const version = stanza['Version']!;
      const file = path.posix.basename(stanza['Filename'] ?? '');
      if (!/^[A-Za-z0-9][A-Za-z0-9.+~%_-]*\.deb$/.test(file)) {
        throw new ToolchainError(
          'INTERNAL',
          'fetch-headers',
          `apt gives ${name} ${version} an unexpected file name ${JSON.stringify(stanza['Filename'])}`,
        );
      }
      const sha256 = stanza['SHA256'];
      return sha256 ? { name, version, sha256, file } : { name, version, file };
    });
    const missing = wanted.filter((w) => {
      const dest = path.join(debs, w.file);
      const ok = fs.existsSync(dest) && (!w.sha256 || sha256File(dest) === w.sha256);
      if (ok) log(`cached ${w.file}`);
      return !ok;
    });
    if (missing.length === 0) return wanted;

    const dir = fs.mkdtempSync(path.join(staging, 'download-'));
    try {
      const started = Date.now();
      const specs = missing.map((w) => `${w.name}=${w.version}`);
      const result = checkInterrupted(
        await runAptTool('apt-get', ['download', '-q', '--', ...specs], { ...budget(), cwd: dir }),
        `apt-get download ${specs.join(' ')}`,
        'fetch-headers',
      );
      if (result.code !== 0) {
        const lines = errorLines(result).filter((l) => !/unsandboxed/.test(l));
        const gone = lines.some((l) => /404|Not Found|Unable to locate|Can't find a source/i.test(l));
        throw new ToolchainError(
          gone ? 'NOT_FOUND' : 'INTERNAL',
          'fetch-headers',
          gone
            ? `Debian's archive no longer serves ${specs.join(', ')} (the apt lists may be stale: run apt-get update)`
            : `apt-get download ${specs.join(' ')} failed (exit ${result.code})`,
          lines.length > 0 ? lines : undefined,
        );
      }
      let bytes = 0;
      for (const w of missing) {
        const got = path.join(dir, w.file);
        if (!fs.existsSync(got)) {
          throw new ToolchainError(
            'INTERNAL',
            'fetch-headers',
            `apt-get download did not produce ${w.file}`,
            errorLines(result),
          );
        }
        if (w.sha256 && sha256File(got) !== w.sha256) {
          throw new ToolchainError(
            'INTERNAL',
            'fetch-headers',
            `${w.file} does not match the sha256 of Debian's index (${w.sha256})`,
          );
        }
        bytes += fs.statSync(got).size;
        fs.renameSync(got, path.join(debs, w.file));
      }
      log(
        `downloaded ${missing.map((w) => w.file).join(', ')} (${(bytes / 1e6).toFixed(1)} MB) in ${Date.now() - started} ms`,
      );
      return wanted;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Moves a complete staging tree into place; another process that got there first wins. */
  private publish(stage: string, release: string): void {
    const target = this.releaseDir(release);
    try {
      fs.renameSync(stage, target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
    if (this.readReady(release)) return; // someone else published a complete tree: use theirs
    // A directory without a valid marker (an older layout, or damaged by hand): set it aside, retry once.
    const aside = `${path.join(path.dirname(stage), `stale-${release}-`)}${randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(target, aside);
    } catch {
      // another process moved it already
    }
    try {
      fs.renameSync(stage, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !this.readReady(release)) throw error;
    } finally {
      fs.rmSync(aside, { recursive: true, force: true });
    }
  }
}

function cancelled(release: string): ToolchainError {
  return new ToolchainError('CANCELLED', 'fetch-headers', `fetching headers for ${release} was cancelled`);
}

/** Waits on a shared fetch; the fetch itself is aborted only once every waiter has given up. */
function waitFor(flight: InFlight, release: string, signal: AbortSignal | undefined): Promise<KernelHeaders> {
  flight.waiters++;
  if (!signal) {
    return flight.promise;
  }
  return new Promise<KernelHeaders>((resolve, reject) => {
    const onAbort = () => {
      flight.waiters--;
      if (flight.waiters <= 0) flight.controller.abort();
      reject(cancelled(release));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    flight.promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function pickDependency(groups: Dependency[][], match: (name: string) => boolean): Dependency | undefined {
  for (const group of groups) {
    const dep = group.find((d) => match(d.name));
    if (dep) return dep;
  }
  return undefined;
}

/** Non-kernel packages the extracted tools need on the host (libelf1, pahole, gcc-12...). */
export function hostRequirements(stanzas: Stanza[]): string[] {
  const out = new Set<string>();
  for (const stanza of stanzas) {
    for (const group of parseDepends(stanza['Depends'])) {
      if (group.some((d) => d.name.startsWith('linux-'))) continue; // the trees we extract, linux-base, linux-compiler-*
      out.add(group.map((d) => d.name).join(' | '));
    }
  }
  return [...out].sort();
}

/**
 * Debian's flavour Makefile is one line, `include /usr/src/linux-headers-<abi>-common/Makefile`:
 * rewritten relative to itself (make -C runs in the build dir), the tree works wherever the cache
 * is. The absolute /lib/modules/<release>/{build,source} links are dropped: nothing uses them here.
 */
export function relocateTree(root: string, buildDirRel: string, release: string): void {
  const buildDir = path.join(root, buildDirRel);
  const makefile = path.join(buildDir, 'Makefile');
  const text = fs.readFileSync(makefile, 'utf8');
  const fixed = rewriteAbsoluteInclude(text);
  if (fixed.target && !fs.existsSync(path.join(buildDir, fixed.target))) {
    throw new ToolchainError(
      'INTERNAL',
      'fetch-headers',
      `${buildDirRel}/Makefile includes ${fixed.target}, which the packages did not contain`,
    );
  }
  if (fixed.text !== text) fs.writeFileSync(makefile, fixed.text);
  for (const link of ['build', 'source']) {
    const p = path.join(root, 'lib', 'modules', release, link);
    try {
      if (fs.lstatSync(p).isSymbolicLink()) fs.unlinkSync(p);
    } catch {
      // not there
    }
  }
  for (const needed of ['.config', 'Module.symvers', 'scripts/Makefile.build', 'include/generated/autoconf.h']) {
    if (!fs.existsSync(path.join(buildDir, needed))) {
      throw new ToolchainError('INTERNAL', 'fetch-headers', `the extracted tree of ${release} lacks ${needed}`);
    }
  }
}

/** `include /usr/src/<dir>/Makefile` becomes `include ../<dir>/Makefile` (the target is returned too). */
export function rewriteAbsoluteInclude(text: string): { text: string; target?: string } {
  let target: string | undefined;
  const out = text.replace(
    /^(\s*include\s+)\/usr\/src\/([A-Za-z0-9._+-]+)\/Makefile[ \t]*$/gm,
    (_all, head: string, dir: string) => {
      target = `../${dir}/Makefile`;
      return `${head}${target}`;
    },
  );
  return target ? { text: out, target } : { text: out };
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Best effort: staging leftovers of killed processes, older than `maxAgeMs`. */
function sweepStaging(staging: string, maxAgeMs: number): void {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(staging);
  } catch {
    return;
  }
  const now = Date.now();
  for (const entry of entries) {
    const p = path.join(staging, entry);
    try {
      if (now - fs.statSync(p).mtimeMs > maxAgeMs) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // raced with its owner
    }
  }
}
