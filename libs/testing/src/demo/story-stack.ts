// `npm start` as a test runs it: scripts/stack.mjs up as a real process, in a fresh stack dir,
// on free ports, on a fresh topic, with a small demo fleet; the one JSON document it prints once
// the story has ended is the result. For the e2e tests that watch the story from outside.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freshEventsTopic } from '../kafka';
import { REPO_ROOT, builtEntry } from '../process';
import { freePort } from '../fleet/rig';

export interface StoryStackOptions {
  /** Names the temp dir and the topic. */
  name: string;
  agents: number;
  /** More arguments for `stack.mjs up`. */
  args?: string[];
  /** More environment (KAFKA_BROKERS for another cluster, …). */
  env?: Record<string, string>;
  /** The events topic; default a fresh one on the tests' broker. */
  topic?: string;
}

export interface StoryStack {
  readonly child: ChildProcess;
  readonly dir: string;
  /** builder, dispatcher, ledger, agent, console. */
  readonly ports: number[];
  stdout(): string;
  stderr(): string;
  /** Resolves with the story's JSON result; rejects if the stack exits first or takes over `ms`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  result(ms?: number): Promise<any>;
  /** Ctrl-C, as a user stops it; resolves with its exit code. */
  stop(): Promise<number | null>;
}

export async function startStoryStack(opts: StoryStackOptions): Promise<StoryStack> {
  builtEntry('libs/testing/dist/demo/demo-fleet.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rebootless-${opts.name}-e2e-`));
  const ports = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const topic = opts.topic ?? (await freshEventsTopic(opts.name, 6));
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([key]) =>
        !/^(BUILDER|DISPATCHER|LEDGER|AGENT|CONSOLE)_/.test(key) &&
        !key.startsWith('REBOOTLESS_') &&
        !key.startsWith('OTEL_'),
    ),
  );
  const child = spawn(
    process.execPath,
    [
      path.join(REPO_ROOT, 'scripts', 'stack.mjs'),
      'up',
      '--agents',
      String(opts.agents),
      '--json',
      ...(opts.args ?? []),
    ],
    {
      cwd: REPO_ROOT,
      env: {
        ...inherited,
        REBOOTLESS_STACK_DIR: path.join(dir, 'data'),
        EVENTS_TOPIC: topic,
        EVENTS_TOPIC_PARTITIONS: '6',
        BUILDER_GRPC_PORT: String(ports[0]),
        DISPATCHER_GRPC_PORT: String(ports[1]),
        LEDGER_GRPC_PORT: String(ports[2]),
        AGENT_GRPC_PORT: String(ports[3]),
        CONSOLE_HTTP_PORT: String(ports[4]),
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return {
    child,
    dir,
    ports,
    stdout: () => out,
    stderr: () => err,
    async result(ms = 12 * 60_000) {
      const deadline = Date.now() + ms;
      while (!out.includes('\n')) {
        if (child.exitCode !== null) throw new Error(`the stack exited (${child.exitCode}):\n${err}`);
        if (Date.now() > deadline) throw new Error(`no story within ${ms / 60_000} minutes:\n${err}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      return JSON.parse(out.split('\n')[0]!);
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGINT');
      return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    },
  };
}
