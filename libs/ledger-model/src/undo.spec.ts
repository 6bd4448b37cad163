import { events } from '@rebootless/contracts';
import { KernelReleaseError, PatchNotOnStackError, UndoNotPossibleError } from './errors';
import { StackInterval } from './stack';
import { applied, at, cve, fn, inventory, listed, PatchSpec, published, RELEASE, ScriptedHost } from './test-support';
import { compareVersions, planUndo, previousCumulativeOnHost, undoCommands, UndoPlan } from './undo';

const A: PatchSpec = {
  patchId: 'fix-a',
  version: '1',
  moduleName: 'lp_a',
  functions: [fn('tcp_v4_rcv'), fn('nft_verdict')],
};
const B: PatchSpec = {
  patchId: 'fix-b',
  version: '1',
  moduleName: 'lp_b',
  functions: [fn('nft_verdict'), fn('udp_rcv')],
};
const C: PatchSpec = {
  patchId: 'fix-c',
  version: '1',
  moduleName: 'lp_c',
  functions: [fn('udp_rcv'), fn('ext4_write')],
};
const CUM1: PatchSpec = {
  patchId: 'cumulative',
  version: '1',
  moduleName: 'lp_cumulative_1',
  functions: [fn('tcp_v4_rcv')],
  replace: true,
};
const CUM2: PatchSpec = {
  patchId: 'cumulative',
  version: '2',
  moduleName: 'lp_cumulative_2',
  functions: [fn('tcp_v4_rcv'), fn('nft_verdict')],
  replace: true,
};
const l = (p: PatchSpec, state: Partial<events.LivePatchState> = {}) => listed(p.moduleName, p.functions, state);

/** A host whose stack is the given patches applied in order, each listing the kernel's stack. */
function hostWith(...patches: PatchSpec[]): ScriptedHost {
  const host = new ScriptedHost();
  host.fold(0, inventory('boot-1', []));
  const listing: events.LivePatchState[] = [];
  patches.forEach((p, i) => {
    if (p.replace) listing.splice(0, listing.length);
    listing.push(l(p));
    host.fold(i + 1, applied(p, [...listing]));
  });
  return host;
}

const steps = (plan: UndoPlan) =>
  plan.steps.map((s) => `${s.kind} ${s.moduleName}${s.downgrade ? ' (downgrade)' : ''}`.trim());
const fallbacks = (plan: UndoPlan) =>
  plan.functions.map(
    (f) => `${f.function.name}: ${f.runsNow.moduleName || 'original'} -> ${f.runsAfter.moduleName || 'original'}`,
  );

describe('planning an undo on a 5.1+ kernel (any order)', () => {
  const stack = hostWith(A, B, C).stack.entries;

  it('disables the middle patch alone and says what each of its functions falls back to', () => {
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'fix-b', kernelRelease: RELEASE });
    expect(plan).toMatchObject({
      disableOrder: 'any',
      target: { patchId: 'fix-b', version: '1', moduleName: 'lp_b' },
      rebootRequired: false,
      previousCumulative: null,
      warnings: [],
    });
    expect(steps(plan)).toEqual(['disable lp_b', 'remove-module lp_b']);
    // udp_rcv runs lp_c (newer) now and after: listed because the target patches it.
    expect(fallbacks(plan)).toEqual(['nft_verdict: lp_b -> lp_a', 'udp_rcv: lp_c -> lp_c']);
    expect(plan.functions[0]!.runsAfter).toEqual({ moduleName: 'lp_a', patchId: 'fix-a', version: '1' });
  });

  it('the bottom patch falls back to the original code', () => {
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', kernelRelease: RELEASE });
    expect(steps(plan)).toEqual(['disable lp_a', 'remove-module lp_a']);
    expect(fallbacks(plan)).toEqual(['nft_verdict: lp_b -> lp_b', 'tcp_v4_rcv: lp_a -> original']);
  });

  it('as the agent commands: one revert per disabled module', () => {
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'fix-b', kernelRelease: RELEASE });
    expect(undoCommands(plan)).toEqual([
      {
        kind: 'revert',
        moduleName: 'lp_b',
        patch: { patchId: 'fix-b', version: '1' },
        downgrade: false,
        detail: 'disable fix-b 1',
      },
    ]);
  });
});

