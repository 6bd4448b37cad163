// A kernel port served over a Unix socket, for running an agent as a real process against a
// simulated kernel that lives elsewhere (a test, the fleet simulator). A real kernel outlives the
// agent; so does a kernel served this way, which is what lets a test SIGKILL an agent mid-apply
// and check that the restarted agent reports what the kernel shows.
// Protocol: one JSON object per line. Request {id, method, args}; answer {id, result} or
// {id, error: {code, message, operation, moduleName}}. Only KernelPort methods are served.
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { events } from '@rebootless/contracts';
import {
  KernelError,
  type KernelErrorCode,
  type KernelOperation,
  type KernelPort,
  type LoadModuleRequest,
} from '@rebootless/kernel-model';

const METHODS = [
  'kernelRelease',
  'kernelVersion',
  'arch',
  'bootId',
  'tainted',
  'loadModule',
  'removeModule',
  'moduleLoaded',
  'listPatches',
  'setEnabled',
  'force',
  'stalledTasks',
] as const satisfies readonly (keyof KernelPort)[];
type Method = (typeof METHODS)[number];

interface Request {
  id: number;
  method: Method;
  args: unknown[];
}

interface WireError {
  code?: KernelErrorCode;
  message: string;
  operation?: KernelOperation;
  moduleName?: string;
}

export interface KernelServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

/**
 * Serves `kernel` on `socketPath`. `afterCall` runs once a call has been carried out and before
 * its answer goes back (a test kills its agent there: the kernel changed, the agent never heard).
 */
export async function serveKernelPort(
  kernel: KernelPort,
  socketPath: string,
  afterCall?: (method: Method, args: unknown[]) => void,
): Promise<KernelServer> {
  fs.rmSync(socketPath, { force: true });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('utf8');
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        void answer(line).then((reply) => {
          if (!socket.destroyed) socket.write(JSON.stringify(reply) + '\n');
        });
      }
    });
  });
  const answer = async (line: string): Promise<object> => {
    let request: Request;
    try {
      request = JSON.parse(line) as Request;
    } catch {
      return { id: -1, error: { code: 'EINVAL', message: 'unparsable request' } };
    }
    if (!(METHODS as readonly string[]).includes(request.method)) {
      return { id: request.id, error: { code: 'EINVAL', message: `no kernel method ${String(request.method)}` } };
    }
    try {
      const fn = kernel[request.method] as (...args: unknown[]) => Promise<unknown>;
      const result = await fn.apply(kernel, request.args ?? []);
      afterCall?.(request.method, request.args ?? []);
      return { id: request.id, result: result ?? null };
    } catch (error) {
      const e = error as Partial<KernelError> & Error;
      // The message without KernelError's "CODE: " prefix, which the client adds back.
      const message = e.code ? e.message.replace(new RegExp(`^${e.code}: `), '') : e.message;
      const wire: WireError = { message, ...(e.code ? { code: e.code } : {}) };
      if (e.operation) wire.operation = e.operation;
      if (e.moduleName) wire.moduleName = e.moduleName;
      return { id: request.id, error: wire };
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  return {
    socketPath,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The agent's side: every KernelPort call goes to the served kernel. */
export class RemoteKernelPort implements KernelPort {
  private socket: net.Socket | undefined;
  private nextId = 1;
  private buffered = '';
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(private readonly socketPath: string) {}

  kernelRelease(): Promise<string> {
    return this.call('kernelRelease');
  }
  kernelVersion(): Promise<string> {
    return this.call('kernelVersion');
  }
  arch(): Promise<string> {
    return this.call('arch');
  }
  bootId(): Promise<string> {
    return this.call('bootId');
  }
  tainted(): Promise<number> {
    return this.call('tainted');
  }
  loadModule(request: LoadModuleRequest): Promise<void> {
    return this.call('loadModule', request);
  }
  removeModule(moduleName: string): Promise<void> {
    return this.call('removeModule', moduleName);
  }
  moduleLoaded(moduleName: string): Promise<boolean> {
    return this.call('moduleLoaded', moduleName);
  }
  listPatches(): Promise<events.LivePatchState[]> {
    return this.call('listPatches');
  }
  setEnabled(moduleName: string, enabled: boolean): Promise<void> {
    return this.call('setEnabled', moduleName, enabled);
  }
  force(moduleName: string): Promise<void> {
    return this.call('force', moduleName);
  }
  stalledTasks(): Promise<events.StalledTask[]> {
    return this.call('stalledTasks');
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connection(): net.Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = net.connect(this.socketPath);
    socket.unref();
    socket.on('data', (data) => {
      this.buffered += data.toString('utf8');
      let newline: number;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const reply = JSON.parse(this.buffered.slice(0, newline)) as {
          id: number;
          result?: unknown;
          error?: WireError;
        };
        this.buffered = this.buffered.slice(newline + 1);
        const w = this.waiting.get(reply.id);
        this.waiting.delete(reply.id);
        if (!w) continue;
        if (reply.error) {
          const e = reply.error;
          w.reject(new KernelError(e.code ?? 'EIO', e.message, e.operation, e.moduleName));
        } else {
          w.resolve(reply.result ?? undefined);
        }
      }
    });
    const fail = (why: string) => {
      for (const w of this.waiting.values())
        w.reject(new KernelError('EIO', `kernel socket ${this.socketPath}: ${why}`));
      this.waiting.clear();
      if (this.socket === socket) this.socket = undefined;
    };
    socket.on('error', (error) => fail(error.message));
    socket.on('close', () => fail('closed'));
    this.socket = socket;
    return socket;
  }

  private call<T>(method: Method, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const socket = this.connection();
      socket.ref();
      socket.write(JSON.stringify({ id, method, args }) + '\n');
    }).finally(() => {
      if (this.waiting.size === 0) this.socket?.unref();
    });
  }
}
