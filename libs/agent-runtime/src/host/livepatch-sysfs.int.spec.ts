import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { KernelError, KLP_PATCHED, KLP_UNDEFINED, KLP_UNPATCHED } from '@rebootless/kernel-model';
import { FakeHostTree } from './fake-host-tree';
import { LivepatchSysfs } from './livepatch-sysfs';

/**
 * LivepatchSysfs against a directory tree laid out like the kernel's sysfs and procfs, with kmod
 * stood in for by shell scripts that print kmod's own messages. The real kernel is tested in QEMU.
 */
let tree: FakeHostTree;

beforeEach(async () => {
  tree = await FakeHostTree.create();
});

afterEach(async () => {
  await tree.remove();
});

async function rejection(promise: Promise<unknown>): Promise<KernelError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof KernelError) return error;
    throw error;
  }
  throw new Error('expected a KernelError, the call succeeded');
}

/** insmod stand-in: logs its argv, then runs the ".ko" (a shell script playing the kernel's part). */
async function fakeKmod(): Promise<{ insmod: string; rmmod: string; log: () => Promise<string[][]> }> {
  const logFile = tree.path('kmod.log');
  const insmod = tree.path('bin/insmod');
  const rmmod = tree.path('bin/rmmod');
  await tree.write(
    'bin/insmod',
    `#!/bin/sh\nprintf 'insmod' >> '${logFile}'\nfor a in "$@"; do printf '|%s' "$a" >> '${logFile}'; done\necho >> '${logFile}'\nexec /bin/sh "$1"\n`,
    0o755,
  );
  await tree.write(
    'bin/rmmod',
    `#!/bin/sh\nprintf 'rmmod' >> '${logFile}'\nfor a in "$@"; do printf '|%s' "$a" >> '${logFile}'; done\necho >> '${logFile}'\n` +
      `behaviour='${tree.path('rmmod.d')}'/"$1".sh\n` +
      `if [ -f "$behaviour" ]; then exec /bin/sh "$behaviour"; fi\n` +
      `echo "rmmod: ERROR: Module $1 is not currently loaded" >&2\nexit 1\n`,
    0o755,
  );
  const log = async (): Promise<string[][]> => {
    const text = await fs.readFile(logFile, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('|'));
  };
  return { insmod, rmmod, log };
}

const inUse = (name: string) => `echo "rmmod: ERROR: Module ${name} is in use" >&2\nexit 1\n`;

