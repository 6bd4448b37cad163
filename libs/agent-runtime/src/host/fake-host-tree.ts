import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * A temporary directory laid out like a host's /sys, /proc and /etc, as the kernel ABI documents
 * them (Documentation/ABI/testing/sysfs-kernel-livepatch), for testing LivepatchSysfs and host
 * facts without a kernel. Test support only; the real-kernel test runs in QEMU.
 */
export interface FakePatch {
  name: string;
  enabled: boolean;
  transition: boolean;
  /** Attribute written only when given (6.11+). */
  replace?: boolean;
  /** Attribute written only when given (6.13+). */
  stackOrder?: number;
  /** object -> function directories ("cmdline_proc_show,1"); `patched` written when given (6.0+). */
  objects: Record<string, { patched?: boolean; functions: string[] }>;
  /** Whether the write-only force attribute exists (4.15+). Default true. */
  force?: boolean;
}

export interface FakeTask {
  pid: number;
  comm: string;
  patchState: number;
  stack?: string[];
  /** Threads of this process (pid = tid), under /proc/<pid>/task/. */
  threads?: Array<{ tid: number; comm: string; patchState: number; stack?: string[] }>;
  /** Lay out no task/ directory (very old kernels), only /proc/<pid>/patch_state. */
  noTaskDir?: boolean;
}

export class FakeHostTree {
  private constructor(readonly root: string) {}

  static async create(): Promise<FakeHostTree> {
    const root = await fs.mkdtemp(join(tmpdir(), 'rebootless-host-'));
    const tree = new FakeHostTree(root);
    await tree.write('sys/kernel/livepatch/.keep', '');
    await fs.rm(tree.path('sys/kernel/livepatch/.keep'));
    await tree.write('proc/modules', '');
    return tree;
  }

  path(relative: string): string {
    return join(this.root, relative);
  }

  async write(relative: string, content: string, mode?: number): Promise<void> {
    const path = this.path(relative);
    await fs.mkdir(dirname(path), { recursive: true });
    await fs.writeFile(path, content, mode === undefined ? undefined : { mode });
  }

  async read(relative: string): Promise<string> {
    return fs.readFile(this.path(relative), 'utf8');
  }

  async exists(relative: string): Promise<boolean> {
    return fs.access(this.path(relative)).then(
      () => true,
      () => false,
    );
  }

  async addPatch(patch: FakePatch): Promise<void> {
    const dir = `sys/kernel/livepatch/${patch.name}`;
    await this.write(`${dir}/enabled`, `${patch.enabled ? 1 : 0}\n`);
    await this.write(`${dir}/transition`, `${patch.transition ? 1 : 0}\n`);
    if (patch.force ?? true) await this.write(`${dir}/force`, '', 0o200);
    if (patch.replace !== undefined) await this.write(`${dir}/replace`, `${patch.replace ? 1 : 0}\n`);
    if (patch.stackOrder !== undefined) await this.write(`${dir}/stack_order`, `${patch.stackOrder}\n`);
    for (const [object, { patched, functions }] of Object.entries(patch.objects)) {
      await fs.mkdir(this.path(`${dir}/${object}`), { recursive: true });
      if (patched !== undefined) await this.write(`${dir}/${object}/patched`, `${patched ? 1 : 0}\n`);
      for (const fn of functions) await fs.mkdir(this.path(`${dir}/${object}/${fn}`), { recursive: true });
    }
  }

  async removePatch(name: string): Promise<void> {
    await fs.rm(this.path(`sys/kernel/livepatch/${name}`), { recursive: true, force: true });
  }

  /** /proc/modules, most recently loaded first, as the kernel prints it. */
  async setModules(loadedOldestFirst: string[]): Promise<void> {
    const lines = [...loadedOldestFirst]
      .reverse()
      .map((name, i) => `${name} 16384 1 - Live 0xffffffffc0${(0xa00 + i * 16).toString(16)}000 (OEK)\n`);
    await this.write('proc/modules', lines.join(''));
  }

  async addTask(task: FakeTask): Promise<void> {
    const base = `proc/${task.pid}`;
    const stackText = (stack: string[] | undefined) => (stack ?? []).map((line) => `${line}\n`).join('');
    await this.write(`${base}/comm`, `${task.comm}\n`);
    await this.write(`${base}/patch_state`, `${task.patchState}\n`);
    await this.write(`${base}/stack`, stackText(task.stack));
    if (task.noTaskDir) return;
    const threads = [
      { tid: task.pid, comm: task.comm, patchState: task.patchState, stack: task.stack },
      ...(task.threads ?? []),
    ];
    for (const thread of threads) {
      const dir = `${base}/task/${thread.tid}`;
      await this.write(`${dir}/comm`, `${thread.comm}\n`);
      await this.write(`${dir}/patch_state`, `${thread.patchState}\n`);
      await this.write(`${dir}/stack`, stackText(thread.stack));
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.root, { recursive: true, force: true });
  }
}