describe('planning an undo before 5.1 (top only)', () => {
  const stack = hostWith(A, B, C).stack.entries;

  it('takes the patches above off first, top down, then puts them back oldest first', () => {
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', kernelRelease: '5.0.21' });
    expect(plan.disableOrder).toBe('top-only');
    expect(steps(plan)).toEqual([
      'disable lp_c',
      'remove-module lp_c',
      'disable lp_b',
      'remove-module lp_b',
      'disable lp_a',
      'remove-module lp_a',
      'apply lp_b',
      'apply lp_c',
    ]);
    expect(plan.steps.map((s) => s.role)).toEqual([
      'above-target',
      'above-target',
      'above-target',
      'above-target',
      'target',
      'target',
      're-apply',
      're-apply',
    ]);
    expect(plan.warnings.join('\n')).toMatch(
      /2 patch\(es\) above fix-a 1 \(fix-b 1, fix-c 1\) are disabled first and applied again/,
    );
    // The end state is the same as on 5.1+: the functions say so.
    expect(fallbacks(plan)).toEqual(['nft_verdict: lp_b -> lp_b', 'tcp_v4_rcv: lp_a -> original']);
    expect(plan.rule).toMatch(/before 5\.1 only the topmost/);
  });

  it('the top patch needs nothing else', () => {
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'fix-c', kernelRelease: '4.18.0-513.el8.x86_64' });
    expect(steps(plan)).toEqual(['disable lp_c', 'remove-module lp_c']);
  });

  it('a patch that stayed listed while disabled only needs its module removed', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', [l(A), l(B, { enabled: false })]));
    const plan = planUndo({ hostId: 'web-17', stack: host.stack.entries, patchId: 'lp_b', kernelRelease: '5.0.21' });
    expect(steps(plan)).toEqual(['remove-module lp_b']);
    expect(plan.functions.every((f) => f.runsNow.moduleName === f.runsAfter.moduleName)).toBe(true);
  });
});

describe('undoing a replace (cumulative) patch', () => {
  it('loads the cumulative it replaced on this host again, a downgrade', () => {
    const host = hostWith(CUM1, CUM2, C);
    const target = host.stack.entries.find((e) => e.moduleName === 'lp_cumulative_2')!;
    const replacedOnHost = previousCumulativeOnHost(host.history(), target);
    expect(replacedOnHost).toEqual({ patchId: 'cumulative', version: '1' });
    const plan = planUndo({
      hostId: 'web-17',
      stack: host.stack.entries,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
      earlierCumulatives: [
        published(CUM1, [cve('CVE-1')], at(-50)),
        published(CUM2, [cve('CVE-1'), cve('CVE-2')], at(-20)),
      ],
      replacedOnHost,
    });
    expect(plan.previousCumulative).toEqual({ patchId: 'cumulative', version: '1' });
    expect(steps(plan)).toEqual([
      'apply lp_cumulative_1 (downgrade)',
      'remove-module lp_cumulative_2',
      'remove-module lp_c',
      'apply lp_c',
    ]);
    expect(plan.steps[0]).toMatchObject({
      role: 'previous-cumulative',
      patch: { patchId: 'cumulative', version: '1' },
    });
    expect(fallbacks(plan)).toEqual([
      'nft_verdict: lp_cumulative_2 -> original',
      'tcp_v4_rcv: lp_cumulative_2 -> lp_cumulative_1',
    ]);
    expect(plan.warnings.join('\n')).toMatch(/disables every other patch: fix-c 1 are applied again/);
    // The agent removes what a replace disabled as part of the apply: no commands of their own.
    expect(plan.steps.map((s) => s.automatic ?? false)).toEqual([false, true, true, false]);
    expect(undoCommands(plan).map((c) => [c.kind, c.moduleName, c.downgrade])).toEqual([
      ['apply', 'lp_cumulative_1', true],
      ['apply', 'lp_c', false],
    ]);
  });

  it('warns about the CVEs the downgrade exposes again', () => {
    const host = hostWith(CUM1, CUM2);
    const stack = host.stack.entries.map((e) => ({ ...e, cves: [cve('CVE-1'), cve('CVE-2')] }));
    const plan = planUndo({
      hostId: 'web-17',
      stack,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
      earlierCumulatives: [published(CUM1, [cve('CVE-1')], at(-50))],
    });
    expect(plan.warnings).toContain('after the downgrade the host is exposed again to CVE-2');
  });

  it('without history, picks the newest earlier cumulative of the same line, never a retracted one or one without a module for this kernel', () => {
    const host = hostWith(CUM2);
    const line = (version: string, publishedAt: number, options = {}) =>
      published({ ...CUM1, version, moduleName: `lp_cumulative_${version}` }, [], at(publishedAt), options);
    const plan = planUndo({
      hostId: 'web-17',
      stack: host.stack.entries,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
      earlierCumulatives: [
        line('1', -90),
        line('1.5', -60, { retracted: true }),
        line('1.4', -70, { releases: ['5.10.0-30-amd64'] }),
        line('1.3', -75),
        published({ ...CUM1, patchId: 'other-line', moduleName: 'lp_other' }, [], at(-10)),
        published(CUM2, [], at(-5)),
        line('3', 5),
      ],
    });
    expect(plan.previousCumulative).toEqual({ patchId: 'cumulative', version: '1.3' });
    expect(steps(plan)[0]).toBe('apply lp_cumulative_1.3 (downgrade)');
  });

  it('says so when no earlier cumulative is known, and disables it instead', () => {
    const host = hostWith(CUM2);
    const plan = planUndo({
      hostId: 'web-17',
      stack: host.stack.entries,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
    });
    expect(plan.previousCumulative).toBeNull();
    expect(plan.warnings.join('\n')).toMatch(/no earlier cumulative patch is known for 6\.1\.0-18-cloud-amd64/);
    expect(steps(plan)).toEqual(['disable lp_cumulative_2', 'remove-module lp_cumulative_2']);
    expect(fallbacks(plan)).toEqual([
      'nft_verdict: lp_cumulative_2 -> original',
      'tcp_v4_rcv: lp_cumulative_2 -> original',
    ]);
  });
});