describe('LivepatchSysfs reading /sys/kernel/livepatch', () => {
  it('6.1 layout: patches in stack order from /proc/modules (sysfs order means nothing), objects, functions, patched', async () => {
    await tree.addPatch({
      name: 'zz_first',
      enabled: true,
      transition: false,
      objects: { vmlinux: { patched: true, functions: ['cmdline_proc_show,1', 'meminfo_proc_show,1'] } },
    });
    await tree.addPatch({
      name: 'aa_second',
      enabled: true,
      transition: true,
      objects: {
        vmlinux: { patched: true, functions: ['cmdline_proc_show,1'] },
        nfs: { patched: false, functions: ['nfs_file_read,2'] },
      },
    });
    await tree.setModules(['ext4', 'zz_first', 'aa_second']);
    const kernel = new LivepatchSysfs({ root: tree.root });

    expect(await kernel.listPatches()).toEqual([
      {
        moduleName: 'zz_first',
        enabled: true,
        transition: false,
        functions: [
          { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 1 },
          { object: 'vmlinux', name: 'meminfo_proc_show', sympos: 1 },
        ],
        objectsPatched: { vmlinux: true },
      },
      {
        moduleName: 'aa_second',
        enabled: true,
        transition: true,
        functions: [
          { object: 'nfs', name: 'nfs_file_read', sympos: 2 },
          { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 1 },
        ],
        objectsPatched: { vmlinux: true, nfs: false },
      },
    ]);
  });

  it('6.13 layout: replace and stack_order are read, and stack_order decides the order', async () => {
    await tree.addPatch({
      name: 'a_top',
      enabled: true,
      transition: false,
      replace: false,
      stackOrder: 2,
      objects: { vmlinux: { patched: true, functions: ['f,1'] } },
    });
    await tree.addPatch({
      name: 'b_bottom',
      enabled: false,
      transition: true,
      replace: true,
      stackOrder: 1,
      objects: { vmlinux: { patched: true, functions: ['g,1'] } },
    });
    const patches = await new LivepatchSysfs({ root: tree.root }).listPatches();
    expect(patches.map((p) => [p.moduleName, p.stackOrder, p.replace, p.enabled, p.transition])).toEqual([
      ['b_bottom', 1, true, false, true],
      ['a_top', 2, false, true, false],
    ]);
  });

  it('5.10 layout: no patched, no replace, no stack_order: those stay absent, not false', async () => {
    await tree.addPatch({
      name: 'lp',
      enabled: true,
      transition: false,
      objects: { vmlinux: { functions: ['cmdline_proc_show,1'] } },
    });
    await tree.setModules(['lp']);
    const [patch] = await new LivepatchSysfs({ root: tree.root }).listPatches();
    expect(patch).toEqual({
      moduleName: 'lp',
      enabled: true,
      transition: false,
      functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 1 }],
      objectsPatched: {},
    });
    expect('replace' in patch!).toBe(false);
    expect('stackOrder' in patch!).toBe(false);
  });

  it('no /sys/kernel/livepatch at all (no livepatch support) is an empty stack', async () => {
    await fs.rm(tree.path('sys/kernel/livepatch'), { recursive: true });
    expect(await new LivepatchSysfs({ root: tree.root }).listPatches()).toEqual([]);
  });

  it('a loaded module is known from /proc/modules, also once its patch left sysfs', async () => {
    await tree.setModules(['ext4', 'lp_disabled']);
    const kernel = new LivepatchSysfs({ root: tree.root });
    expect(await kernel.moduleLoaded('lp_disabled')).toBe(true);
    expect(await kernel.moduleLoaded('lp_other')).toBe(false);
  });
});

describe('LivepatchSysfs writing enabled and force', () => {
  beforeEach(async () => {
    await tree.addPatch({
      name: 'lp',
      enabled: true,
      transition: true,
      objects: { vmlinux: { patched: true, functions: ['f,1'] } },
    });
  });

  it('disabling writes 0 to <patch>/enabled, enabling writes 1', async () => {
    const kernel = new LivepatchSysfs({ root: tree.root });
    await kernel.setEnabled('lp', false);
    expect(await tree.read('sys/kernel/livepatch/lp/enabled')).toBe('0');
    await kernel.setEnabled('lp', true);
    expect(await tree.read('sys/kernel/livepatch/lp/enabled')).toBe('1');
  });

  it('force writes 1 to <patch>/force', async () => {
    await new LivepatchSysfs({ root: tree.root }).force('lp');
    expect(await tree.read('sys/kernel/livepatch/lp/force')).toBe('1');
  });

  it('a patch that is not there is ENOENT, and no file is created for it', async () => {
    const kernel = new LivepatchSysfs({ root: tree.root });
    const error = await rejection(kernel.setEnabled('gone', false));
    expect(error.code).toBe('ENOENT');
    expect(error.operation).toBe('setEnabled');
    expect(error.moduleName).toBe('gone');
    expect(await tree.exists('sys/kernel/livepatch/gone')).toBe(false);
  });

  it('a kernel without the force attribute (before 4.15) answers ENOENT to force', async () => {
    await tree.addPatch({
      name: 'old',
      enabled: true,
      transition: true,
      force: false,
      objects: { vmlinux: { functions: ['f,1'] } },
    });
    expect((await rejection(new LivepatchSysfs({ root: tree.root }).force('old'))).code).toBe('ENOENT');
    expect(await tree.exists('sys/kernel/livepatch/old/force')).toBe(false);
  });

  it('a name that is not a module name never reaches the file system', async () => {
    const kernel = new LivepatchSysfs({ root: tree.root });
    const error = await rejection(kernel.setEnabled('../../../etc', false));
    expect(error.code).toBe('EINVAL');
    expect(error.message).toContain('not a kernel module name');
  });
});

