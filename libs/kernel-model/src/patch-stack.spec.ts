import type { events } from '@rebootless/contracts';
import { ManualClock } from './clock';
import { disableEffect, runningVersions } from './patch-stack';
import { SimulatedKernel } from './simulated-kernel';

const fn = (name: string, object = 'vmlinux'): events.PatchedFunction => ({ object, name, sympos: 1 });
const patch = (moduleName: string, names: string[], enabled = true, transition = false): events.LivePatchState => ({
  moduleName,
  enabled,
  transition,
  functions: names.map((n) => fn(n)),
  objectsPatched: {},
});

describe('patch stack: what runs and what disabling a patch falls back to', () => {
  // a: f, g   b: f, h   c: h   (oldest first)
  const stack = [patch('a', ['f', 'g']), patch('b', ['f', 'h']), patch('c', ['h'])];

  it('the newest enabled patch of each function runs', () => {
    const versions = runningVersions(stack);
    expect([...versions.values()].map((v) => [v.function.name, v.moduleName])).toEqual([
      ['f', 'b'],
      ['g', 'a'],
      ['h', 'c'],
    ]);
  });

  it('disabling a middle patch (5.1+): each function falls back to the next older patch or the original', () => {
    expect(disableEffect(stack, 'b', 'any-order')).toEqual({
      allowed: true,
      fallbacks: [
        { function: fn('f'), runsNow: 'b', runsAfter: 'a' },
        // h: c is newer and keeps running
        { function: fn('h'), runsNow: 'c', runsAfter: 'c' },
      ],
    });
    expect(disableEffect(stack, 'a', 'any-order')).toEqual({
      allowed: true,
      fallbacks: [
        { function: fn('f'), runsNow: 'b', runsAfter: 'b' },
        { function: fn('g'), runsNow: 'a', runsAfter: undefined },
      ],
    });
  });

  it('before 5.1 only the topmost enabled patch may be disabled', () => {
    expect(disableEffect(stack, 'b', 'top-only')).toEqual({
      allowed: false,
      code: 'EBUSY',
      reason: 'this kernel only disables the topmost patch; disable c first',
    });
    expect(disableEffect(stack, 'c', 'top-only')).toMatchObject({ allowed: true });
  });

  it('refuses what the kernel would refuse: unknown, already disabled, another patch in transition', () => {
    expect(disableEffect(stack, 'zz', 'any-order')).toMatchObject({ allowed: false, code: 'ENOENT' });
    expect(disableEffect([patch('a', ['f'], false)], 'a', 'any-order')).toMatchObject({
      allowed: false,
      code: 'EINVAL',
    });
    expect(disableEffect([patch('a', ['f']), patch('b', ['g'], true, true)], 'a', 'any-order')).toMatchObject({
      allowed: false,
      code: 'EBUSY',
    });
  });

  it('agrees with the simulated kernel after the disable', async () => {
    const clock = new ManualClock();
    const k = new SimulatedKernel({ clock, transitionMs: 10 });
    for (const p of stack) {
      await k.loadModule({
        path: `/${p.moduleName}.ko`,
        moduleName: p.moduleName,
        functions: p.functions,
        replace: false,
      });
      clock.advance(10);
    }
    const effect = disableEffect(await k.listPatches(), 'b', 'any-order');
    await k.setEnabled('b', false);
    clock.advance(10);
    if (!effect.allowed) throw new Error(effect.reason);
    for (const fallback of effect.fallbacks) expect(k.runningVersion(fallback.function)).toBe(fallback.runsAfter);
  });
});
