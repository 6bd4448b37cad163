// Host side of the guest probe (guest/probe.ts): one TCP connection per request through the
// lab's hostfwd, one JSON line each way.
import * as net from 'node:net';
import { KernelLabError } from './errors';
import type { CommandResult, ProbeState } from './guest/probe';

export type { CommandResult, ProbePatch, ProbeState } from './guest/probe';

export class GuestProbe {
  constructor(
    readonly port: number,
    readonly host = '127.0.0.1',
  ) {}

  state(): Promise<ProbeState> {
    return this.request<ProbeState>({ op: 'state' });
  }

  /** Copies a module file into the guest (/var/lib/rebootless-lab/modules/<name>.ko). */
  putModule(name: string, bytes: Buffer): Promise<{ path: string; sha256: string; size: number }> {
    return this.request({ op: 'put-module', name, base64: bytes.toString('base64') });
  }

  /** busybox insmod of a module put there before; the exit code and stderr as the guest saw them. */
  insmod(name: string): Promise<CommandResult> {
    return this.request({ op: 'insmod', name });
  }

  rmmod(name: string): Promise<CommandResult> {
    return this.request({ op: 'rmmod', name });
  }

  /** `echo <value> > /sys/kernel/livepatch/<name>/enabled`. */
  writeEnabled(name: string, value: 0 | 1): Promise<{ ok: boolean; code?: string; message?: string }> {
    return this.request({ op: 'write-enabled', name, value: String(value) });
  }

  /** Runs a bundled program /guest/<program>.js with the guest's node. */
  run(program: string, args: string[] = []): Promise<CommandResult> {
    return this.request({ op: 'run', program, args });
  }

  dmesg(): Promise<CommandResult> {
    return this.request({ op: 'dmesg' });
  }

  /** A /proc or /sys file as the guest's kernel shows it (e.g. /proc/version). */
  readKernelFile(file: string): Promise<{ exists: boolean; content?: string }> {
    return this.request({ op: 'read-kernel-file', path: file });
  }

  /** Reads every /proc/sys file and the common /proc files in a child shell (stdout: how many it read). */
  exercise(): Promise<CommandResult> {
    return this.request({ op: 'exercise' }, 150_000);
  }

  /** Whether the guest reaches host:port, and the first line it answers to `send`. */
  connect(
    host: string,
    port: number,
    send: string,
    timeoutMs = 5000,
  ): Promise<{ connected: boolean; reply?: string; error?: string }> {
    return this.request({ op: 'connect', host, port, send, timeoutMs }, timeoutMs + 30_000);
  }

  /** Writes (when `content` is given) and reads /var/lib/rebootless/<name> on the data disk. */
  dataFile(name: string, content?: string): Promise<{ exists: boolean; content?: string }> {
    return this.request(content === undefined ? { op: 'data-file', name } : { op: 'data-file', name, content });
  }

  poweroff(): Promise<unknown> {
    return this.request({ op: 'poweroff' }, 10_000);
  }

  /** Polls state() until `done` holds (livepatch transitions finish in the background). */
  async waitFor(done: (state: ProbeState) => boolean, what: string, timeoutMs = 60_000): Promise<ProbeState> {
    const end = Date.now() + timeoutMs;
    let last: ProbeState | undefined;
    while (Date.now() < end) {
      last = await this.state();
      if (done(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new KernelLabError(
      'guest',
      `timed out after ${timeoutMs} ms waiting for ${what}; last state ${JSON.stringify(last)}`,
    );
  }

  request<T>(body: Record<string, unknown>, timeoutMs = 180_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const socket = net.connect({ host: this.host, port: this.port });
      let buffered = '';
      let settled = false;
      const finish = (error: Error | undefined, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(value as T);
      };
      const timer = setTimeout(
        () => finish(new KernelLabError('guest', `probe ${String(body['op'])}: no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(`${JSON.stringify(body)}\n`));
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        const nl = buffered.indexOf('\n');
        if (nl < 0) return;
        try {
          const answer = JSON.parse(buffered.slice(0, nl)) as { ok: boolean; result?: T; error?: string };
          if (answer.ok) finish(undefined, answer.result);
          else finish(new KernelLabError('guest', `probe ${String(body['op'])}: ${answer.error ?? 'failed'}`));
        } catch (error) {
          finish(error as Error);
        }
      });
      socket.on('error', (error) =>
        finish(new KernelLabError('guest', `probe ${String(body['op'])}: ${error.message}`)),
      );
      socket.on('close', () =>
        finish(new KernelLabError('guest', `probe ${String(body['op'])}: connection closed without an answer`)),
      );
    });
  }
}
