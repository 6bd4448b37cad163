// Compiles one livepatch module's C source against a kernel build tree with Kbuild:
// `make -C <buildDir> M=<workDir> modules`, an argument array, its own process group, a private
// TMPDIR inside the work dir, the C locale and a hard time limit.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runAptTool } from './apt';
import {
  extractDiagnostics,
  isErrorDiagnostic,
  isWarningDiagnostic,
  missingTool,
  readOutsideSandbox,
  relativizeLine,
} from './diagnostics';
import { ToolchainError } from './errors';
import type { KernelHeaders } from './headers-cache';
import { ElfFormatError, readModinfo } from './modinfo';
import { findExecutable, minimalEnv, runProcess, SpawnError } from './process';
import { runSandboxed, type SandboxKind, type SandboxLimits } from './sandbox';
import { assertKernelRelease, assertModuleName, assertSafeDir } from './validate';

export interface CompileOptions {
  /** The module's complete C source (written as <moduleName>.c). */
  source: string | Buffer;
  /** The module's name: [a-z0-9_]{1,55}; also the C file's and the .ko's. */
  moduleName: string;
  headers: KernelHeaders;
  /** A fresh, empty directory the caller owns (and removes); the .ko is left in it. */
  workDir: string;
  /** Hard limit for the whole make run; the process group is killed when it passes. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Every line of make's output as it arrives (paths relative to the module). */
  onLog?: (line: string) => void;
  /** Sandbox limits (memory, output file size, processes, CPU) over the defaults. */
  limits?: Partial<SandboxLimits>;
  /** Compile without the sandbox when the machine has none (a developer's experiment, never a service). */
  allowUnsandboxed?: boolean;
}

export interface CompiledModule {
  /** <workDir>/<moduleName>.ko */
  modulePath: string;
  moduleName: string;
  /** From the built module's .modinfo; starts with the kernel release, e.g. "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ". */
  vermagic: string;
  sizeBytes: number;
  /** sha256 of the .ko, hex. */
  sha256: string;
  /** What built it: cc (the compiler's --version line), kernelCc (what Debian built the kernel with), make, and each Debian package of the tree with its version. */
  toolchain: Record<string, string>;
  /** The whole make output (paths relative to the module). */
  log: string[];
  /** gcc's and modpost's warnings, if any (the build succeeded). */
  warnings: string[];
  /** Every .modinfo key's first value (license, livepatch, name, depends, ...). */
  modinfo: Record<string, string>;
  /** How the compiler was confined: root (bwrap, as nobody), userns (bwrap, the caller's uid), none (insecure opt-in). */
  sandbox: SandboxKind;
}

const MAX_SOURCE_BYTES = 4 * 1024 * 1024;

