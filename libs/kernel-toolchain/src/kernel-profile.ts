// Kernel profiles (issue 18): how a kernel the fleet runs was built (source package and version, a
// config fragment on top of tinyconfig, the compiler), and the one full build of it that klp-build
// diffs every patch against. A profile's build is made once and cached:
//
//   <cacheDir>/profiles/<name>-<key>/tree/           the kernel tree; klp-tmp/1-orig is the original build
//   <cacheDir>/profiles/<name>-<key>/signing/        the module-signing key the kernel trusts (builder-owned)
//   <cacheDir>/profiles/<name>-<key>/vmlinux         the original kernel, bootable by QEMU's PVH loader
//   <cacheDir>/profiles/<name>-<key>/profile.json    written last: the build is complete
//
// The key covers everything that changes the objects: the source package's version and digest,
// the base config and fragment, the compiler's version, and this file's layout number.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rebootlessCacheDir } from './cache-root';
import { ToolchainError } from './errors';
import { findExecutable, runProcess, type RunResult } from './process';
import { handOver } from './sandbox';

export interface KernelProfile {
  /** Short name: `lab`. */
  name: string;
  /** `uname -r` of its kernel (the config's LOCALVERSION makes it unique); checked after the build. */
  release: string;
  source: {
    /** Debian's source package of the tree, e.g. linux-source-7.3. */
    package: string;
    version: string;
    /** The suite that serves it, added for this one package only (a private apt configuration). */
    suite: string;
    mirror: string;
  };
  base: 'tinyconfig';
  /** Config lines merged on top of the base (merge_config.sh); every `=y` must survive olddefconfig. */
  fragment: string;
  compiler: string;
  /**
   * A small patch to a function the profile builds: klp-build makes its original build only on
   * the way to a module, so the cold run builds this one (and so checks the profile works).
   */
  seedPatch: string;
}

/** The profile the tests use: Debian's 7.3 source, small enough for two cores, signatures enforced. */
export function labProfile(): KernelProfile {
  return {
    name: 'lab',
    release: '7.3.4-rebootless-lab',
    source: {
      package: 'linux-source-7.3',
      version: '7.3.4-1~bpo13+1',
      suite: 'trixie-backports',
      mirror: 'http://deb.debian.org/debian',
    },
    base: 'tinyconfig',
    fragment: fs.readFileSync(path.join(__dirname, '..', 'profiles', 'lab.config'), 'utf8'),
    compiler: 'gcc',
    seedPatch: fs.readFileSync(path.join(__dirname, '..', 'profiles', 'lab.seed.patch'), 'utf8'),
  };
}

/** The profiles a builder can be configured with, by name. */
export const KERNEL_PROFILES: Readonly<Record<string, () => KernelProfile>> = { lab: labProfile };

export interface ProfileBuild {
  profile: string;
  key: string;
  dir: string;
  /** The kernel tree klp-build runs in. */
  tree: string;
  /** The original kernel (what hosts of this profile run), bootable with qemu -kernel (PVH). */
  vmlinux: string;
  /** The kernel release (`uname -r` in a guest of it). */
  release: string;
  signingKey: string;
  signingCert: string;
  /** How long each step of the cold build took, ms (from the cache: as recorded when it was made). */
  timings: Record<string, number>;
  fromCache: boolean;
}

export interface ProfileCacheOptions {
  cacheDir: string;
  /** Parallel make jobs. Default: the CPU count. */
  jobs?: number;
  /** Progress lines (the cold build takes minutes): `profile lab: building the original kernel`. */
  onProgress?: (line: string) => void;
  /** Every output line of the tools, for a build log. */
  onLine?: (line: string) => void;
}

const LAYOUT = 2;

/** $REBOOTLESS_KERNEL_PROFILE_CACHE, else beside the headers cache: ~/.cache/rebootless/kernel-profiles. */
export function defaultProfileCacheDir(): string {
  return rebootlessCacheDir('kernel-profiles', 'REBOOTLESS_KERNEL_PROFILE_CACHE');
}
const MARKER = 'profile.json';
const COLD_BUILD_TIMEOUT_MS = 3 * 60 * 60_000;

/** Cold builds under way in this process, by cache directory and profile: one build, many waiters. */
const building = new Map<string, Promise<ProfileBuild>>();

export class KernelProfileCache {
  constructor(private readonly opts: ProfileCacheOptions) {}

