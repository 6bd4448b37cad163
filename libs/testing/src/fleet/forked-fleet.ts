// A simulated fleet split across child processes, each running a SimulatedFleet for its share of
// the hosts. For benchmarks: ten thousand agents in one Node process keep one core busy while
// the machine has more, and they would compete with the benchmark's own loop for it. The hosts
// stay the same real agents over the same real gRPC streams; only the process they live in moves.
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { SimulatedFleetOptions, SimulatedHostSpec } from './simulated-fleet';

/** What a worker needs to build its SimulatedFleet. */
export type ForkedFleetOptions = Omit<SimulatedFleetOptions, 'builderPublicKey'> & {
  builderPublicKey: Uint8Array;
};

export type WorkerRequest =
  | {
      type: 'start';
      options: Omit<ForkedFleetOptions, 'builderPublicKey'> & { builderPublicKey: string };
      specs: SimulatedHostSpec[];
      concurrency: number;
    }
  | { type: 'close' };

export type WorkerReport =
  { type: 'started' } | { type: 'connected'; count: number } | { type: 'closed' } | { type: 'failed'; error: string };

interface Worker {
  child: ChildProcess;
  connected: number;
  next: (report: WorkerReport) => void;
}

export class ForkedFleet {
  private readonly workers: Worker[] = [];

  constructor(
    private readonly options: ForkedFleetOptions,
    private readonly specs: readonly SimulatedHostSpec[],
    private readonly processes = 2,
    private readonly nodeArgs: string[] = [],
  ) {}

  /** Starts every worker's agents (each worker `concurrency` at a time); resolves once all started. */
  async start(concurrency = 64): Promise<void> {
    const script = path.join(__dirname, 'fleet-worker.js');
    const shares = Array.from({ length: this.processes }, (_, i) =>
      this.specs.filter((_, j) => j % this.processes === i),
    );
    await Promise.all(
      shares.map(async (specs, i) => {
        const child = fork(script, [], { execArgv: this.nodeArgs, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        const worker: Worker = { child, connected: 0, next: () => undefined };
        this.workers.push(worker);
        const started = this.awaitReport(worker, 'started');
        child.on('message', (report: WorkerReport) => {
          if (report.type === 'connected') worker.connected = report.count;
          worker.next(report);
        });
        const { builderPublicKey, ...rest } = this.options;
        const request: WorkerRequest = {
          type: 'start',
          options: {
            ...rest,
            root: path.join(this.options.root, `worker-${i}`),
            builderPublicKey: Buffer.from(builderPublicKey).toString('hex'),
          },
          specs,
          concurrency,
        };
        child.send(request);
        await started;
      }),
    );
  }

  /** The workers' process ids (for CPU accounting). */
  pids(): number[] {
    return this.workers.map((w) => w.child.pid!).filter(Boolean);
  }

  connectedCount(): number {
    return this.workers.reduce((n, w) => n + w.connected, 0);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.child.exitCode !== null) return;
        const exited = new Promise((r) => w.child.once('exit', r));
        const closed = this.awaitReport(w, 'closed').catch(() => undefined);
        w.child.send({ type: 'close' } satisfies WorkerRequest);
        await Promise.race([closed, exited]);
        // It exits by itself once closed (writing a --cpu-prof profile on the way); a stuck one is stopped.
        const timer = setTimeout(() => w.child.kill('SIGTERM'), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    this.workers.length = 0;
  }

  private awaitReport(worker: Worker, type: WorkerReport['type']): Promise<void> {
    return new Promise((resolve, reject) => {
      const exit = (code: number | null) => reject(new Error(`a fleet worker exited (${code}) before it said ${type}`));
      worker.child.once('exit', exit);
      worker.next = (report) => {
        if (report.type === 'failed') reject(new Error(`a fleet worker failed: ${report.error}`));
        if (report.type !== type) return;
        worker.child.off('exit', exit);
        resolve();
      };
    });
  }
}
