// A diff build (issue 18): klp-build in a profile's tree, reusing its original build (`-S 2`),
// then the module signed the kernel's way (scripts/sign-file with the profile's key), so a kernel
// built with MODULE_SIG_FORCE loads it. klp-build's refusals come back classified, with the line
// that says why, not as a wall of make output.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ToolchainError } from './errors';
import { KBUILD_ENV, type ProfileBuild } from './kernel-profile';
import { runProcess, type RunResult } from './process';
import { runSandboxed, SANDBOX_GID, SANDBOX_UID, type SandboxKind } from './sandbox';

export interface DiffBuildOptions {
  /** Atomic replace (klp-build's default): the module replaces every livepatch before it. False: it stacks. */
  replace: boolean;
  jobs?: number;
  timeoutMs?: number;
  onLine?: (line: string) => void;
  signal?: AbortSignal;
  /** Parent of the per-build directory (overlay layers, the module). Default: the system's tmp. */
  workRoot?: string;
  /** Developer machines without bubblewrap only (see runSandboxed). */
  allowUnsandboxed?: boolean;
  /** The module's file name without .ko (its name in the kernel, with - as _). Default: from the diff's digest. */
  moduleName?: string;
}

export interface DiffBuildResult {
  /** The signed module's bytes and its name (klp-build names it livepatch-<patch>). */
  module: Buffer;
  moduleName: string;
  sha256: string;
  /** Objects klp-build found changed (`objtool klp diff` lines). */
  changedFunctions: string[];
  sandbox: SandboxKind;
  ms: number;
}

/** Why klp-build refused a diff, in the words a reviewer uses. */
export type KlpRefusal =
  | 'changed-data'
  | 'unsupported-file'
  | 'patch-does-not-apply'
  | 'no-changes'
  | 'static-branch'
  | 'static-call'
  | 'undeclared-dependency'
  | 'init-code'
  | 'compile-error'
  | 'other';

const REFUSALS: readonly { kind: KlpRefusal; pattern: RegExp; reason: string }[] = [
  {
    kind: 'changed-data',
    pattern: /changed data: (\S+)/,
    reason:
      'the diff changes data (a global, its initial value or a struct laid out in it), which a livepatch cannot replace',
  },
  {
    kind: 'unsupported-file',
    pattern: /unsupported patch to (\S+)/,
    reason: 'klp-build does not patch this file (assembly, lib/, a header it cannot trace)',
  },
  {
    kind: 'patch-does-not-apply',
    pattern: /did not apply/,
    reason: "the diff does not apply to the profile's kernel source",
  },
  {
    kind: 'no-changes',
    pattern: /no changes detected/,
    reason:
      'the diff changes no function of the compiled kernel (comments, line numbers, or code the profile does not build)',
  },
  {
    kind: 'static-branch',
    pattern: /unsupported static branch key/,
    reason: 'the changed code uses a static branch key; klp-build needs static_key_enabled()',
  },
  {
    kind: 'static-call',
    pattern: /unsupported static call key/,
    reason: 'the changed code uses a static call; klp-build needs KLP_STATIC_CALL()',
  },
  {
    kind: 'undeclared-dependency',
    pattern: /would create an undeclared module dependency/,
    reason: 'the change references a symbol of another module',
  },
  {
    kind: 'init-code',
    pattern: /can't patch or reference init code\/data/,
    reason: 'the diff changes __init code or data, which ran once at boot and is gone from the running kernel',
  },
  { kind: 'compile-error', pattern: /(error:|kernel build failed)/, reason: 'the patched kernel does not compile' },
];

/** The first refusal the output shows, with the line that says it. Pure. */
export function classifyKlpFailure(lines: readonly string[]): { kind: KlpRefusal; reason: string; evidence: string } {
  for (const r of REFUSALS) {
    const line = lines.find((l) => r.pattern.test(l));
    if (line) return { kind: r.kind, reason: r.reason, evidence: line.trim() };
  }
  const last = [...lines].reverse().find((l) => l.trim() !== '') ?? '';
  return { kind: 'other', reason: 'klp-build failed', evidence: last.trim() };
}

export class KlpBuildRefused extends ToolchainError {
  constructor(
    readonly refusal: KlpRefusal,
    reason: string,
    readonly evidence: string,
    lines: string[],
  ) {
    const message = `klp-build refused the diff (${refusal}): ${reason}: ${evidence}`;
    super('FAILED_PRECONDITION', 'compile', message, [message], lines);
  }
}

