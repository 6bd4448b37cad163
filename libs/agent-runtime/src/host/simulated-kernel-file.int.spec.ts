import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError } from '@rebootless/kernel-model';
import { SimulatedKernelFile } from './simulated-kernel-file';

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'rebootless-simkernel-'));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const cmdline = { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 };
const load = (moduleName: string) => ({ path: `/${moduleName}.ko`, moduleName, functions: [cmdline], replace: false });

describe('SimulatedKernelFile: a simulated kernel that outlives the agent process', () => {
  it('what one opener loaded, another (a restarted agent) sees, with the same boot id', async () => {
    const path = join(dir, 'kernel.json');
    const agent = await SimulatedKernelFile.open(path, { initial: { transitionMs: 0, bootId: 'boot-1' } });
    await agent.loadModule(load('lp'));

    const restarted = await SimulatedKernelFile.open(path, { initial: { bootId: 'ignored: the file exists' } });
    expect((await restarted.listPatches()).map((p) => [p.moduleName, p.enabled, p.transition])).toEqual([
      ['lp', true, false],
    ]);
    expect(await restarted.bootId()).toBe('boot-1');
    expect(await restarted.tainted()).toBe(45056);
  });

  it('a harness stalls and reboots the same kernel through control()', async () => {
    const path = join(dir, 'kernel.json');
    const agent = await SimulatedKernelFile.open(path, { initial: { transitionMs: 0 } });
    const harness = await SimulatedKernelFile.open(path);
    const pid = await harness.control((k) => k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline }));

    await agent.loadModule(load('lp'));
    expect((await agent.stalledTasks()).map((t) => t.comm)).toEqual(['cat']);
    await harness.control((k) => k.wakeTask(pid));
    expect((await agent.listPatches())[0]!.transition).toBe(false);

    const before = await agent.bootId();
    await harness.control((k) => k.reboot());
    expect(await agent.listPatches()).toEqual([]);
    expect(await agent.bootId()).not.toBe(before);
  });

  it('a refused call fails with the kernel error and still persists its side effects (the taint)', async () => {
    const path = join(dir, 'kernel.json');
    const kernel = await SimulatedKernelFile.open(path, {
      initial: { transitionMs: 60_000 },
      runtime: { moduleProvenance: (name) => ({ signed: name === 'a', inTree: true }) },
    });
    await kernel.loadModule(load('a'));
    expect(await kernel.tainted()).toBe(32768);

    const error = await kernel.loadModule(load('b')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KernelError);
    expect((error as KernelError).code).toBe('EBUSY');
    expect(await (await SimulatedKernelFile.open(path)).tainted()).toBe(32768 + 8192);
  });

  it('concurrent callers are serialised: of two loads racing, exactly one wins and the other gets EBUSY', async () => {
    const path = join(dir, 'kernel.json');
    const one = await SimulatedKernelFile.open(path, { initial: { transitionMs: 60_000 } });
    const two = await SimulatedKernelFile.open(path);
    const results = await Promise.allSettled([one.loadModule(load('a')), two.loadModule(load('b'))]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((await one.listPatches()).length).toBe(1);
  });

  it('a lock left by a process that died (SIGKILL) is taken over', async () => {
    const path = join(dir, 'kernel.json');
    const kernel = await SimulatedKernelFile.open(path);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await fs.writeFile(`${path}.lock`, dead.stdout);
    expect(await kernel.kernelRelease()).toBe('6.1.0-56-cloud-amd64');
    expect(
      await fs.access(`${path}.lock`).then(
        () => 'present',
        () => 'released',
      ),
    ).toBe('released');
  });
});
