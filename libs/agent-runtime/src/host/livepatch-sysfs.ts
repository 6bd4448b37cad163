import { execFile } from 'node:child_process';
import { constants, promises as fs } from 'node:fs';
import { machine } from 'node:os';
import { join } from 'node:path';
import type { events } from '@rebootless/contracts';
import {
  KernelError,
  KernelPort,
  KLP_UNDEFINED,
  LoadModuleRequest,
  parseTainted,
  sortFunctions,
} from '@rebootless/kernel-model';
import { kernelErrorFromFs, kernelErrorFromKmod } from './kernel-errors';

export interface LivepatchSysfsOptions {
  /** Prefix for /sys and /proc (tests lay out a tree there). Default "/". */
  root?: string;
  /** Default "insmod" and "rmmod" from PATH (kmod). */
  insmod?: string;
  rmmod?: string;
  /** `uname -m`; default os.machine(). */
  arch?: string;
  /** A module whose patch just left sysfs may still be referenced for a moment: retry rmmod. */
  removeRetries?: number;
  removeRetryDelayMs?: number;
  /** insmod/rmmod are killed after this long. Default 60 s. */
  commandTimeoutMs?: number;
}

/** Module names as the kernel and sysfs spell them; also keeps paths from escaping the tree. */
const MODULE_NAME = /^[A-Za-z0-9_-]{1,55}$/;

/**
 * The real kernel port: insmod/rmmod (kmod) and the livepatch sysfs interface
 * (Documentation/ABI/testing/sysfs-kernel-livepatch). Holds no state: every answer is read from
 * the kernel, so a restarted agent sees the truth.
 */
export class LivepatchSysfs implements KernelPort {
  private readonly root: string;
  private readonly insmod: string;
  private readonly rmmod: string;
  private readonly machineArch: string;
  private readonly removeRetries: number;
  private readonly removeRetryDelayMs: number;
  private readonly commandTimeoutMs: number;

  constructor(options: LivepatchSysfsOptions = {}) {
    this.root = options.root ?? '/';
    this.insmod = options.insmod ?? 'insmod';
    this.rmmod = options.rmmod ?? 'rmmod';
    this.machineArch = options.arch ?? machine();
    this.removeRetries = options.removeRetries ?? 5;
    this.removeRetryDelayMs = options.removeRetryDelayMs ?? 200;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 60_000;
  }

  get livepatchDir(): string {
    return join(this.root, 'sys/kernel/livepatch');
  }

  private proc(...parts: string[]): string {
    return join(this.root, 'proc', ...parts);
  }

  async kernelRelease(): Promise<string> {
    return (await this.readText(this.proc('sys/kernel/osrelease'))).trim();
  }

  async kernelVersion(): Promise<string> {
    return (await this.readText(this.proc('sys/kernel/version'))).trim();
  }

  async arch(): Promise<string> {
    return this.machineArch;
  }

  async bootId(): Promise<string> {
    return (await this.readText(this.proc('sys/kernel/random/boot_id'))).trim();
  }

  async tainted(): Promise<number> {
    const path = this.proc('sys/kernel/tainted');
    const text = await this.readText(path);
    try {
      return parseTainted(text);
    } catch (error) {
      throw new KernelError('EIO', `${path}: ${(error as Error).message}`, 'read');
    }
  }

  async loadModule(request: LoadModuleRequest): Promise<void> {
    this.checkName(request.moduleName, 'loadModule');
    // The kernel reads name, functions and replace from the module itself.
    await this.run(this.insmod, [request.path], 'loadModule', request.moduleName);
    if (!(await this.moduleLoaded(request.moduleName))) {
      // Otherwise the agent would wait forever for a patch directory that never appears.
      throw new KernelError(
        'EINVAL',
        `insmod ${request.path} succeeded but no module named ${request.moduleName} is loaded: the file carries another name`,
        'loadModule',
        request.moduleName,
      );
    }
  }

  async removeModule(moduleName: string): Promise<void> {
    this.checkName(moduleName, 'removeModule');
    for (let attempt = 0; ; attempt += 1) {
      try {
        await this.run(this.rmmod, [moduleName], 'removeModule', moduleName);
        return;
      } catch (error) {
        // Once the patch is gone from sysfs its module reference is dropped asynchronously; a
        // patch still present (enabled, in transition) is a real EBUSY and is not retried.
        const transient =
          error instanceof KernelError &&
          error.code === 'EBUSY' &&
          attempt < this.removeRetries &&
          !(await this.exists(join(this.livepatchDir, moduleName)));
        if (!transient) throw error;
        await new Promise((resolve) => setTimeout(resolve, this.removeRetryDelayMs));
      }
    }
  }