  /** The profile's build from the cache, or built now (once per process, however many ask). */
  async ensure(profile: KernelProfile): Promise<ProfileBuild> {
    const key = await profileKey(profile);
    const id = path.join(this.opts.cacheDir, `${profile.name}-${key}`);
    const running = building.get(id);
    if (running) {
      this.opts.onProgress?.(`profile ${profile.name}: its cold build is under way for another build; waiting for it`);
      return running;
    }
    const started = this.readOrBuild(profile, key).finally(() => building.delete(id));
    building.set(id, started);
    return started;
  }

  private async readOrBuild(profile: KernelProfile, key: string): Promise<ProfileBuild> {
    const dir = path.join(this.opts.cacheDir, 'profiles', `${profile.name}-${key}`);
    const marker = path.join(dir, MARKER);
    const lock = `${dir}.lock`;
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    let told = false;
    for (;;) {
      if (fs.existsSync(marker)) {
        const stored = JSON.parse(fs.readFileSync(marker, 'utf8')) as Omit<ProfileBuild, 'fromCache'>;
        // The timings are the cold build's, as recorded when it was made.
        return { ...stored, timings: stored.timings ?? {}, fromCache: true };
      }
      // One process builds a profile at a time (`npm run kernel:profile` beside a builder, say):
      // the others wait for its marker; a lock left by a process that died is taken over.
      try {
        fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const holder = Number(fs.readFileSync(lock, 'utf8'));
        if (!isAlive(holder)) {
          fs.rmSync(lock, { force: true });
          continue;
        }
        if (!told) this.opts.onProgress?.(`profile ${profile.name}: process ${holder} is building it; waiting`);
        told = true;
        await new Promise((r) => setTimeout(r, 5_000));
      }
    }
    try {
      return await this.build(profile, key, dir);
    } finally {
      fs.rmSync(lock, { force: true });
    }
  }

  private async build(profile: KernelProfile, key: string, dir: string): Promise<ProfileBuild> {
    const progress = (line: string) => this.opts.onProgress?.(`profile ${profile.name}: ${line}`);
    const timings: Record<string, number> = {};
    const step = async <T>(name: string, what: string, work: () => Promise<T>): Promise<T> => {
      progress(what);
      const started = Date.now();
      const out = await work();
      timings[name] = Date.now() - started;
      return out;
    };
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const deb = await step('fetchSource', `fetching ${profile.source.package} ${profile.source.version}`, () =>
      fetchSourcePackage(profile, this.opts.cacheDir),
    );
    const tree = path.join(dir, 'tree');
    await step('extract', 'extracting the kernel source', () => extractSource(deb, profile, dir, tree));
    const signing = await step('signingKey', 'making the module-signing key', () =>
      makeModuleSigningKey(path.join(dir, 'signing')),
    );
    await step('configure', `configuring (${profile.base} + fragment)`, () =>
      configure(profile, tree, signing.cert, this.run.bind(this)),
    );
    const seed = path.join(dir, 'seed.patch');
    fs.writeFileSync(seed, profile.seedPatch);
    await step('originalBuild', 'building the original kernel (klp-build, the cold run)', async () => {
      const r = await this.run(tree, path.join(tree, 'scripts', 'livepatch', 'klp-build'), [
        '-T',
        `-j${this.opts.jobs ?? defaultJobs()}`,
        '-o',
        path.join(dir, 'seed.ko'),
        seed,
      ]);
      if (r.code !== 0) throw buildFailure(`the original build of profile ${profile.name} failed`, r);
    });
    const vmlinux = path.join(dir, 'vmlinux');
    fs.copyFileSync(path.join(tree, 'klp-tmp', '1-orig', 'vmlinux'), vmlinux);
    const release = fs.readFileSync(path.join(tree, 'include', 'config', 'kernel.release'), 'utf8').trim();
    if (release !== profile.release) {
      throw new ToolchainError(
        'INTERNAL',
        'compile',
        `profile ${profile.name} built kernel release ${release}, but the profile says ${profile.release}`,
      );
    }
    // Diff builds run as the sandbox user over an overlay of this tree: it must be able to write
    // where the build writes (the overlay takes the writes; the tree itself is never changed).
    if (process.getuid?.() === 0)
      await step('handOver', 'giving the tree to the sandbox user', async () => handOver(tree));
    const build: Omit<ProfileBuild, 'fromCache' | 'timings'> = {
      profile: profile.name,
      key,
      dir,
      tree,
      vmlinux,
      release,
      signingKey: signing.key,
      signingCert: signing.cert,
    };
    fs.writeFileSync(
      path.join(dir, MARKER),
      `${JSON.stringify({ ...build, layout: LAYOUT, timings, builtAt: new Date().toISOString(), cpus: os.availableParallelism() }, null, 2)}\n`,
    );
    progress(`ready (${release})`);
    return { ...build, timings, fromCache: false };
  }

