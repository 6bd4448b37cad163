import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '../../..');

/** Path of a built entry point; tells the reader to build first when it is missing. */
export function builtEntry(relative: string): string {
  const file = path.join(REPO_ROOT, relative);
  if (!fs.existsSync(file))
    throw new Error(`${relative} is missing: run "npm run build" before the e2e and process tests`);
  return file;
}

export interface RunningProcess {
  child: ChildProcess;
  /** Everything printed so far, stdout and stderr. */
  output(): string;
  /** Resolves when a line matching `pattern` appears; rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a Node script as a real child process, with its output captured. */
export function startNode(script: string, env: NodeJS.ProcessEnv, args: string[] = []): RunningProcess {
  // Services refuse to start without transport security settled one way or the other; tests that
  // do not test TLS run them in plaintext, said explicitly here rather than in every test.
  const transport = env['REBOOTLESS_PKI_DIR'] || env['REBOOTLESS_INSECURE'] ? {} : { REBOOTLESS_INSECURE: 'true' };
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...transport, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    listeners.forEach((l) => l());
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
      listeners.forEach((l) => l());
    }),
  );
  return {
    child,
    output: () => out,
    exited: () => exit,
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(
              new Error(
                `process exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; output:\n${out}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
  };
}

/** Polls `check` every `every` ms until it holds; fails naming `what` after `ms`. Waits for real processes; measures nothing. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms: number,
  every = 100,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, every));
  }
}