describe('forced patches', () => {
  it('a forced patch cannot be removed: the plan is a reboot, then the other patches again', () => {
    const host = hostWith(A, { ...B, forced: true }, C);
    const plan = planUndo({ hostId: 'web-17', stack: host.stack.entries, patchId: 'fix-b', kernelRelease: RELEASE });
    expect(plan.rebootRequired).toBe(true);
    expect(steps(plan)).toEqual(['reboot', 'apply lp_a', 'apply lp_c']);
    expect(plan.warnings[0]).toBe('fix-b 1 was forced: its module can never be removed; only a reboot takes it off');
    expect(fallbacks(plan)).toEqual(['nft_verdict: lp_b -> lp_a', 'udp_rcv: lp_c -> lp_c']);
    expect(undoCommands(plan)[0]).toMatchObject({ kind: 'reboot', moduleName: '' });
  });

  it('before 5.18 a forced patch above pins the target too', () => {
    const stack = hostWith(A, { ...B, forced: true }).stack.entries;
    const old = planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', kernelRelease: '5.15.0-100-generic' });
    expect(old.rebootRequired).toBe(true);
    expect(old.warnings[0]).toMatch(/fix-b 1 was forced on 5\.15\.0-100-generic \(before 5\.18\).*fix-a 1 included/);
    const recent = planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', kernelRelease: RELEASE });
    expect(recent.rebootRequired).toBe(false);
    expect(steps(recent)).toEqual(['disable lp_a', 'remove-module lp_a']);
  });
});

describe('refusals the gRPC edge maps', () => {
  const stack = hostWith(A).stack.entries;

  it('a patch not on the stack is not-found, naming host and patch', () => {
    const plan = () => planUndo({ hostId: 'web-17', stack, patchId: 'fix-z', kernelRelease: RELEASE });
    expect(plan).toThrow(PatchNotOnStackError);
    expect(plan).toThrow('patch fix-z is not on the patch stack of host web-17');
    expect(() => planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', version: '9', kernelRelease: RELEASE })).toThrow(
      expect.objectContaining({ kind: 'not-found', field: 'patch_id' }),
    );
  });

  it('a patch in transition is failed-precondition', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', [l(A, { transition: true })]));
    const plan = () =>
      planUndo({ hostId: 'web-17', stack: host.stack.entries, patchId: 'lp_a', kernelRelease: RELEASE });
    expect(plan).toThrow(UndoNotPossibleError);
    expect(plan).toThrow(expect.objectContaining({ kind: 'failed-precondition' }));
    expect(plan).toThrow(/still in transition \(enabling\)/);
  });

  it('another patch in transition is a warning: the first step waits', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', [l(A), l(B, { transition: true })]));
    const plan = planUndo({ hostId: 'web-17', stack: host.stack.entries, patchId: 'lp_a', kernelRelease: RELEASE });
    expect(plan.warnings).toContain(
      'lp_b is in transition: the kernel runs one transition at a time, so the first step waits for it',
    );
  });

  it('an unparseable release is invalid-argument', () => {
    expect(() => planUndo({ hostId: 'web-17', stack, patchId: 'fix-a', kernelRelease: 'unknown' })).toThrow(
      KernelReleaseError,
    );
  });

  it('with two versions of one patch stacked, the topmost is planned and the plan says so', () => {
    const two = hostWith(A, { ...A, version: '2', moduleName: 'lp_a_v2' }).stack.entries;
    const plan = planUndo({ hostId: 'web-17', stack: two, patchId: 'fix-a', kernelRelease: RELEASE });
    expect(plan.target).toEqual({ patchId: 'fix-a', version: '2', moduleName: 'lp_a_v2' });
    expect(plan.warnings[0]).toMatch(/2 versions of fix-a are stacked \(1, 2\)/);
    const exact = planUndo({ hostId: 'web-17', stack: two, patchId: 'fix-a', version: '1', kernelRelease: RELEASE });
    expect(exact.target.version).toBe('1');
  });
});

describe('modules rebootless did not publish', () => {
  it('are named by module name, and a re-apply of one warns that it must be loaded by hand', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', [l(A), listed('by_hand', [fn('vfs_read')])]));
    const stack: StackInterval[] = host.stack.entries;
    const plan = planUndo({ hostId: 'web-17', stack, patchId: 'lp_a', kernelRelease: '5.0.21' });
    expect(steps(plan)).toEqual([
      'disable by_hand',
      'remove-module by_hand',
      'disable lp_a',
      'remove-module lp_a',
      'apply by_hand',
    ]);
    expect(plan.steps[4]!.patch).toBeUndefined();
    expect(plan.warnings).toContain('by_hand was not published by rebootless: it must be loaded again by hand');
  });
});

describe('compareVersions', () => {
  it('orders numbers naturally', () => {
    expect(['10', '9', '1.10', '1.9'].sort(compareVersions)).toEqual(['1.9', '1.10', '9', '10']);
  });
});
