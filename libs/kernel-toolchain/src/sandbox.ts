// The compile sandbox (ADR 0013): operator-supplied source is compiled by a process that sees only
// the system's tools (/usr, read-only), the trees it is given read-only and the directories it may
// write, with no network, as an unprivileged user, under resource limits. Anything else on the
// machine (the builder's signing key, the pki directory, /etc/shadow) does not exist inside it, so
// `.incbin "/path"` or `#include "/path"` cannot embed it into an artifact or echo it into a log.
//
// bubblewrap builds the mount namespace. As root it mounts with real privileges and `setpriv`
// drops to nobody inside; as a developer's user it uses an unprivileged user namespace and the
// process keeps that user's uid (which is already unprivileged). prlimit bounds memory, output
// file size, processes and CPU time.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ToolchainError, type ToolchainStage } from './errors';
import { findExecutable, runProcess, type RunOptions, type RunResult } from './process';

export interface SandboxLimits {
  /** RLIMIT_AS of every process inside (cc1 on a kernel file needs a few hundred MB). */
  memoryBytes: number;
  /** RLIMIT_FSIZE: no file written inside may grow beyond this (an .incbin of /dev/zero stops here). */
  fileBytes: number;
  /** RLIMIT_NPROC of the sandbox user. */
  processes: number;
  /** RLIMIT_CPU of each process, seconds (the wall-clock bound is the caller's timeoutMs). */
  cpuSeconds: number;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  memoryBytes: 2 * 1024 ** 3,
  fileBytes: 256 * 1024 ** 2,
  processes: 512,
  cpuSeconds: 600,
};

/** The uid/gid a root builder drops to inside the sandbox (Debian's nobody/nogroup). */
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;

/**
 * How this machine can sandbox: `root` (bwrap mounts as root, setpriv drops to nobody), `userns`
 * (bwrap in an unprivileged user namespace, the caller's own uid), or `none` with the reason.
 */
export type SandboxSupport =
  | { kind: 'root'; bwrap: string; setpriv: string; prlimit: string }
  | { kind: 'userns'; bwrap: string; prlimit: string }
  | { kind: 'none'; reason: string };

export type SandboxKind = SandboxSupport['kind'];

export interface SandboxSpec {
  /** The executable (absolute, or looked up on PATH) and its arguments; never a shell string. */
  argv: readonly string[];
  cwd: string;
  /** Visible read-only at the same path (besides /usr and the few /etc entries tools need). */
  readOnly: readonly string[];
  /** Visible read-write at the same path; a root builder hands these to the sandbox user. */
  writable: readonly string[];
  /** False when the writable trees already belong to the sandbox user (a kernel tree: too big to walk per build). */
  handOver?: boolean;
  limits?: Partial<SandboxLimits>;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
  maxOutputBytes?: number;
}

/** What the tools need from /etc: the loader cache and the alternatives links (awk). Nothing else. */
const ETC_ENTRIES = ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives', '/etc/perl'];
/** usr-merged roots: symlinks into /usr on Debian since bookworm, directories before. */
const USR_ROOTS = ['/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32'];

let probed: Promise<SandboxSupport> | undefined;

/** Probes once per process: bwrap installed, and `bwrap --unshare-all --ro-bind / / true` works. */
export function detectSandbox(): Promise<SandboxSupport> {
  probed ??= probe();
  return probed;
}

async function probe(): Promise<SandboxSupport> {
  const bwrap = findExecutable('bwrap');
  const prlimit = findExecutable('prlimit');
  if (!bwrap) return { kind: 'none', reason: 'bubblewrap is not installed (apt-get install bubblewrap)' };
  if (!prlimit) return { kind: 'none', reason: 'prlimit is not installed (apt-get install util-linux)' };
  const root = process.getuid?.() === 0;
  const setpriv = findExecutable('setpriv');
  if (root && !setpriv) return { kind: 'none', reason: 'setpriv is not installed (apt-get install util-linux)' };
  const flags = root ? rootNamespaces() : ['--unshare-all'];
  const result = await runProcess(bwrap, [...flags, '--ro-bind', '/', '/', '--', 'true'], {
    cwd: '/',
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    timeoutMs: 10_000,
  }).catch((error: Error) => ({ code: -1, lines: [error.message] }) as Pick<RunResult, 'code' | 'lines'>);
  if (result.code !== 0) {
    const why = result.lines.filter((l) => l.trim() !== '').join('; ') || `exit ${String(result.code)}`;
    return {
      kind: 'none',
      reason: root
        ? `bwrap cannot create mount, pid and network namespaces here (${why})`
        : `bwrap cannot create an unprivileged user namespace here (${why}); ` +
          'enable kernel.unprivileged_userns_clone or run the builder as root',
    };
  }
  return root ? { kind: 'root', bwrap, setpriv: setpriv!, prlimit } : { kind: 'userns', bwrap, prlimit };
}

/** As root no user namespace: the mounts are made with real privileges, then setpriv drops them. */
function rootNamespaces(): string[] {
  return ['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try'];
}

/**
 * The command line that runs `spec.argv` in the sandbox (pure: the caller checked support). Paths
 * are bound at their own names so the compiler's messages and the module's paths read the same
 * inside and out.
 */