export async function compileLivepatchModule(opts: CompileOptions): Promise<CompiledModule> {
  // Everything is checked before anything is written or run.
  const { moduleName, headers, workDir, timeoutMs, signal } = opts;
  assertModuleName(moduleName);
  if (!headers || typeof headers !== 'object')
    throw invalid('headers are required (KernelHeadersCache.ensure gives them)');
  assertKernelRelease(headers.release, 'compile');
  assertSafeDir(headers.buildDir, 'the kernel build directory', 'compile');
  assertSafeDir(workDir, 'the work directory', 'compile');
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0))
    throw invalid(`timeoutMs must be a positive number of milliseconds, not ${String(timeoutMs)}`);
  const source = typeof opts.source === 'string' ? Buffer.from(opts.source, 'utf8') : opts.source;
  if (!Buffer.isBuffer(source) || source.length === 0) throw invalid('the module source is empty');
  if (source.length > MAX_SOURCE_BYTES)
    throw invalid(`the module source is ${source.length} bytes; at most ${MAX_SOURCE_BYTES} are accepted`);
  if (source.includes(0)) throw invalid('the module source contains a NUL byte: C source is text');
  let entries: string[];
  try {
    if (!fs.statSync(workDir).isDirectory()) throw new Error('not a directory');
    entries = fs.readdirSync(workDir);
  } catch (error) {
    throw invalid(
      `the work directory ${workDir} is not a directory this process can use (${(error as Error).message})`,
    );
  }
  if (entries.length > 0)
    throw invalid(`the work directory ${workDir} must be empty (it holds ${entries.slice(0, 3).join(', ')}...)`);
  if (signal?.aborted) throw new ToolchainError('CANCELLED', 'compile', `building ${moduleName} was cancelled`);

  const { release, buildDir } = headers;
  const tree = readTree(buildDir, release);
  const cc = await requireCompiler(tree, release);
  const make = findExecutable('make');
  if (!make) throw precondition('make is not installed on this builder (apt-get install make)');
  await requireHostPackages(headers);

  fs.writeFileSync(path.join(workDir, `${moduleName}.c`), source, { mode: 0o644 });
  fs.writeFileSync(path.join(workDir, 'Kbuild'), `obj-m := ${moduleName}.o\n`, { mode: 0o644 });
  const tmp = path.join(workDir, '.tmp');
  fs.mkdirSync(tmp, { mode: 0o700 });

  const kernelRoots = [
    ...new Set(
      [buildDir, tree.commonDir, realpath(buildDir), realpath(tree.commonDir)].filter((d): d is string => !!d),
    ),
  ];
  const log: string[] = [];
  const args = ['-C', buildDir, `M=${workDir}`, 'modules'];
  const say = (line: string) => {
    log.push(line);
    opts.onLog?.(line);
  };
  say(`compile ${moduleName} for ${release}: make ${args.join(' ')}`);

  let result;
  try {
    // The operator's source runs the assembler's .incbin and the preprocessor's #include: it may see
    // the kernel trees and its own directory, nothing else (ADR 0013).
    result = await runSandboxed(
      {
        argv: [make, ...args],
        cwd: workDir,
        readOnly: [...kernelRoots, ...releaseRoot(buildDir)],
        writable: [workDir],
        limits: opts.limits,
        env: minimalEnv(tmp, { HOME: tmp }),
        timeoutMs,
        signal,
        onLine: (line) => say(relativizeLine(line, workDir, kernelRoots)),
      },
      { allowUnsandboxed: opts.allowUnsandboxed },
    );
  } catch (error) {
    if (error instanceof SpawnError) throw precondition(`make could not be started (${error.errno})`);
    throw error;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const lines = result.lines.map((l) => relativizeLine(l, workDir, kernelRoots));
  const diagnostics = extractDiagnostics(lines);

  if (result.timedOut) {
    throw new ToolchainError(
      'DEADLINE_EXCEEDED',
      'compile',
      `building ${moduleName} for ${release} took longer than ${timeoutMs} ms; make was killed`,
      diagnostics.length > 0 ? diagnostics : undefined,
      log,
    );
  }
  if (result.aborted) {
    throw new ToolchainError(
      'CANCELLED',
      'compile',
      `building ${moduleName} for ${release} was cancelled; make was killed`,
      undefined,
      log,
    );
  }
  if (result.code !== 0) {
    const outside = readOutsideSandbox(lines, workDir, kernelRoots);
    if (outside) {
      const refusal =
        `${moduleName}.c reads ${outside}, which a compile may not see (only the kernel build tree and the ` +
        `module's own directory are visible): the build is refused`;
      throw new ToolchainError('INVALID_ARGUMENT', 'compile', refusal, [refusal, ...diagnostics], log);
    }
    const errors = diagnostics.filter(isErrorDiagnostic);
    if (errors.length > 0) {
      throw new ToolchainError(
        'INVALID_ARGUMENT',
        'compile',
        `${moduleName}.c does not build against ${release}: ${errors[0]}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`,
        diagnostics,
        log,
      );
    }
    const missing = missingTool(lines);
    if (missing) {
      throw precondition(
        `the kernel build of ${release} needs ${missing}, which is not on this builder${installHint(missing)}`,
        log,
      );
    }
    throw new ToolchainError(
      'INTERNAL',
      'compile',
      `make failed for ${moduleName} on ${release} (exit ${result.code ?? result.signal}) without a compiler diagnostic`,
      diagnostics.length > 0 ? diagnostics : lines.filter((l) => l.trim() !== '').slice(-20),
      log,
    );
  }

  const modulePath = path.join(workDir, `${moduleName}.ko`);
  let ko: Buffer;
  try {
    ko = fs.readFileSync(modulePath);
  } catch {
    throw new ToolchainError(
      'INTERNAL',
      'compile',
      `make succeeded but ${moduleName}.ko is missing`,
      lines.slice(-20),
      log,
    );
  }
  let modinfo: Record<string, string>;
  try {
    modinfo = readModinfo(ko);
  } catch (error) {
    if (!(error instanceof ElfFormatError)) throw error;
    throw new ToolchainError(
      'INTERNAL',
      'compile',
      `${moduleName}.ko is not a readable kernel module: ${error.message}`,
      undefined,
      log,
    );
  }
  const vermagic = modinfo['vermagic'];
  if (!vermagic || !vermagic.startsWith(`${release} `)) {
    throw new ToolchainError(
      'INTERNAL',
      'compile',
      `${moduleName}.ko has vermagic ${JSON.stringify(vermagic)}, not one of ${release}`,
      undefined,
      log,
    );
  }
  if (modinfo['livepatch'] !== 'Y') {
    throw new ToolchainError(
      'INVALID_ARGUMENT',
      'compile',
      `${moduleName}.ko is not a livepatch module: its source lacks MODULE_INFO(livepatch, "Y")`,
      undefined,
      log,
    );
  }
  say(`built ${moduleName}.ko (${ko.length} bytes), vermagic ${vermagic.trim()}`);

  return {
    modulePath,
    moduleName,
    vermagic,
    sizeBytes: ko.length,
    sha256: createHash('sha256').update(ko).digest('hex'),
    toolchain: await toolchainOf(cc, make, tree, headers),
    log,
    warnings: diagnostics.filter(isWarningDiagnostic),
    modinfo,
    sandbox: result.sandbox,
  };
}