  private run(cwd: string, command: string, args: readonly string[]): Promise<RunResult> {
    return runProcess(command, args, {
      cwd,
      env: toolEnv(),
      timeoutMs: COLD_BUILD_TIMEOUT_MS,
      onLine: this.opts.onLine,
      maxOutputBytes: 4 * 1024 * 1024,
    });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `<compiler> --version`'s first line, asked once per process (every diff build looks its profile
 * up). Run in `/`, never in the cache (which a first run has not made yet: that once keyed a cold
 * build "gcc (not found)", so the next process, with the cache there, built it all again). A
 * compiler that cannot be asked is an error, not a key.
 */
const compilerVersions = new Map<string, Promise<string>>();
function compilerVersion(compiler: string): Promise<string> {
  let known = compilerVersions.get(compiler);
  if (!known) {
    const executable = findExecutable(compiler) ?? compiler;
    known = runProcess(executable, ['--version'], { cwd: '/', env: toolEnv(), timeoutMs: 30_000 }).then((r) => {
      if (r.code !== 0 || !r.lines[0]) {
        throw new ToolchainError(
          'FAILED_PRECONDITION',
          'diff-tool',
          `${executable} --version failed (exit ${r.code}): a kernel profile is keyed by its compiler's version`,
          r.lines,
        );
      }
      return r.lines[0];
    });
    known.catch(() => compilerVersions.delete(compiler));
    compilerVersions.set(compiler, known);
  }
  return known;
}

/** The cache key: source, config, compiler and layout, hashed. */
export async function profileKey(profile: KernelProfile): Promise<string> {
  const compiler = await compilerVersion(profile.compiler);
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      layout: LAYOUT,
      source: profile.source,
      base: profile.base,
      fragment: profile.fragment,
      seed: profile.seedPatch,
      compiler,
    }),
  );
  return h.digest('hex').slice(0, 16);
}

function toolEnv(): NodeJS.ProcessEnv {
  return { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...KBUILD_ENV };
}

/** The same in the cold build and every diff build: kbuild writes who and where into the kernel. */
export const KBUILD_ENV = {
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  KBUILD_BUILD_USER: 'rebootless',
  KBUILD_BUILD_HOST: 'rebootless-builder',
} as const;

function defaultJobs(): number {
  return Math.max(1, os.availableParallelism());
}

function buildFailure(what: string, r: RunResult): ToolchainError {
  const tail = r.lines.filter((l) => l.trim() !== '').slice(-20);
  return new ToolchainError('FAILED_PRECONDITION', 'compile', `${what}: ${tail.at(-1) ?? `exit ${r.code}`}`, tail);
}

/**
 * apt-get download of the source package through a private apt configuration that names only the
 * profile's suite: nothing of the machine's own apt setup changes, nothing else can be upgraded.
 */
async function fetchSourcePackage(profile: KernelProfile, cacheDir: string): Promise<string> {
  const aptDir = path.join(cacheDir, 'apt', profile.source.suite);
  const debs = path.join(aptDir, 'archives');
  for (const d of [path.join(aptDir, 'lists', 'partial'), path.join(debs, 'partial')])
    fs.mkdirSync(d, { recursive: true });
  const wanted = `${profile.source.package}_${profile.source.version.replace(/:/g, '%3a')}_all.deb`;
  const file = path.join(debs, wanted);
  if (fs.existsSync(file)) return file;
  fs.writeFileSync(path.join(aptDir, 'sources.list'), `deb ${profile.source.mirror} ${profile.source.suite} main\n`);
  const options = [
    `Dir::Etc::SourceList=${path.join(aptDir, 'sources.list')}`,
    'Dir::Etc::SourceParts=/nonexistent',
    `Dir::State::Lists=${path.join(aptDir, 'lists')}`,
    `Dir::Cache::Archives=${debs}`,
    'Debug::NoLocking=1',
    'APT::Sandbox::User=root',
  ].flatMap((o) => ['-o', o]);
  const apt = findExecutable('apt-get');
  if (!apt) throw new ToolchainError('FAILED_PRECONDITION', 'fetch-headers', 'apt-get is not installed', []);
  for (const args of [
    [...options, '-qq', 'update'],
    [...options, 'download', `${profile.source.package}=${profile.source.version}`],
  ]) {
    const r = await runProcess(apt, args, { cwd: debs, env: toolEnv(), timeoutMs: 15 * 60_000 });
    if (r.code !== 0) {
      throw new ToolchainError(
        'FAILED_PRECONDITION',
        'fetch-headers',
        `apt-get ${args.at(-1)} from ${profile.source.suite} failed: ${r.lines.at(-1) ?? `exit ${r.code}`}`,
        r.lines.slice(-10),
      );
    }
  }
  if (!fs.existsSync(file)) {
    throw new ToolchainError(
      'FAILED_PRECONDITION',
      'fetch-headers',
      `apt-get download left no ${wanted} in ${debs}`,
      [],
    );
  }
  return file;
}