describe('LivepatchSysfs stalled tasks from /proc/<pid>/patch_state', () => {
  beforeEach(async () => {
    await tree.addTask({ pid: 1, comm: 'systemd', patchState: KLP_PATCHED });
    await tree.addTask({
      pid: 4242,
      comm: 'nfsd',
      patchState: KLP_PATCHED,
      threads: [
        {
          tid: 4250,
          comm: 'nfsd-worker',
          patchState: KLP_UNPATCHED,
          stack: ['[<0>] nfs_file_read+0x5a/0x110 [nfs]', '[<0>] vfs_read+0x9b/0x190'],
        },
      ],
    });
    await tree.addTask({
      pid: 77,
      comm: 'kthreadd',
      patchState: KLP_UNPATCHED,
      noTaskDir: true,
      stack: ['[<0>] kthreadd+0x2a/0x1b0'],
    });
    await tree.write('proc/self/comm', 'node\n');
    await tree.write('proc/sys/kernel/tainted', '0\n');
  });

  it('while a patch is being enabled, every task (thread included) still unpatched is reported with its stack', async () => {
    await tree.addPatch({ name: 'lp', enabled: true, transition: true, objects: { vmlinux: { functions: ['f,1'] } } });
    const stalled = await new LivepatchSysfs({ root: tree.root }).stalledTasks();
    expect(stalled.sort((a, b) => a.pid - b.pid)).toEqual([
      { pid: 77, comm: 'kthreadd', patchState: KLP_UNPATCHED, stack: ['[<0>] kthreadd+0x2a/0x1b0'] },
      {
        pid: 4250,
        comm: 'nfsd-worker',
        patchState: KLP_UNPATCHED,
        stack: ['[<0>] nfs_file_read+0x5a/0x110 [nfs]', '[<0>] vfs_read+0x9b/0x190'],
      },
    ]);
  });

  it('while a patch is being disabled, the tasks still patched are the stalled ones', async () => {
    await tree.addPatch({ name: 'lp', enabled: false, transition: true, objects: { vmlinux: { functions: ['f,1'] } } });
    const stalled = await new LivepatchSysfs({ root: tree.root }).stalledTasks();
    expect(stalled.map((t) => [t.pid, t.comm]).sort()).toEqual([
      [1, 'systemd'],
      [4242, 'nfsd'],
    ]);
  });

  it('no transition, no stalled task (whatever patch_state says), and -1 is never a stall', async () => {
    await tree.addPatch({ name: 'lp', enabled: true, transition: false, objects: { vmlinux: { functions: ['f,1'] } } });
    const kernel = new LivepatchSysfs({ root: tree.root });
    expect(await kernel.stalledTasks()).toEqual([]);
    await tree.removePatch('lp');
    await tree.addPatch({ name: 'lp2', enabled: true, transition: true, objects: { vmlinux: { functions: ['f,1'] } } });
    await tree.addTask({ pid: 9, comm: 'idle-ish', patchState: KLP_UNDEFINED });
    expect((await kernel.stalledTasks()).map((t) => t.pid)).not.toContain(9);
  });

  it('an unreadable stack (not root) leaves the stack empty rather than failing', async () => {
    await tree.addPatch({ name: 'lp', enabled: true, transition: true, objects: { vmlinux: { functions: ['f,1'] } } });
    await fs.rm(tree.path('proc/77/stack'));
    const stalled = await new LivepatchSysfs({ root: tree.root }).stalledTasks();
    expect(stalled.find((t) => t.pid === 77)).toEqual({
      pid: 77,
      comm: 'kthreadd',
      patchState: KLP_UNPATCHED,
      stack: [],
    });
  });
});