export function sandboxCommand(
  spec: Pick<SandboxSpec, 'argv' | 'cwd' | 'readOnly' | 'writable' | 'limits'>,
  support: Exclude<SandboxSupport, { kind: 'none' }>,
  fsView: { isSymlink(p: string): boolean; exists(p: string): boolean } = hostFs,
): { command: string; args: string[] } {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...spec.limits };
  for (const dir of [...spec.readOnly, ...spec.writable, spec.cwd]) {
    if (!path.isAbsolute(dir) || path.normalize(dir) !== dir.replace(/\/+$/, '') || dir === '/')
      throw new ToolchainError(
        'INTERNAL',
        'compile',
        `sandbox paths must be absolute, normalised and not "/": ${JSON.stringify(dir)}`,
      );
  }
  const args = [
    `--as=${limits.memoryBytes}`,
    `--fsize=${limits.fileBytes}`,
    `--nproc=${limits.processes}`,
    `--cpu=${limits.cpuSeconds}`,
    '--core=0',
    '--',
    support.bwrap,
    ...(support.kind === 'root' ? rootNamespaces() : ['--unshare-all']),
    '--die-with-parent',
    '--ro-bind',
    '/usr',
    '/usr',
  ];
  for (const root of USR_ROOTS) {
    if (!fsView.exists(root)) continue;
    if (fsView.isSymlink(root)) args.push('--symlink', `usr${root}`, root);
    else args.push('--ro-bind', root, root);
  }
  // bwrap makes the directories leading to a mount point 0700: the sandbox user must cross them.
  args.push('--perms', '0755', '--dir', '/etc');
  for (const entry of ETC_ENTRIES) args.push('--ro-bind-try', entry, entry);
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp');
  const readOnly = outermost(spec.readOnly);
  const writable = outermost(spec.writable);
  // Likewise on the way to each bound tree (under /root, say); they hold nothing but that way.
  const mounted = ['/usr', '/proc', '/dev', ...USR_ROOTS];
  const ancestors = new Set<string>();
  for (const dir of [...readOnly, ...writable]) {
    for (let up = path.dirname(dir); up !== '/'; up = path.dirname(up)) {
      if (!mounted.some((m) => up === m || up.startsWith(`${m}/`))) ancestors.add(up);
    }
  }
  for (const dir of [...ancestors].sort((a, b) => a.length - b.length)) args.push('--perms', '0755', '--dir', dir);
  for (const dir of readOnly) args.push('--ro-bind', dir, dir);
  for (const dir of writable) args.push('--bind', dir, dir);
  args.push('--chdir', spec.cwd, '--');
  if (support.kind === 'root') {
    args.push(
      support.setpriv,
      `--reuid=${SANDBOX_UID}`,
      `--regid=${SANDBOX_GID}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--',
    );
  }
  args.push(...spec.argv);
  return { command: support.prlimit, args };
}

const hostFs = {
  isSymlink: (p: string) => {
    try {
      return fs.lstatSync(p).isSymbolicLink();
    } catch {
      return false;
    }
  },
  exists: (p: string) => {
    try {
      fs.lstatSync(p);
      return true;
    } catch {
      return false;
    }
  },
};

/** Drops duplicates and paths already under another one of the list. */
function outermost(dirs: readonly string[]): string[] {
  const sorted = [...new Set(dirs.map((d) => d.replace(/\/+$/, '')))].sort((a, b) => a.length - b.length);
  const kept: string[] = [];
  for (const dir of sorted) if (!kept.some((k) => dir.startsWith(`${k}/`))) kept.push(dir);
  return kept;
}

export interface SandboxPolicy {
  /**
   * Run without the sandbox when this machine has none. Only for a developer's own experiments:
   * the compile then sees every file the builder's user can read.
   */
  allowUnsandboxed?: boolean;
}

/**
 * Runs `spec.argv` in the sandbox. FAILED_PRECONDITION when this machine cannot sandbox, unless
 * the policy explicitly allows running unsandboxed.
 */
export async function runSandboxed(
  spec: SandboxSpec,
  policy: SandboxPolicy = {},
  stage: ToolchainStage = 'compile',
): Promise<RunResult & { sandbox: SandboxKind }> {
  const support = await detectSandbox();
  const run: RunOptions = {
    cwd: spec.cwd,
    env: spec.env,
    timeoutMs: spec.timeoutMs,
    signal: spec.signal,
    onLine: spec.onLine,
    maxOutputBytes: spec.maxOutputBytes,
  };
  if (support.kind === 'none') {
    if (!policy.allowUnsandboxed)
      throw new ToolchainError(
        'FAILED_PRECONDITION',
        stage,
        `this builder cannot sandbox the compile: ${support.reason}; it refuses to compile operator source ` +
          'with the whole file system visible (BUILDER_INSECURE_UNSANDBOXED_COMPILE=1 allows it on a developer machine)',
      );
    const [command, ...args] = spec.argv;
    return { ...(await runProcess(command!, args, run)), sandbox: 'none' };
  }
  if (support.kind === 'root' && spec.handOver !== false) for (const dir of spec.writable) handOver(dir);
  const { command, args } = sandboxCommand(spec, support);
  return { ...(await runProcess(command, args, run)), sandbox: support.kind };
}

/** Gives a writable tree to the sandbox user (root builds only; the builder, as root, still reads it). */
export function handOver(dir: string): void {
  const walk = (p: string) => {
    fs.lchownSync(p, SANDBOX_UID, SANDBOX_GID);
    if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
}
