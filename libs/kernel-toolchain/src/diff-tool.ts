// Source-diff to livepatch-module tools: kpatch-build (dynup's kpatch) or klp-build (the kernel's
// own, scripts/livepatch/klp-build in newer trees, or SUSE's). Neither is packaged by Debian
// bookworm, so on a plain builder they are absent and diff-based builds are refused up front.
import * as fs from 'node:fs';
import { ToolchainError } from './errors';
import { findExecutable, minimalEnv, runProcess } from './process';

export type DiffToolName = 'kpatch-build' | 'klp-build';

export interface DiffTool {
  name: DiffToolName;
  /** Absolute path of the executable found on PATH. */
  path: string;
  /** The Debian package version owning it, else the tool's --version line, else "unknown". */
  version: string;
}

export interface DiffToolOptions {
  /** Directories to search, PATH syntax; default process.env.PATH. */
  searchPath?: string;
}

const TOOLS: readonly DiffToolName[] = ['kpatch-build', 'klp-build'];

/** The first of kpatch-build, klp-build found on PATH, with its version; undefined when neither is. */
export async function detectDiffTool(opts: DiffToolOptions = {}): Promise<DiffTool | undefined> {
  for (const name of TOOLS) {
    const found = findExecutable(name, opts.searchPath ?? process.env['PATH'] ?? '');
    if (found) return { name, path: found, version: await toolVersion(found) };
  }
  return undefined;
}

/** Like detectDiffTool, but FAILED_PRECONDITION (stage diff-tool) naming the missing tools when there is none. */
export async function requireDiffTool(opts: DiffToolOptions = {}): Promise<DiffTool> {
  const tool = await detectDiffTool(opts);
  if (tool) return tool;
  const message =
    'neither kpatch-build nor klp-build is installed on this builder; building a livepatch from a source diff needs ' +
    'one of them on PATH (Debian does not package either). Submit the livepatch module source instead, which ' +
    'is compiled with the kernel headers alone.';
  throw new ToolchainError('FAILED_PRECONDITION', 'diff-tool', message, [message]);
}

async function toolVersion(executable: string): Promise<string> {
  const packaged = await dpkgVersion(executable);
  if (packaged) return packaged;
  // Both tools are shell scripts without a uniform version flag: read it from the script when it
  // says (kpatch-build sets VERSION=...), never by running it with guessed options.
  try {
    const head = fs.readFileSync(executable, { encoding: 'latin1' }).slice(0, 64 * 1024);
    const m = /^\s*(?:readonly\s+)?VERSION=["']?([0-9][0-9A-Za-z.+~-]*)["']?\s*$/m.exec(head);
    if (m) return m[1]!;
  } catch {
    // unreadable: fall through
  }
  return 'unknown';
}

/** The version of the Debian package that owns `file`, when dpkg knows it. */
async function dpkgVersion(file: string): Promise<string | undefined> {
  if (!findExecutable('dpkg-query')) return undefined;
  const env = minimalEnv('/tmp');
  const owner = await runProcess('dpkg-query', ['-S', '--', fs.realpathSync(file)], {
    cwd: '/',
    env,
    timeoutMs: 10_000,
  }).catch(() => undefined);
  const pkg = owner?.code === 0 ? /^([^:,\s]+)(?::[a-z0-9-]+)?(?:,[^:]*)?: /.exec(owner.stdout)?.[1] : undefined;
  if (!pkg) return undefined;
  const version = await runProcess('dpkg-query', ['-W', '-f=${Version}', '--', pkg], {
    cwd: '/',
    env,
    timeoutMs: 10_000,
  }).catch(() => undefined);
  const v = version?.code === 0 ? version.stdout.trim() : '';
  return v ? `${pkg} ${v}` : undefined;
}