async function extractSource(deb: string, profile: KernelProfile, dir: string, tree: string): Promise<void> {
  const staging = path.join(dir, 'deb');
  fs.mkdirSync(staging, { recursive: true });
  const sh = (script: string, cwd: string) =>
    runProcess('/bin/sh', ['-c', script], { cwd, env: toolEnv(), timeoutMs: 20 * 60_000 });
  // The package holds the tree as one tarball (usr/src/<package>.tar.xz).
  const inner = `usr/src/${profile.source.package}.tar.xz`;
  let r = await sh(`dpkg-deb --fsys-tarfile "$0" | tar -x "./${inner}"`.replace('$0', deb), staging);
  if (r.code !== 0) throw buildFailure(`extracting ${path.basename(deb)}`, r);
  r = await sh(`tar -xJf "${path.join(staging, inner)}"`, dir);
  if (r.code !== 0) throw buildFailure(`unpacking ${inner}`, r);
  fs.renameSync(path.join(dir, profile.source.package), tree);
  fs.rmSync(staging, { recursive: true, force: true });
}

/** A module-signing key and its self-signed certificate (what a kernel is configured to trust). */
export async function makeModuleSigningKey(
  dir: string,
  subject = 'rebootless builder module signing',
): Promise<{ key: string; cert: string }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = path.join(dir, 'module-signing.key.pem');
  const cert = path.join(dir, 'module-signing.crt.pem');
  const r = await runProcess(
    'openssl',
    [
      'req',
      '-new',
      '-nodes',
      '-utf8',
      '-sha256',
      '-days',
      '3650',
      '-batch',
      '-x509',
      '-subj',
      `/CN=${subject}/`,
      '-newkey',
      'rsa:3072',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { cwd: dir, env: toolEnv(), timeoutMs: 60_000 },
  );
  if (r.code !== 0) throw buildFailure('openssl could not make the module-signing key', r);
  fs.chmodSync(key, 0o600);
  return { key, cert };
}

async function configure(
  profile: KernelProfile,
  tree: string,
  signingCert: string,
  run: (cwd: string, command: string, args: readonly string[]) => Promise<RunResult>,
): Promise<void> {
  // The kernel embeds the certificate named here and, with MODULE_SIG_FORCE, refuses any module
  // not signed by its key. Only the certificate: the build never needs the private key (modules
  // are signed by the builder afterwards), so a diff's build in the sandbox can rebuild without it.
  const fragment = path.join(tree, 'rebootless-profile.config');
  fs.writeFileSync(fragment, `${profile.fragment}\nCONFIG_MODULE_SIG_KEY="${signingCert}"\n`);
  for (const [command, args] of [
    ['make', [profile.base]],
    [path.join(tree, 'scripts', 'kconfig', 'merge_config.sh'), ['-m', '.config', fragment]],
    ['make', ['olddefconfig']],
  ] as const) {
    const r = await run(tree, command, args);
    if (r.code !== 0) throw buildFailure(`configuring profile ${profile.name}: ${command} ${args.join(' ')}`, r);
  }
  const config = fs.readFileSync(path.join(tree, '.config'), 'utf8');
  const missing = missingOptions(profile.fragment, config);
  if (missing.length > 0) {
    throw new ToolchainError(
      'FAILED_PRECONDITION',
      'compile',
      `profile ${profile.name}: olddefconfig dropped ${missing.join(', ')} (a dependency of each is not in the fragment)`,
      missing,
    );
  }
}

/** The fragment's `CONFIG_X=y|m` lines the final config does not have. Pure. */
export function missingOptions(fragment: string, config: string): string[] {
  const have = new Set(config.split('\n').map((l) => l.trim()));
  return fragment
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^CONFIG_[A-Z0-9_]+=[ym]$/.test(l))
    .filter((l) => !have.has(l));
}
