// Child processes: always an executable plus an argument array (never a shell string), in a
// process group of their own so a timeout or an abort kills everything they started (make's
// compilers included), with a minimal, explicit environment.
// A default import: calls go through the module object itself, so tests can observe every spawn.
import childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RunOptions {
  cwd: string;
  /** The whole environment of the child (nothing is inherited beyond what is given here). */
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Each complete output line (stdout and stderr interleaved), as it arrives. */
  onLine?: (line: string) => void;
  /** Grace between SIGTERM to the group and SIGKILL. */
  killGraceMs?: number;
  /** Cap on the output kept in memory (the rest is counted, not kept). */
  maxOutputBytes?: number;
}

export interface RunResult {
  /** Exit code, or null when the process died of a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr lines interleaved in arrival order. */
  lines: string[];
  timedOut: boolean;
  aborted: boolean;
  ms: number;
}

/** Thrown (rejected) when the executable itself cannot be started (ENOENT, EACCES). */
export class SpawnError extends Error {
  constructor(
    readonly command: string,
    readonly errno: string | undefined,
  ) {
    super(`cannot run ${command}: ${errno ?? 'unknown error'}`);
  }
}

/** The environment every tool here runs with: PATH, HOME, a private TMPDIR and the C locale. */
export function minimalEnv(tmpDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: process.env['HOME'] ?? tmpDir,
    TMPDIR: tmpDir,
    // Plain ASCII quotes from gcc and untranslated messages from apt, make and dpkg. The kernel's
    // Makefile unexports LC_ALL, so LANG must say it as well.
    LANG: 'C',
    LC_ALL: 'C',
    ...extra,
  };
}

/** Runs `command args...` to completion (any exit code resolves; only a failure to start rejects). */
export function runProcess(command: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  const maxBytes = opts.maxOutputBytes ?? 8 * 1024 * 1024;
  return new Promise<RunResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      resolve({
        code: null,
        signal: null,
        stdout: '',
        stderr: '',
        lines: [],
        timedOut: false,
        aborted: true,
        ms: 0,
      });
      return;
    }
    let child: childProcess.ChildProcess;
    try {
      child = childProcess.spawn(command, [...args], {
        cwd: opts.cwd,
        env: opts.env,
        detached: true, // its own process group: -pid reaches make and every compiler it forked
        stdio: ['ignore', 'pipe', 'pipe'],
        shell: false,
      });
    } catch (error) {
      reject(new SpawnError(command, (error as NodeJS.ErrnoException).code));
      return;
    }

    let stdout = '';
    let stderr = '';
    let kept = 0;
    const lines: string[] = [];
    const partial = { out: '', err: '' };
    let timedOut = false;
    let aborted = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;

    const take = (which: 'out' | 'err', chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (kept < maxBytes) {
        kept += chunk.length;
        if (which === 'out') stdout += text;
        else stderr += text;
      }
      const joined = partial[which] + text;
      const parts = joined.split('\n');
      partial[which] = parts.pop() ?? '';
      for (const line of parts) emit(line);
    };
    const emit = (line: string) => {
      const clean = line.replace(/\r$/, '');
      if (lines.length < 20_000) lines.push(clean);
      opts.onLine?.(clean);
    };

    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    const stop = () => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), opts.killGraceMs ?? 2000);
      killTimer.unref();
    };

    const timer = setTimeout(
      () => {
        timedOut = true;
        stop();
      },
      Math.max(1, opts.timeoutMs),
    );
    const onAbort = () => {
      aborted = true;
      stop();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const cleanup = () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };

    child.stdout!.on('data', (c: Buffer) => take('out', c));
    child.stderr!.on('data', (c: Buffer) => take('err', c));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(new SpawnError(command, error.code));
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (partial.out) emit(partial.out);
      if (partial.err) emit(partial.err);
      if (killTimer) clearTimeout(killTimer);
      const result = { code, signal, stdout, stderr, lines, timedOut, aborted, ms: Date.now() - started };
      if (!(timedOut || aborted) || child.pid === undefined) return resolve(result);
      // Whatever the leader left behind in its group goes too (a compiler orphaned by make's
      // death), and the caller hears back only once the group is gone, not while it is dying.
      killGroup('SIGKILL');
      void groupGone(child.pid, opts.killGraceMs ?? 2000).then(() => resolve(result));
    });
  });
}

/** Resolves when no process of the group is left (or after `ms`, for zombies nobody reaps). */
async function groupGone(pgid: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Looks `name` up on PATH (or the given search path) like execvp would; undefined when absent. */
export function findExecutable(name: string, searchPath = process.env['PATH'] ?? ''): string | undefined {
  if (name.includes('/')) return isExecutableFile(name) ? name : undefined;
  for (const dir of searchPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
