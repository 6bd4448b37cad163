import { promises as fs } from 'node:fs';
import type { events } from '@rebootless/contracts';
import {
  KernelError,
  KernelPort,
  LoadModuleRequest,
  SimulatedKernel,
  SimulatedKernelOptions,
  SimulatedKernelRuntime,
  SimulatedKernelState,
} from '@rebootless/kernel-model';

export interface SimulatedKernelFileOptions {
  /** Used only when the file does not exist yet: the kernel the "machine" boots with. */
  initial?: Omit<SimulatedKernelOptions, keyof SimulatedKernelRuntime>;
  /** Functions cannot be stored: every opener passes its own (clock, module provenance, boot ids). */
  runtime?: SimulatedKernelRuntime;
  /** Give up waiting for another process's lock after this long. Default 10 s. */
  lockTimeoutMs?: number;
}

/**
 * A simulated kernel kept in a JSON file, so it outlives the agent process like a real kernel:
 * an agent daemon SIGKILLed between insmod and its report finds, on restart, what it left in
 * "its kernel". Every call loads the state, applies the rules of SimulatedKernel and writes it
 * back (atomically, by rename) under a lock file, so a test harness in another process can stall
 * tasks or reboot the same kernel. For e2e tests of the real agent daemon; in-process fleets use
 * SimulatedKernel directly.
 */
export class SimulatedKernelFile implements KernelPort {
  private readonly lockPath: string;
  private readonly lockTimeoutMs: number;

  private constructor(
    readonly path: string,
    private readonly runtime: SimulatedKernelRuntime,
    options: SimulatedKernelFileOptions,
  ) {
    this.lockPath = `${path}.lock`;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
  }

  /** Opens the kernel stored at `path`, creating it from `initial` when the file does not exist. */
  static async open(path: string, options: SimulatedKernelFileOptions = {}): Promise<SimulatedKernelFile> {
    const file = new SimulatedKernelFile(path, options.runtime ?? {}, options);
    const state = new SimulatedKernel({ ...options.initial, ...options.runtime }).toState();
    try {
      await fs.writeFile(path, JSON.stringify(state), { flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    return file;
  }

  /** Runs simulation controls (addSleepingTask, wakeTask, reboot...) on the stored kernel. */
  control<T>(action: (kernel: SimulatedKernel) => T | Promise<T>): Promise<T> {
    return this.withKernel(action);
  }

  kernelRelease(): Promise<string> {
    return this.withKernel((k) => k.kernelRelease());
  }

  kernelVersion(): Promise<string> {
    return this.withKernel((k) => k.kernelVersion());
  }

  arch(): Promise<string> {
    return this.withKernel((k) => k.arch());
  }

  bootId(): Promise<string> {
    return this.withKernel((k) => k.bootId());
  }

  tainted(): Promise<number> {
    return this.withKernel((k) => k.tainted());
  }

  loadModule(request: LoadModuleRequest): Promise<void> {
    return this.withKernel((k) => k.loadModule(request));
  }

  removeModule(moduleName: string): Promise<void> {
    return this.withKernel((k) => k.removeModule(moduleName));
  }

  moduleLoaded(moduleName: string): Promise<boolean> {
    return this.withKernel((k) => k.moduleLoaded(moduleName));
  }

  listPatches(): Promise<events.LivePatchState[]> {
    return this.withKernel((k) => k.listPatches());
  }

  setEnabled(moduleName: string, enabled: boolean): Promise<void> {
    return this.withKernel((k) => k.setEnabled(moduleName, enabled));
  }

  force(moduleName: string): Promise<void> {
    return this.withKernel((k) => k.force(moduleName));
  }

  stalledTasks(): Promise<events.StalledTask[]> {
    return this.withKernel((k) => k.stalledTasks());
  }

  /** Load, act, save, also when the action fails: a refused insmod still taints the kernel. */
  private async withKernel<T>(action: (kernel: SimulatedKernel) => T | Promise<T>): Promise<T> {
    await this.lock();
    try {
      const state = JSON.parse(await fs.readFile(this.path, 'utf8')) as SimulatedKernelState;
      const kernel = SimulatedKernel.fromState(state, this.runtime);
      try {
        return await action(kernel);
      } finally {
        const tmp = `${this.path}.${process.pid}.tmp`;
        await fs.writeFile(tmp, JSON.stringify(kernel.toState()));
        await fs.rename(tmp, this.path);
      }
    } finally {
      await fs.rm(this.lockPath, { force: true });
    }
  }

  private async lock(): Promise<void> {
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        await fs.writeFile(this.lockPath, String(process.pid), { flag: 'wx' });
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      // A holder that died (SIGKILL) leaves its lock behind: take it over.
      const holder = Number(await fs.readFile(this.lockPath, 'utf8').catch(() => ''));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && !isAlive(holder)) {
        await fs.rm(this.lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new KernelError(
          'EBUSY',
          `simulated kernel ${this.path} stayed locked by pid ${holder} for ${this.lockTimeoutMs} ms`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
