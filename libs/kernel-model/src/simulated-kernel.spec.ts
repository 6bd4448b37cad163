import type { events } from '@rebootless/contracts';
import { ManualClock, systemClock } from './clock';
import { isKernelError, KernelError, KLP_PATCHED, KLP_UNPATCHED, LoadModuleRequest } from './kernel-port';
import { SimulatedKernel, SimulatedKernelOptions } from './simulated-kernel';
import { decodeTaint, taintLetters } from './taint';

const fn = (name: string, object = 'vmlinux', sympos = 0): events.PatchedFunction => ({ object, name, sympos });
const cmdline = fn('cmdline_proc_show');
const meminfo = fn('meminfo_proc_show');
const nfsRead = fn('nfs_file_read', 'nfs');

function module(
  moduleName: string,
  functions: events.PatchedFunction[] = [cmdline],
  replace = false,
): LoadModuleRequest {
  return { path: `/var/lib/rebootless/artifacts/${moduleName}.ko`, moduleName, functions, replace };
}

const TRANSITION_MS = 1000;

function kernel(options: SimulatedKernelOptions = {}): { k: SimulatedKernel; clock: ManualClock } {
  const clock = new ManualClock();
  let boots = 0;
  const k = new SimulatedKernel({
    transitionMs: TRANSITION_MS,
    clock,
    newBootId: () => `boot-${++boots}`,
    ...options,
  });
  return { k, clock };
}

async function loadAndSettle(k: SimulatedKernel, clock: ManualClock, request: LoadModuleRequest): Promise<void> {
  await k.loadModule(request);
  clock.advance(TRANSITION_MS);
}

async function disableAndSettle(k: SimulatedKernel, clock: ManualClock, name: string): Promise<void> {
  await k.setEnabled(name, false);
  clock.advance(TRANSITION_MS);
}

async function stack(k: SimulatedKernel): Promise<string[]> {
  return (await k.listPatches()).map((p) => `${p.moduleName}:${p.enabled ? 1 : 0}${p.transition ? 't' : ''}`);
}

async function rejection(promise: Promise<unknown>): Promise<KernelError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof KernelError) return error;
    throw error;
  }
  throw new Error('expected a KernelError, the call succeeded');
}