describe('LivepatchSysfs identity files', () => {
  it('reads release, version, boot id and taint from /proc', async () => {
    await tree.write('proc/sys/kernel/osrelease', '6.1.0-56-cloud-amd64\n');
    await tree.write('proc/sys/kernel/version', '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)\n');
    await tree.write('proc/sys/kernel/random/boot_id', '0f5e5a3c-6a3b-4c55-9b0e-2d0a7f6f1c11\n');
    await tree.write('proc/sys/kernel/tainted', '45056\n');
    const kernel = new LivepatchSysfs({ root: tree.root, arch: 'x86_64' });
    expect(await kernel.kernelRelease()).toBe('6.1.0-56-cloud-amd64');
    expect(await kernel.kernelVersion()).toBe('#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)');
    expect(await kernel.bootId()).toBe('0f5e5a3c-6a3b-4c55-9b0e-2d0a7f6f1c11');
    expect(await kernel.tainted()).toBe(45056);
    expect(await kernel.arch()).toBe('x86_64');
  });

  it('a missing boot_id is ENOENT naming the file; garbage in tainted is EIO', async () => {
    const kernel = new LivepatchSysfs({ root: tree.root });
    const missing = await rejection(kernel.bootId());
    expect(missing.code).toBe('ENOENT');
    expect(missing.message).toContain(join(tree.root, 'proc/sys/kernel/random/boot_id'));
    await tree.write('proc/sys/kernel/tainted', 'lots\n');
    expect((await rejection(kernel.tainted())).code).toBe('EIO');
  });
});