  async moduleLoaded(moduleName: string): Promise<boolean> {
    return (await this.loadOrder()).includes(moduleName);
  }

  async listPatches(): Promise<events.LivePatchState[]> {
    let names: string[];
    try {
      names = (await fs.readdir(this.livepatchDir, { withFileTypes: true }))
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name);
    } catch (error) {
      // No /sys/kernel/livepatch: no livepatch support, so certainly no patch.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw kernelErrorFromFs(error, 'listPatches', this.livepatchDir);
    }
    const read = await Promise.all(names.map((name) => this.readPatch(name)));
    const patches = read.filter((p): p is events.LivePatchState => p !== undefined);
    return this.inStackOrder(patches);
  }

  async setEnabled(moduleName: string, enabled: boolean): Promise<void> {
    this.checkName(moduleName, 'setEnabled');
    await this.writeAttribute(moduleName, 'enabled', enabled ? '1' : '0', 'setEnabled');
  }

  async force(moduleName: string): Promise<void> {
    this.checkName(moduleName, 'force');
    await this.writeAttribute(moduleName, 'force', '1', 'force');
  }

  async stalledTasks(): Promise<events.StalledTask[]> {
    const inTransition = (await this.listPatches()).find((p) => p.transition);
    if (!inTransition) return [];
    // enabled is the target state of the running transition (KLP_PATCHED = 1, KLP_UNPATCHED = 0).
    const target = inTransition.enabled ? 1 : 0;
    const stalled: events.StalledTask[] = [];
    for (const pid of await this.pids()) {
      for (const taskDir of await this.taskDirs(pid)) {
        const state = await this.readOptional(join(taskDir, 'patch_state'));
        if (state === undefined) continue; // the task exited meanwhile
        const patchState = Number(state.trim());
        if (!Number.isInteger(patchState) || patchState === KLP_UNDEFINED || patchState === target) continue;
        const [comm, stack] = await Promise.all([
          this.readOptional(join(taskDir, 'comm')),
          this.readOptional(join(taskDir, 'stack')), // root only; unreadable stacks stay empty
        ]);
        stalled.push({
          pid: Number(taskDir.slice(taskDir.lastIndexOf('/') + 1)),
          comm: (comm ?? '').trim(),
          patchState,
          stack: (stack ?? '')
            .split('\n')
            .map((line) => line.trim())
            .filter((line) => line.length > 0),
        });
      }
    }
    return stalled;
  }

  // ---- reading ----

  private async readPatch(moduleName: string): Promise<events.LivePatchState | undefined> {
    const dir = join(this.livepatchDir, moduleName);
    const enabled = await this.readOptional(join(dir, 'enabled'));
    // The directory vanished between readdir and here (its disable transition just ended).
    if (enabled === undefined) return undefined;
    const [transition, replace, stackOrder] = await Promise.all([
      this.readOptional(join(dir, 'transition')),
      this.readOptional(join(dir, 'replace')), // 6.11+
      this.readOptional(join(dir, 'stack_order')), // 6.13+
    ]);
    const state: events.LivePatchState = {
      moduleName,
      enabled: enabled.trim() === '1',
      transition: transition?.trim() === '1',
      functions: [],
      objectsPatched: {},
    };
    if (replace !== undefined) state.replace = replace.trim() === '1';
    if (stackOrder !== undefined) state.stackOrder = Number(stackOrder.trim());
    for (const object of await this.subdirectories(dir)) {
      const patched = await this.readOptional(join(dir, object, 'patched')); // 6.0+
      if (patched !== undefined) state.objectsPatched[object] = patched.trim() === '1';
      for (const func of await this.subdirectories(join(dir, object))) {
        const comma = func.lastIndexOf(',');
        const name = comma < 0 ? func : func.slice(0, comma);
        const sympos = comma < 0 ? 1 : Number(func.slice(comma + 1));
        state.functions.push({ object, name, sympos: Number.isInteger(sympos) ? sympos : 1 });
      }
    }
    state.functions = sortFunctions(state.functions);
    return state;
  }

  /**
   * sysfs lists directories in no particular order. stack_order (6.13+) says the order; before
   * that, a patch is enabled by its module's init, so the order of module loading (/proc/modules
   * lists the newest first) is the stack order.
   */
  private async inStackOrder(patches: events.LivePatchState[]): Promise<events.LivePatchState[]> {
    if (patches.every((p) => p.stackOrder !== undefined)) {
      return [...patches].sort((a, b) => a.stackOrder! - b.stackOrder!);
    }
    const order = await this.loadOrder();
    const position = (name: string): number => {
      const index = order.indexOf(name);
      return index < 0 ? Number.MAX_SAFE_INTEGER : index;
    };
    return [...patches].sort(
      (a, b) => position(a.moduleName) - position(b.moduleName) || a.moduleName.localeCompare(b.moduleName),
    );
  }

  /** Loaded module names, oldest first (/proc/modules lists the most recently loaded first). */
  private async loadOrder(): Promise<string[]> {
    const text = await this.readText(this.proc('modules'));
    return text
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => name.length > 0)
      .reverse();
  }

  private async pids(): Promise<string[]> {
    const entries = await fs.readdir(this.proc()).catch((error: unknown) => {
      throw kernelErrorFromFs(error, 'stalledTasks', this.proc());
    });
    return entries.filter((name) => /^\d+$/.test(name));
  }

  /** Every thread of a process (a stalled task is often a thread, not a process leader). */
  private async taskDirs(pid: string): Promise<string[]> {
    const taskRoot = this.proc(pid, 'task');
    try {
      const tids = (await fs.readdir(taskRoot)).filter((name) => /^\d+$/.test(name));
      return tids.map((tid) => join(taskRoot, tid));
    } catch {
      return [this.proc(pid)];
    }
  }

  private async subdirectories(dir: string): Promise<string[]> {
    try {
      const entries = await fs.readdir(dir, { withFileTypes: true });
      return entries
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name)
        .sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw kernelErrorFromFs(error, 'listPatches', dir);
    }
  }

  private async readText(path: string): Promise<string> {
    try {
      return await fs.readFile(path, 'utf8');
    } catch (error) {
      throw kernelErrorFromFs(error, 'read', `read ${path}`);
    }
  }

  /** undefined when the file does not exist (an attribute this kernel lacks, a task that exited). */
  private async readOptional(path: string): Promise<string | undefined> {
    try {
      return await fs.readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
      throw kernelErrorFromFs(error, 'read', `read ${path}`);
    }
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await fs.access(path);
      return true;
    } catch {
      return false;
    }
  }

  // ---- writing ----

  /** One write(2) to an existing attribute, as `echo 1 > enabled` does but never O_CREAT: a missing patch is ENOENT. */
  private async writeAttribute(
    moduleName: string,
    attribute: 'enabled' | 'force',
    value: string,
    operation: 'setEnabled' | 'force',
  ): Promise<void> {
    const path = join(this.livepatchDir, moduleName, attribute);
    const what = `write ${value} to ${path}`;
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(path, constants.O_WRONLY | constants.O_TRUNC);
      await handle.write(value);
    } catch (error) {
      throw kernelErrorFromFs(error, operation, what, moduleName);
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }

  private run(
    file: string,
    args: string[],
    operation: 'loadModule' | 'removeModule',
    moduleName: string,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      execFile(file, args, { timeout: this.commandTimeoutMs, encoding: 'utf8' }, (error, _stdout, stderr) => {
        if (!error) return resolve();
        const spawnCode = (error as NodeJS.ErrnoException).code;
        if (typeof spawnCode === 'string') {
          // The command itself could not run (kmod not installed, not executable).
          return reject(new KernelError('EIO', `cannot run ${file}: ${error.message}`, operation, moduleName));
        }
        const fallback = error.killed ? `${file} killed after ${this.commandTimeoutMs} ms` : error.message;
        reject(kernelErrorFromKmod(stderr, operation, moduleName, fallback));
      });
    });
  }

  private checkName(moduleName: string, operation: 'loadModule' | 'removeModule' | 'setEnabled' | 'force'): void {
    if (!MODULE_NAME.test(moduleName)) {
      throw new KernelError(
        'EINVAL',
        `module name ${JSON.stringify(moduleName)} is not a kernel module name (letters, digits, _ and -)`,
        operation,
        moduleName,
      );
    }
  }
}