function invalid(message: string): ToolchainError {
  return new ToolchainError('INVALID_ARGUMENT', 'compile', message);
}

function precondition(message: string, log: string[] = []): ToolchainError {
  return new ToolchainError('FAILED_PRECONDITION', 'compile', message, undefined, log);
}

interface Tree {
  /** CONFIG_CC_VERSION_TEXT: the compiler command and version Debian built the kernel with. */
  kernelCc?: string;
  /** The -common tree the flavour Makefile includes, when it does. */
  commonDir?: string;
}

function readTree(buildDir: string, release: string): Tree {
  let config: string;
  try {
    config = fs.readFileSync(path.join(buildDir, '.config'), 'utf8');
    fs.accessSync(path.join(buildDir, 'Makefile'));
  } catch {
    throw precondition(
      `${buildDir} is not a prepared kernel build tree for ${release} (no .config or Makefile): use KernelHeadersCache.ensure`,
    );
  }
  if (!/^CONFIG_LIVEPATCH=y$/m.test(config)) {
    throw precondition(`kernel ${release} is built without CONFIG_LIVEPATCH: no livepatch module can load on it`);
  }
  const tree: Tree = {};
  const cc = /^CONFIG_CC_VERSION_TEXT="(.*)"$/m.exec(config);
  if (cc) tree.kernelCc = cc[1]!;
  try {
    const makefile = fs.readFileSync(path.join(buildDir, 'Makefile'), 'utf8');
    const inc = /^\s*include\s+(\S+)\/Makefile\s*$/m.exec(makefile);
    if (inc) tree.commonDir = path.resolve(buildDir, inc[1]!);
  } catch {
    // checked above
  }
  return tree;
}