/** Builds `diff` against the profile's original build; each build has its own overlay, so builds may overlap. */
export async function buildFromDiff(
  profile: ProfileBuild,
  diff: string,
  opts: DiffBuildOptions,
): Promise<DiffBuildResult> {
  const started = Date.now();
  const work = fs.mkdtempSync(path.join(opts.workRoot ?? os.tmpdir(), 'rebootless-klp-'));
  const layer = {
    upper: path.join(work, 'upper'),
    scratch: path.join(work, 'overlay-work'),
    tree: path.join(work, 'tree'),
  };
  const input = path.join(work, 'in');
  const output = path.join(work, 'out');
  // The sandbox's own /tmp is root's; patch and the compiler write their temporary files here.
  const scratch = path.join(work, 'tmp');
  for (const d of [...Object.values(layer), input, output, scratch]) fs.mkdirSync(d);
  let mounted = false;
  try {
    // The diff's build sees the profile's tree through an overlay: what it writes (the patched
    // objects, or anything a hostile Makefile change writes) lands in this build's upper layer,
    // and the cached tree every later build starts from stays as the cold build left it.
    await mountOverlay(profile.tree, layer);
    mounted = true;
    for (const d of [layer.upper, layer.tree, output, scratch]) fs.chownSync(d, SANDBOX_UID, SANDBOX_GID);
    const digest = createHash('sha256').update(diff).digest('hex').slice(0, 12);
    const patch = path.join(input, `rb${digest}.patch`);
    fs.writeFileSync(patch, diff, { mode: 0o644 });
    fs.chmodSync(input, 0o755);
    const name = opts.moduleName ?? `livepatch-rb${digest}`;
    if (!/^[a-z][a-z0-9_-]{0,54}$/.test(name)) {
      throw new ToolchainError(
        'INVALID_ARGUMENT',
        'compile',
        `module name ${JSON.stringify(name)} is not [a-z][a-z0-9_-]{0,54}`,
      );
    }
    const out = path.join(output, `${name}.ko`);
    const lines: string[] = [];
    const jobs = opts.jobs ?? Math.max(1, os.availableParallelism());
    const r = await runSandboxed(
      {
        argv: [
          path.join(layer.tree, 'scripts', 'livepatch', 'klp-build'),
          '-T',
          '-S',
          '2',
          `-j${jobs}`,
          ...(opts.replace ? [] : ['--no-replace']),
          '-o',
          out,
          patch,
        ],
        cwd: layer.tree,
        // The kernel's config names the certificate (kbuild checks it is there); the key stays outside.
        readOnly: [input, profile.signingCert],
        writable: [layer.tree, output, scratch],
        handOver: false,
        // A kernel link and objtool on vmlinux.o need more than a module's compile.
        limits: { memoryBytes: 8 * 1024 ** 3, fileBytes: 2 * 1024 ** 3, cpuSeconds: 3_600 },
        env: { PATH: '/usr/bin:/bin', HOME: scratch, TMPDIR: scratch, ...KBUILD_ENV },
        timeoutMs: opts.timeoutMs ?? 30 * 60_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
        onLine: (l) => {
          lines.push(l);
          opts.onLine?.(l);
        },
        maxOutputBytes: 4 * 1024 * 1024,
      },
      { allowUnsandboxed: opts.allowUnsandboxed ?? false },
    );
    if (r.code !== 0 || !fs.existsSync(out)) {
      const why = classifyKlpFailure(lines);
      throw new KlpBuildRefused(why.kind, why.reason, why.evidence, lines.slice(-30));
    }
    // Signed outside the sandbox: the key never enters it.
    await signModule(profile, out);
    const module = fs.readFileSync(out);
    return {
      module,
      moduleName: name.replace(/-/g, '_'),
      sha256: createHash('sha256').update(module).digest('hex'),
      changedFunctions: lines.filter((l) => /changed function|new function/i.test(l)).map((l) => l.trim()),
      sandbox: r.sandbox,
      ms: Date.now() - started,
    };
  } finally {
    if (mounted)
      await runProcess('umount', [layer.tree], { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeoutMs: 60_000 });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function mountOverlay(lower: string, layer: { upper: string; scratch: string; tree: string }): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new ToolchainError(
      'FAILED_PRECONDITION',
      'compile',
      'diff builds run the kernel tree through an overlay mount, which needs a builder running as root',
    );
  }
  const r = await runProcess(
    'mount',
    [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${layer.upper},workdir=${layer.scratch}`,
      layer.tree,
    ],
    { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeoutMs: 60_000 },
  );
  if (r.code !== 0) {
    throw new ToolchainError(
      'FAILED_PRECONDITION',
      'compile',
      `cannot mount the kernel tree's overlay: ${r.lines.at(-1) ?? `exit ${r.code}`}`,
      r.lines,
    );
  }
}

/** Appends the kernel's module signature (PKCS#7, sha256) made with the profile's key. */
export async function signModule(
  profile: Pick<ProfileBuild, 'tree' | 'signingKey' | 'signingCert'>,
  file: string,
): Promise<void> {
  const r: RunResult = await runProcess(
    path.join(profile.tree, 'scripts', 'sign-file'),
    ['sha256', profile.signingKey, profile.signingCert, file],
    { cwd: profile.tree, env: { PATH: '/usr/bin:/bin' }, timeoutMs: 60_000 },
  );
  if (r.code !== 0) {
    throw new ToolchainError('INTERNAL', 'compile', `sign-file failed: ${r.lines.at(-1) ?? `exit ${r.code}`}`, r.lines);
  }
}