describe('SimulatedKernel, the rules of DESIGN.md section 5', () => {
  describe('loading a livepatch module enables it', () => {
    it('shows the patch enabled and in transition, then the transition ends after the configured time', async () => {
      const { k, clock } = kernel();
      await k.loadModule(module('livepatch_cmdline'));

      expect(await k.listPatches()).toEqual([
        expect.objectContaining({ moduleName: 'livepatch_cmdline', enabled: true, transition: true }),
      ]);
      expect(k.runningVersion(cmdline)).toBeUndefined();

      clock.advance(TRANSITION_MS - 1);
      expect((await k.listPatches())[0]!.transition).toBe(true);
      clock.advance(1);
      expect((await k.listPatches())[0]!.transition).toBe(false);
      expect(k.runningVersion(cmdline)).toBe('livepatch_cmdline');
      expect(await k.moduleLoaded('livepatch_cmdline')).toBe(true);
    });

    it('lists functions per object as sysfs names them (a unique symbol shows sympos 1), sorted like LivepatchSysfs', async () => {
      const { k } = kernel();
      await k.loadModule(module('lp', [cmdline, fn('dup_name', 'vmlinux', 2), nfsRead]));
      const [patch] = await k.listPatches();
      expect(patch!.functions).toEqual([
        { object: 'nfs', name: 'nfs_file_read', sympos: 1 },
        { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 1 },
        { object: 'vmlinux', name: 'dup_name', sympos: 2 },
      ]);
      expect(patch!.objectsPatched).toEqual({ vmlinux: true, nfs: true });
    });

    it('refuses a second module of the same name (EEXIST) and a patch with no function (EINVAL)', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      expect((await rejection(k.loadModule(module('lp')))).code).toBe('EEXIST');
      expect((await rejection(k.loadModule(module('empty', [])))).code).toBe('EINVAL');
    });

    it('before 4.12 (no consistency model) a patch applies at once, whoever sleeps in it', async () => {
      const { k } = kernel({ release: '4.9.0-19-amd64' });
      k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('lp'));
      expect(await stack(k)).toEqual(['lp:1']);
      expect(k.runningVersion(cmdline)).toBe('lp');
    });

    it('with transitionMs 0 the transition is over at the next look', async () => {
      const { k } = kernel({ transitionMs: 0 });
      await k.loadModule(module('lp'));
      expect(await stack(k)).toEqual(['lp:1']);
    });
  });

  describe('the sysfs attributes depend on the kernel release', () => {
    const attributes = async (release: string): Promise<events.LivePatchState> => {
      const { k } = kernel({ release });
      await k.loadModule(module('lp'));
      return (await k.listPatches())[0]!;
    };

    it('6.1: <object>/patched (6.0+) but neither replace (6.11+) nor stack_order (6.13+)', async () => {
      const patch = await attributes('6.1.0-56-cloud-amd64');
      expect(patch.replace).toBeUndefined();
      expect(patch.stackOrder).toBeUndefined();
      expect(patch.objectsPatched).toEqual({ vmlinux: true });
    });

    it('5.10: no patched, no replace, no stack_order', async () => {
      const patch = await attributes('5.10.0-30-amd64');
      expect(patch.objectsPatched).toEqual({});
      expect(patch.replace).toBeUndefined();
      expect(patch.stackOrder).toBeUndefined();
    });

    it('6.12: replace but no stack_order', async () => {
      const patch = await attributes('6.12.48+deb13-cloud-amd64');
      expect(patch.replace).toBe(false);
      expect(patch.stackOrder).toBeUndefined();
    });

    it('6.13: replace and stack_order, numbered from 1 at the bottom of the stack', async () => {
      const { k, clock } = kernel({ release: '6.13.2' });
      await loadAndSettle(k, clock, module('a'));
      await loadAndSettle(k, clock, module('b', [meminfo], true));
      await k.loadModule(module('c', [meminfo]));
      const patches = await k.listPatches();
      expect(patches.map((p) => [p.moduleName, p.stackOrder, p.replace])).toEqual([
        ['b', 1, true],
        ['c', 2, false],
      ]);
    });
  });

  describe('only one patch may be in transition at a time', () => {
    it('loading another module meanwhile fails with EBUSY, and works once the transition is over', async () => {
      const { k, clock } = kernel();
      await k.loadModule(module('a'));
      const error = await rejection(k.loadModule(module('b', [meminfo])));
      expect(error.code).toBe('EBUSY');
      expect(error.message).toContain('a is still in transition');
      expect(await k.moduleLoaded('b')).toBe(false);

      clock.advance(TRANSITION_MS);
      await k.loadModule(module('b', [meminfo]));
      expect(await stack(k)).toEqual(['a:1', 'b:1t']);
    });

    it('disabling another patch meanwhile fails with EBUSY', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a'));
      await k.loadModule(module('b', [meminfo]));
      expect((await rejection(k.setEnabled('a', false))).code).toBe('EBUSY');
      expect(await stack(k)).toEqual(['a:1', 'b:1t']);
    });
  });

  describe('a transition stalls while a task sleeps inside a patched function', () => {
    it('never ends while the task sleeps, reports it as stalled, and ends once it wakes', async () => {
      const { k, clock } = kernel();
      const pid = k.addSleepingTask({ pid: 4242, comm: 'cat', sleepsIn: cmdline });
      k.addSleepingTask({ comm: 'elsewhere', sleepsIn: meminfo });
      await k.loadModule(module('lp'));

      clock.advance(60 * 60 * 1000);
      expect(await stack(k)).toEqual(['lp:1t']);
      expect(await k.stalledTasks()).toEqual([
        { pid: 4242, comm: 'cat', patchState: KLP_UNPATCHED, stack: ['[<0>] cmdline_proc_show+0x1c/0x90'] },
      ]);

      k.wakeTask(pid);
      expect(await stack(k)).toEqual(['lp:1']);
      expect(await k.stalledTasks()).toEqual([]);
    });

    it('a task in a function the patch does not touch does not block it', async () => {
      const { k, clock } = kernel();
      k.addSleepingTask({ comm: 'nfsd', sleepsIn: nfsRead });
      await loadAndSettle(k, clock, module('lp'));
      expect(await stack(k)).toEqual(['lp:1']);
    });

    it('a disable transition waits for tasks too, and they are reported in the patched state', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      k.addSleepingTask({ pid: 7, comm: 'cat', sleepsIn: cmdline });
      await disableAndSettle(k, clock, 'lp');
      expect(await stack(k)).toEqual(['lp:0t']);
      expect((await k.stalledTasks()).map((t) => t.patchState)).toEqual([KLP_PATCHED]);
    });
  });

  describe('writing the opposite value to enabled during a transition reverses it', () => {
    it('a stalled enable, reversed, leaves no patch behind and the module can be removed, though the task still sleeps', async () => {
      const { k, clock } = kernel();
      k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('lp'));
      clock.advance(5 * TRANSITION_MS);

      await k.setEnabled('lp', false);
      expect(await stack(k)).toEqual(['lp:0t']);
      // The sleeping task never switched to the patch: it is already where the reversal goes.
      clock.advance(TRANSITION_MS);

      expect(await stack(k)).toEqual([]);
      expect(k.runningVersion(cmdline)).toBeUndefined();
      await k.removeModule('lp');
      expect(await k.moduleLoaded('lp')).toBe(false);
    });

    it('a task that arrives in the function after the reversal still blocks it', async () => {
      const { k, clock } = kernel();
      const first = k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('lp'));
      await k.setEnabled('lp', false);
      const second = k.addSleepingTask({ comm: 'less', sleepsIn: cmdline });
      clock.advance(5 * TRANSITION_MS);
      expect(await stack(k)).toEqual(['lp:0t']);
      k.wakeTask(second);
      clock.advance(TRANSITION_MS);
      expect(await stack(k)).toEqual([]);
      k.wakeTask(first);
    });

    it('a disable reversed by writing 1 leaves the patch enabled', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      await k.setEnabled('lp', false);
      await k.setEnabled('lp', true);
      clock.advance(TRANSITION_MS);
      expect(await stack(k)).toEqual(['lp:1']);
      expect(k.runningVersion(cmdline)).toBe('lp');
    });
  });

  describe('force ends a transition unsafely', () => {
    it('completes a stalled transition at once, though the task still sleeps in the old code', async () => {
      const { k } = kernel();
      k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('lp'));
      await k.force('lp');

      expect(await stack(k)).toEqual(['lp:1']);
      expect(await k.stalledTasks()).toEqual([]);
      expect(k.runningVersion(cmdline)).toBe('lp');
    });

    it('a forced disable: the module can never be removed, only a reboot clears it', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.setEnabled('lp', false);
      await k.force('lp');
      expect(await stack(k)).toEqual([]);

      const error = await rejection(k.removeModule('lp'));
      expect(error.code).toBe('EBUSY');
      expect(error.message).toContain('forced');
      clock.advance(60 * 60 * 1000);
      expect((await rejection(k.removeModule('lp'))).code).toBe('EBUSY');
      k.reboot();
      expect(await k.moduleLoaded('lp')).toBe(false);
    });

    it('a forced atomic replace pins every patch it replaced, not itself (5.18+)', async () => {
      const { k, clock } = kernel({ release: '6.1.0-56-cloud-amd64' });
      await loadAndSettle(k, clock, module('a', [meminfo]));
      k.addSleepingTask({ comm: 'cat', sleepsIn: meminfo });
      await k.loadModule(module('cumulative', [cmdline], true));
      await k.force('cumulative');

      expect(await stack(k)).toEqual(['cumulative:1']);
      expect((await rejection(k.removeModule('a'))).code).toBe('EBUSY');
      await disableAndSettle(k, clock, 'cumulative');
      await k.removeModule('cumulative');
    });

    it('a forced enable of a plain patch pins nothing on 5.18+: a later normal disable makes it removable', async () => {
      const { k, clock } = kernel({ release: '6.1.0-56-cloud-amd64' });
      const pid = k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('lp'));
      await k.force('lp');
      k.wakeTask(pid);
      await disableAndSettle(k, clock, 'lp');
      await k.removeModule('lp');
    });

    it('before 5.18 a force pins every registered patch, not just the one in transition', async () => {
      const { k, clock } = kernel({ release: '5.10.0-30-amd64' });
      expect(k.features.forcePins).toBe('every-patch');
      await loadAndSettle(k, clock, module('older', [meminfo]));
      const pid = k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('newer'));
      await k.force('newer');
      k.wakeTask(pid);
      await disableAndSettle(k, clock, 'older');
      await disableAndSettle(k, clock, 'newer');
      expect(await stack(k)).toEqual([]);
      expect((await rejection(k.removeModule('older'))).code).toBe('EBUSY');
      expect((await rejection(k.removeModule('newer'))).code).toBe('EBUSY');
    });

    it('is EINVAL on a patch that is not in transition, ENOENT on no patch', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      expect((await rejection(k.force('lp'))).code).toBe('EINVAL');
      expect((await rejection(k.force('nope'))).code).toBe('ENOENT');
    });
  });

  describe('writing the current value to enabled is EINVAL', () => {
    it('1 to an enabled patch (also during its own enable transition)', async () => {
      const { k, clock } = kernel();
      await k.loadModule(module('lp'));
      expect((await rejection(k.setEnabled('lp', true))).code).toBe('EINVAL');
      clock.advance(TRANSITION_MS);
      expect((await rejection(k.setEnabled('lp', true))).code).toBe('EINVAL');
    });

    it('0 to a patch whose disable transition is running', async () => {
      const { k } = kernel();
      await k.loadModule(module('lp', [cmdline]));
      await k.setEnabled('lp', false);
      expect((await rejection(k.setEnabled('lp', false))).code).toBe('EINVAL');
    });
  });

  describe('a disabled patch cannot be re-enabled', () => {
    it('its directory disappears once the disable transition completes; only remove + load brings it back', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('lp'));
      await disableAndSettle(k, clock, 'lp');

      expect(await k.listPatches()).toEqual([]);
      expect(await k.moduleLoaded('lp')).toBe(true);
      expect((await rejection(k.setEnabled('lp', true))).code).toBe('ENOENT');
      expect((await rejection(k.loadModule(module('lp')))).code).toBe('EEXIST');

      await k.removeModule('lp');
      await loadAndSettle(k, clock, module('lp'));
      expect(await stack(k)).toEqual(['lp:1']);
    });
  });

  describe('removing a module', () => {
    it('fails with EBUSY while its patch is enabled or in transition', async () => {
      const { k, clock } = kernel();
      await k.loadModule(module('lp'));
      expect((await rejection(k.removeModule('lp'))).code).toBe('EBUSY');
      clock.advance(TRANSITION_MS);
      expect((await rejection(k.removeModule('lp'))).code).toBe('EBUSY');
      await k.setEnabled('lp', false);
      expect((await rejection(k.removeModule('lp'))).code).toBe('EBUSY');
      clock.advance(TRANSITION_MS);
      await k.removeModule('lp');
    });

    it('fails with ENOENT when the module is not loaded', async () => {
      const { k } = kernel();
      const error = await rejection(k.removeModule('ghost'));
      expect(error.code).toBe('ENOENT');
      expect(error.operation).toBe('removeModule');
      expect(error.moduleName).toBe('ghost');
    });
  });

  describe('stacking: the most recently enabled patch runs; since 5.1 any patch may be disabled', () => {
    it('the newest patch of a function wins', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a', [cmdline, meminfo]));
      await loadAndSettle(k, clock, module('b', [cmdline]));
      expect(k.runningVersion(cmdline)).toBe('b');
      expect(k.runningVersion(meminfo)).toBe('a');
      expect(k.runningVersion(nfsRead)).toBeUndefined();
    });

    it('disabling a middle patch falls back to the next older patch, or to the original', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a', [cmdline]));
      await loadAndSettle(k, clock, module('b', [cmdline, meminfo]));
      await loadAndSettle(k, clock, module('c', [nfsRead]));

      await disableAndSettle(k, clock, 'b');
      expect(await stack(k)).toEqual(['a:1', 'c:1']);
      expect(k.runningVersion(cmdline)).toBe('a');
      expect(k.runningVersion(meminfo)).toBeUndefined();
      expect(k.runningVersion(nfsRead)).toBe('c');
    });

    it('removing in either order works (bottom first)', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a'));
      await loadAndSettle(k, clock, module('b'));
      await disableAndSettle(k, clock, 'a');
      await k.removeModule('a');
      expect(k.runningVersion(cmdline)).toBe('b');
      await disableAndSettle(k, clock, 'b');
      await k.removeModule('b');
      expect(k.runningVersion(cmdline)).toBeUndefined();
    });
  });

  describe('before 5.1 only the top patch could be disabled', () => {
    it('is derived from the release: disabling a lower patch is EBUSY, the top one works', async () => {
      const { k, clock } = kernel({ release: '4.19.0-27-amd64' });
      expect(k.features.stacking).toBe('top-only');
      await loadAndSettle(k, clock, module('a'));
      await loadAndSettle(k, clock, module('b', [meminfo]));

      const error = await rejection(k.setEnabled('a', false));
      expect(error.code).toBe('EBUSY');
      expect(error.message).toContain('topmost');
      await disableAndSettle(k, clock, 'b');
      await disableAndSettle(k, clock, 'a');
      expect(await stack(k)).toEqual(['a:0', 'b:0']);
    });

    it('can be forced by an option on a newer kernel', async () => {
      const { k, clock } = kernel({ stacking: 'top-only' });
      await loadAndSettle(k, clock, module('a'));
      await loadAndSettle(k, clock, module('b', [meminfo]));
      expect((await rejection(k.setEnabled('a', false))).code).toBe('EBUSY');
      // The rest of the 6.1 behaviour stays: a disabled patch disappears.
      await disableAndSettle(k, clock, 'b');
      expect(await stack(k)).toEqual(['a:1']);
    });

    it('pre-5.1 a disabled patch stays registered, may be enabled again on top of an enabled one, and its module removed', async () => {
      const { k, clock } = kernel({ release: '4.19.0-27-amd64' });
      await loadAndSettle(k, clock, module('a'));
      await loadAndSettle(k, clock, module('b', [meminfo]));
      await disableAndSettle(k, clock, 'b');
      expect((await rejection(k.loadModule(module('c', [nfsRead])))).code).toBe('EBUSY');

      await k.setEnabled('b', true);
      clock.advance(TRANSITION_MS);
      expect(await stack(k)).toEqual(['a:1', 'b:1']);
      await disableAndSettle(k, clock, 'b');
      await k.removeModule('b');
      expect(await stack(k)).toEqual(['a:1']);
    });

    it('pre-5.1 has no atomic replace', async () => {
      const { k } = kernel({ release: '4.19.0-27-amd64' });
      expect((await rejection(k.loadModule(module('cumulative', [cmdline], true)))).code).toBe('EINVAL');
    });
  });

  describe('atomic replace disables every older patch when its transition completes', () => {
    it('older patches stay during the transition, then disappear; functions only they patched return to the original', async () => {
      const { k, clock } = kernel({ release: '6.13.0' });
      await loadAndSettle(k, clock, module('a', [cmdline]));
      await loadAndSettle(k, clock, module('b', [meminfo]));
      await k.loadModule(module('cumulative', [cmdline], true));
      expect(await stack(k)).toEqual(['a:1', 'b:1', 'cumulative:1t']);

      clock.advance(TRANSITION_MS);
      expect(await stack(k)).toEqual(['cumulative:1']);
      expect(k.runningVersion(cmdline)).toBe('cumulative');
      expect(k.runningVersion(meminfo)).toBeUndefined();
      // The replaced modules stay loaded, disabled: they can now be removed.
      await k.removeModule('a');
      await k.removeModule('b');
    });

    it('undoing a replace patch means loading the previous cumulative patch again', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('cumulative_1', [cmdline], true));
      await loadAndSettle(k, clock, module('cumulative_2', [cmdline, meminfo], true));
      await k.removeModule('cumulative_1');
      await loadAndSettle(k, clock, module('cumulative_1', [cmdline], true));
      expect(await stack(k)).toEqual(['cumulative_1:1']);
      expect(k.runningVersion(meminfo)).toBeUndefined();
    });

    it('is also blocked by a task sleeping in a function only an older patch touched', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a', [meminfo]));
      k.addSleepingTask({ comm: 'cat', sleepsIn: meminfo });
      await loadAndSettle(k, clock, module('cumulative', [cmdline], true));
      expect(await stack(k)).toEqual(['a:1', 'cumulative:1t']);
    });

    it('reversed before it completes, it leaves the older patches in place', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('a', [meminfo]));
      await k.loadModule(module('cumulative', [cmdline], true));
      await disableAndSettle(k, clock, 'cumulative');
      expect(await stack(k)).toEqual(['a:1']);
    });
  });

  describe('taint', () => {
    it('gains K (32768), unsigned (8192) and out-of-tree (4096) and keeps them after unloading', async () => {
      const { k, clock } = kernel();
      expect(await k.tainted()).toBe(0);
      await loadAndSettle(k, clock, module('lp'));
      expect(await k.tainted()).toBe(45056);
      await disableAndSettle(k, clock, 'lp');
      await k.removeModule('lp');
      expect(await k.tainted()).toBe(45056);
      expect(taintLetters(await k.tainted())).toBe('OEK');
    });

    it('per module provenance: a signed in-tree livepatch adds only K', async () => {
      const { k } = kernel({ moduleProvenance: () => ({ signed: true, inTree: true }) });
      await k.loadModule(module('lp'));
      expect(decodeTaint(await k.tainted()).flags.map((f) => f.name)).toEqual(['livepatch']);
    });

    it('a module refused with EBUSY still taints (load_module taints before init runs)', async () => {
      const { k } = kernel({ moduleProvenance: (name) => ({ signed: name === 'a', inTree: true }) });
      await k.loadModule(module('a'));
      expect(await k.tainted()).toBe(32768);
      await rejection(k.loadModule(module('b', [meminfo])));
      expect(await k.tainted()).toBe(32768 + 8192);
    });
  });

  describe('a reboot removes every live patch', () => {
    it('clears patches, modules, stalls and taint, and changes the boot id', async () => {
      const { k, clock } = kernel();
      const before = await k.bootId();
      await loadAndSettle(k, clock, module('a'));
      k.addSleepingTask({ comm: 'cat', sleepsIn: meminfo });
      await k.loadModule(module('b', [meminfo]));

      k.reboot();
      expect(await k.bootId()).not.toBe(before);
      expect(await k.listPatches()).toEqual([]);
      expect(k.loadedModules()).toEqual([]);
      expect(await k.stalledTasks()).toEqual([]);
      expect(await k.tainted()).toBe(0);
      await loadAndSettle(k, clock, module('b', [meminfo]));
      expect(await stack(k)).toEqual(['b:1']);
    });

    it('may boot another kernel release, with that release’s livepatch features', async () => {
      const { k } = kernel({ release: '6.1.0-56-cloud-amd64' });
      k.reboot({ release: '6.13.4-1-amd64', version: '#1 SMP Debian 6.13.4-1' });
      expect(await k.kernelRelease()).toBe('6.13.4-1-amd64');
      expect(await k.kernelVersion()).toBe('#1 SMP Debian 6.13.4-1');
      expect(k.features.stackOrderAttribute).toBe(true);
    });
  });

  describe('a kernel outlives the agent: state to JSON and back', () => {
    it('a restored kernel shows the same stack, stalls, taint and boot id, and keeps following the rules', async () => {
      const { k, clock } = kernel({ stacking: 'top-only' });
      await loadAndSettle(k, clock, module('a', [meminfo]));
      const pid = k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.loadModule(module('b'));
      k.addSleepingTask({ comm: 'forced', sleepsIn: nfsRead });
      await k.loadModule(module('c', [nfsRead])).catch(() => undefined);

      const restored = SimulatedKernel.fromState(JSON.parse(JSON.stringify(k.toState())), { clock });

      expect(await restored.listPatches()).toEqual(await k.listPatches());
      expect(await restored.stalledTasks()).toEqual(await k.stalledTasks());
      expect(await restored.tainted()).toBe(await k.tainted());
      expect(await restored.bootId()).toBe(await k.bootId());
      expect(restored.features.stacking).toBe('top-only');
      expect((await rejection(restored.setEnabled('a', false))).code).toBe('EBUSY');

      restored.wakeTask(pid);
      clock.advance(TRANSITION_MS);
      expect(await stack(restored)).toEqual(['a:1', 'b:1']);
      expect((await rejection(restored.setEnabled('a', false))).code).toBe('EBUSY');
    });

    it('keeps forced modules pinned and disabled-but-loaded modules removable', async () => {
      const { k, clock } = kernel();
      await loadAndSettle(k, clock, module('gone', [meminfo]));
      await disableAndSettle(k, clock, 'gone');
      await loadAndSettle(k, clock, module('lp'));
      k.addSleepingTask({ comm: 'cat', sleepsIn: cmdline });
      await k.setEnabled('lp', false);
      await k.force('lp');

      const restored = SimulatedKernel.fromState(JSON.parse(JSON.stringify(k.toState())), { clock });
      expect(restored.loadedModules().sort()).toEqual(['gone', 'lp']);
      expect((await rejection(restored.removeModule('lp'))).code).toBe('EBUSY');
      await restored.removeModule('gone');
    });
  });

  describe('identity and test controls', () => {
    it('reports release, version, arch and boot id as configured', async () => {
      const k = new SimulatedKernel({ release: '6.1.0-56-cloud-amd64', arch: 'aarch64', bootId: 'b-1' });
      expect(await k.kernelRelease()).toBe('6.1.0-56-cloud-amd64');
      expect(await k.kernelVersion()).toMatch(/^#1 SMP/);
      expect(await k.arch()).toBe('aarch64');
      expect(await k.bootId()).toBe('b-1');
    });

    it('failNext makes the next call of that operation fail once, naming the module', async () => {
      const { k } = kernel();
      k.failNext('loadModule', new KernelError('ENOEXEC', 'Invalid module format'));
      const error = await rejection(k.loadModule(module('lp')));
      expect(isKernelError(error, 'ENOEXEC')).toBe(true);
      expect(error.moduleName).toBe('lp');
      expect(await k.moduleLoaded('lp')).toBe(false);
      await k.loadModule(module('lp'));
    });

    it('runs on the real clock too: a transition is pending until transitionMs has passed, then ends by itself', async () => {
      const slow = new SimulatedKernel({ transitionMs: 60_000, clock: systemClock });
      await slow.loadModule(module('lp'));
      expect(await stack(slow)).toEqual(['lp:1t']);

      const quick = new SimulatedKernel({ transitionMs: 20, clock: systemClock });
      await quick.loadModule(module('lp'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await stack(quick)).toEqual(['lp:1']);
    });
  });
});