/** The compiler named by the kernel's CONFIG_CC_VERSION_TEXT (gcc-12, x86_64-linux-gnu-gcc-12), on PATH. */
async function requireCompiler(tree: Tree, release: string): Promise<string> {
  const command = tree.kernelCc?.split(' ')[0] ?? 'gcc';
  if (!/^[A-Za-z0-9._+-]+$/.test(command))
    throw precondition(`kernel ${release} names an unusable compiler ${JSON.stringify(command)}`);
  const found = findExecutable(command);
  if (found) return found;
  const pkg = /(gcc|clang)-([0-9]+)$/.exec(command);
  throw precondition(
    `${command} is not installed on this builder; kernel ${release} was built with "${tree.kernelCc ?? command}" and its ` +
      `modules must be built with the same compiler${pkg ? ` (apt-get install ${pkg[1]}-${pkg[2]})` : ''}`,
  );
}

/** The Debian packages the release's kbuild tools link against or call (libelf1, pahole...). */
async function requireHostPackages(headers: KernelHeaders): Promise<void> {
  const wanted = headers.hostPackages ?? [];
  if (wanted.length === 0 || !findExecutable('dpkg-query')) return;
  const names = [...new Set(wanted.flatMap((g) => g.split('|').map((n) => n.trim())))];
  const result = await runAptTool('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Status}\n', '--', ...names], {
    timeoutMs: 30_000,
  });
  const installed = new Set(
    result.stdout
      .split('\n')
      .map((l) => l.split('\t'))
      .filter(([, status]) => status === 'installed')
      .map(([pkg]) => pkg!.replace(/:.*$/, '')),
  );
  const missing = wanted.filter((group) => !group.split('|').some((n) => installed.has(n.trim())));
  if (missing.length > 0) {
    throw precondition(
      `the kbuild tools of ${headers.release} need Debian packages that are not installed on this builder: ` +
        `${missing.join(', ')} (apt-get install ${missing.map((g) => g.split('|')[0]!.trim()).join(' ')})`,
    );
  }
}

function installHint(missing: string): string {
  const known: Record<string, string> = {
    pahole: 'pahole',
    'libelf.so.1': 'libelf1',
    'libcrypto.so.3': 'libssl3',
    'libz.so.1': 'zlib1g',
    bc: 'bc',
    perl: 'perl',
  };
  const pkg =
    known[missing] ??
    (/^(?:[a-z0-9_]+-)*gcc-[0-9]+$/.test(missing) ? missing.replace(/^.*(gcc-[0-9]+)$/, '$1') : undefined);
  return pkg ? ` (apt-get install ${pkg})` : '';
}

/**
 * The extracted packages' root around a cached tree (<cache>/releases/<release>, holding usr/src
 * and usr/lib): Debian's headers link into linux-headers-*-common and ../../lib/linux-kbuild-*.
 * A tree installed under the system's /usr/src needs nothing more, /usr being visible.
 */
function releaseRoot(buildDir: string): string[] {
  const real = realpath(buildDir) ?? buildDir;
  const m = /^(\/.+)\/usr\/src\/[^/]+$/.exec(real);
  return m ? [m[1]!] : [path.dirname(real)];
}

function realpath(dir: string | undefined): string | undefined {
  if (!dir) return undefined;
  try {
    return fs.realpathSync(dir);
  } catch {
    return undefined;
  }
}

const versionLines = new Map<string, Promise<string>>();

/** First line of `<tool> --version`, once per tool and process. */
function versionLine(tool: string): Promise<string> {
  let line = versionLines.get(tool);
  if (!line) {
    line = runProcess(tool, ['--version'], { cwd: '/', env: minimalEnv('/tmp'), timeoutMs: 10_000 }).then(
      (r) => (r.code === 0 ? (r.lines.find((l) => l.trim() !== '') ?? 'unknown').trim() : 'unknown'),
      () => 'unknown',
    );
    versionLines.set(tool, line);
  }
  return line;
}

async function toolchainOf(
  cc: string,
  make: string,
  tree: Tree,
  headers: KernelHeaders,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {
    cc: await versionLine(cc),
    make: await versionLine(make),
  };
  if (tree.kernelCc) out['kernelCc'] = tree.kernelCc;
  for (const pkg of headers.packages ?? []) {
    out[pkg.name] = pkg.version;
    if (pkg.name.startsWith('linux-kbuild-')) out['kbuild'] = `${pkg.name} ${pkg.version}`;
  }
  return out;
}