describe('LivepatchSysfs loading and removing modules with kmod', () => {
  it('insmod gets the module path as one argument (spaces and all), and the patch then shows in sysfs', async () => {
    const kmod = await fakeKmod();
    const ko = tree.path('artifacts/with space/livepatch_cmdline.ko');
    const sysfs = tree.path('sys/kernel/livepatch/livepatch_cmdline');
    await tree.write(
      'artifacts/with space/livepatch_cmdline.ko',
      `mkdir -p '${sysfs}/vmlinux/cmdline_proc_show,1'\necho 1 > '${sysfs}/enabled'\necho 1 > '${sysfs}/transition'\n` +
        `echo 'livepatch_cmdline 16384 1 - Live 0xffffffffc0a00000 (OEK)' >> '${tree.path('proc/modules')}'\n`,
    );
    const kernel = new LivepatchSysfs({ root: tree.root, insmod: kmod.insmod });

    await kernel.loadModule({ path: ko, moduleName: 'livepatch_cmdline', functions: [], replace: false });

    expect(await kmod.log()).toEqual([['insmod', ko]]);
    expect(await kernel.listPatches()).toEqual([
      expect.objectContaining({ moduleName: 'livepatch_cmdline', enabled: true, transition: true }),
    ]);
  });

  it.each([
    ['Device or resource busy', 'EBUSY'],
    ['File exists', 'EEXIST'],
    ['Invalid parameters', 'EINVAL'],
    ['Invalid module format', 'ENOEXEC'],
    ['Unknown symbol in module', 'ENOENT'],
    ['Operation not permitted', 'EPERM'],
    ['Key was rejected by service', 'EKEYREJECTED'],
    ['Something new', 'EIO'],
  ])('insmod saying "%s" is %s, with kmod’s message kept', async (text, code) => {
    const kmod = await fakeKmod();
    await tree.write('lp.ko', `echo "insmod: ERROR: could not insert module $0: ${text}" >&2\nexit 1\n`);
    const error = await rejection(
      new LivepatchSysfs({ root: tree.root, insmod: kmod.insmod }).loadModule({
        path: tree.path('lp.ko'),
        moduleName: 'lp',
        functions: [],
        replace: false,
      }),
    );
    expect(error.code).toBe(code);
    expect(error.message).toContain(`could not insert module ${tree.path('lp.ko')}: ${text}`);
    expect(error.operation).toBe('loadModule');
  });

  it('a module that loads under another name than the manifest says is EINVAL, not an endless wait', async () => {
    const kmod = await fakeKmod();
    await tree.write(
      'lp.ko',
      `echo 'other_name 16384 1 - Live 0xffffffffc0a00000 (OEK)' >> '${tree.path('proc/modules')}'\n`,
    );
    const error = await rejection(
      new LivepatchSysfs({ root: tree.root, insmod: kmod.insmod }).loadModule({
        path: tree.path('lp.ko'),
        moduleName: 'lp',
        functions: [],
        replace: false,
      }),
    );
    expect(error.code).toBe('EINVAL');
    expect(error.message).toContain('no module named lp is loaded');
  });

  it('a missing insmod binary is EIO saying it could not run', async () => {
    const kernel = new LivepatchSysfs({ root: tree.root, insmod: tree.path('bin/no-such-insmod') });
    const error = await rejection(kernel.loadModule({ path: '/x.ko', moduleName: 'x', functions: [], replace: false }));
    expect(error.code).toBe('EIO');
    expect(error.message).toContain('cannot run');
  });

  it('rmmod of a module that is not loaded is ENOENT', async () => {
    const kmod = await fakeKmod();
    const error = await rejection(new LivepatchSysfs({ root: tree.root, rmmod: kmod.rmmod }).removeModule('lp'));
    expect(error.code).toBe('ENOENT');
    expect(error.message).toContain('not currently loaded');
  });

  it('rmmod of a module whose patch is still in sysfs is EBUSY at once, without retrying', async () => {
    const kmod = await fakeKmod();
    await tree.addPatch({ name: 'lp', enabled: true, transition: false, objects: { vmlinux: { functions: ['f,1'] } } });
    await tree.write('rmmod.d/lp.sh', inUse('lp'));
    const kernel = new LivepatchSysfs({ root: tree.root, rmmod: kmod.rmmod, removeRetryDelayMs: 1 });
    expect((await rejection(kernel.removeModule('lp'))).code).toBe('EBUSY');
    expect(await kmod.log()).toEqual([['rmmod', 'lp']]);
  });

  it('rmmod right after the patch left sysfs is retried while the module is briefly still in use', async () => {
    const kmod = await fakeKmod();
    const count = tree.path('rmmod-count');
    await tree.write(
      'rmmod.d/lp.sh',
      `n=$(cat '${count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '${count}'\n` +
        `if [ $n -lt 3 ]; then ${inUse('lp').replace(/\n/g, '; ')} fi\nexit 0\n`,
    );
    const kernel = new LivepatchSysfs({ root: tree.root, rmmod: kmod.rmmod, removeRetryDelayMs: 1 });
    await kernel.removeModule('lp');
    expect(await kmod.log()).toEqual([
      ['rmmod', 'lp'],
      ['rmmod', 'lp'],
      ['rmmod', 'lp'],
    ]);
  });

  it('a forced module stays in use: rmmod gives up after the configured retries with EBUSY', async () => {
    const kmod = await fakeKmod();
    await tree.write('rmmod.d/lp.sh', inUse('lp'));
    const kernel = new LivepatchSysfs({ root: tree.root, rmmod: kmod.rmmod, removeRetries: 2, removeRetryDelayMs: 1 });
    const error = await rejection(kernel.removeModule('lp'));
    expect(error.code).toBe('EBUSY');
    expect(error.message).toBe('EBUSY: rmmod: ERROR: Module lp is in use');
    expect((await kmod.log()).length).toBe(3);
  });

  it('a module name with a slash is refused before anything runs', async () => {
    const kmod = await fakeKmod();
    const kernel = new LivepatchSysfs({ root: tree.root, rmmod: kmod.rmmod });
    expect((await rejection(kernel.removeModule('a/b'))).code).toBe('EINVAL');
    expect(await kmod.log()).toEqual([]);
  });
});
