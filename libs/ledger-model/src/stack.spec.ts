import { patchCatalog } from './catalog';
import { currentStack, emptyHostStack, evolveHostStack, hostFactOf, stackAt, StackInterval } from './stack';
import {
  applied,
  at,
  booted,
  cve,
  facts,
  fn,
  inventory,
  listed,
  operator,
  PatchSpec,
  published,
  RELEASE,
  reverted,
  ScriptedHost,
} from './test-support';

const A: PatchSpec = {
  patchId: 'fix-a',
  version: '1',
  moduleName: 'lp_fix_a',
  functions: [fn('tcp_v4_rcv'), fn('nft_verdict')],
};
const B: PatchSpec = {
  patchId: 'fix-b',
  version: '1',
  moduleName: 'lp_fix_b',
  functions: [fn('nft_verdict'), fn('udp_rcv')],
};
const C1: PatchSpec = {
  patchId: 'cumulative',
  version: '1',
  moduleName: 'lp_cumulative_1',
  functions: [fn('tcp_v4_rcv'), fn('nft_verdict'), fn('udp_rcv')],
  replace: true,
};
const D: PatchSpec = { patchId: 'fix-d', version: '1', moduleName: 'lp_fix_d', functions: [fn('ext4_write')] };
const E: PatchSpec = { patchId: 'fix-e', version: '2', moduleName: 'lp_fix_e', functions: [fn('tcp_v4_rcv')] };

const modules = (entries: readonly StackInterval[]) => entries.map((e) => e.moduleName);
const l = (p: PatchSpec) => listed(p.moduleName, p.functions);

/** enroll, apply, stack a second patch, atomic replace, stack two more, disable the middle one, reboot, re-apply. */
function scriptedHistory(): ScriptedHost {
  const host = new ScriptedHost();
  host.fold(0, inventory('boot-1', []));
  host.fold(10, applied(A, [l(A)]), { rolloutId: 'ro-1' });
  host.fold(20, applied(B, [l(A), l(B)]), { rolloutId: 'ro-2' });
  host.fold(30, applied(C1, [l(C1)]), { rolloutId: 'ro-3' });
  host.fold(40, applied(D, [l(C1), l(D)]));
  host.fold(50, applied(E, [l(C1), l(D), l(E)]));
  host.fold(60, reverted(D, [l(C1), l(E)]));
  host.fold(70, booted('boot-2'));
  host.fold(80, applied(C1, [l(C1)]));
  return host;
}

describe('the stack model, folded from agent facts', () => {
  it('given a scripted history, the stack now is what the last facts left', () => {
    const host = scriptedHistory();
    expect(modules(host.stack.entries)).toEqual(['lp_cumulative_1']);
    expect(host.stack.bootId).toBe('boot-2');
    const [c1] = currentStack(host.stack);
    expect(c1).toMatchObject({
      position: 1,
      patchId: 'cumulative',
      state: 'enabled',
      replace: true,
      appliedAt: at(80),
    });
  });

  it('gives the stack at any past instant, in stack order, each entry with its position', () => {
    const history = scriptedHistory().history();
    expect(stackAt(history, at(5))).toEqual([]);
    expect(modules(stackAt(history, at(10)))).toEqual(['lp_fix_a']);
    expect(modules(stackAt(history, at(25)))).toEqual(['lp_fix_a', 'lp_fix_b']);
    expect(stackAt(history, at(25)).map((e) => e.position)).toEqual([1, 2]);
    // The replace's instant: the older patches are gone at it, not one millisecond later.
    expect(modules(stackAt(history, at(30)))).toEqual(['lp_cumulative_1']);
    expect(modules(stackAt(history, at(30) - 1))).toEqual(['lp_fix_a', 'lp_fix_b']);
    expect(modules(stackAt(history, at(55)))).toEqual(['lp_cumulative_1', 'lp_fix_d', 'lp_fix_e']);
    expect(modules(stackAt(history, at(65)))).toEqual(['lp_cumulative_1', 'lp_fix_e']);
    expect(stackAt(history, at(75))).toEqual([]);
    expect(modules(stackAt(history, at(90)))).toEqual(['lp_cumulative_1']);
  });

  it('closes every older interval as replaced when an atomic replace completes', () => {
    const host = scriptedHistory();
    const closedAt30 = host.history().filter((i) => i.removedAt === at(30));
    expect(closedAt30.map((i) => [i.moduleName, i.removalReason, i.removedEventId])).toEqual([
      ['lp_fix_a', 'replaced', 'ev-30'],
      ['lp_fix_b', 'replaced', 'ev-30'],
    ]);
  });

  it('closes one interval as reverted on a revert, leaving the patches above and below', () => {
    const d = scriptedHistory()
      .history()
      .find((i) => i.moduleName === 'lp_fix_d')!;
    expect(d).toMatchObject({ removedAt: at(60), removalReason: 'reverted', liveFrom: at(40), liveUntil: at(60) });
  });

  it('closes all as rebooted on a new boot id, and a re-apply opens a new interval', () => {
    const history = scriptedHistory().history();
    const rebooted = history.filter((i) => i.removalReason === 'rebooted');
    expect(rebooted.map((i) => i.moduleName)).toEqual(['lp_cumulative_1', 'lp_fix_e']);
    const c1 = history.filter((i) => i.moduleName === 'lp_cumulative_1');
    expect(c1.map((i) => [i.appliedAt, i.removedAt, i.bootId])).toEqual([
      [at(30), at(70), 'boot-1'],
      [at(80), null, 'boot-2'],
    ]);
    expect(new Set(c1.map((i) => i.intervalId)).size).toBe(2);
  });

  it('records who applied it and in which rollout, preferring the rollout creator', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    const service = { kind: 3, id: 'web-17', origin: '' };
    host.fold(1, applied(A, [l(A)]), { actor: service, rolloutId: 'ro-9', rolloutCreatedBy: operator });
    expect(host.stack.entries[0]).toMatchObject({ appliedBy: operator, rolloutId: 'ro-9', appliedEventId: 'ev-1' });
  });

  it('names the CVEs of an applied patch from the catalog', () => {
    const catalog = patchCatalog([published(A, [cve('CVE-2024-1086')], at(-100))]);
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]), { catalog });
    expect(host.stack.entries[0]!.cves.map((c) => c.id)).toEqual(['CVE-2024-1086']);
  });

  it('an atomic replace whose transition was forced closes the others as forced', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    const change = host.fold(2, applied({ ...C1, forced: true }, [l(C1)]));
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([['lp_fix_a', 'forced']]);
    expect(host.stack.entries[0]).toMatchObject({ moduleName: 'lp_cumulative_1', forced: true });
  });

  it('an atomic replace without a listing still closes every other interval', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A));
    host.fold(2, applied(B));
    const change = host.fold(3, applied(C1));
    expect(modules(change.stack.entries)).toEqual(['lp_cumulative_1']);
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([
      ['lp_fix_a', 'replaced'],
      ['lp_fix_b', 'replaced'],
    ]);
  });

  it('reports what a fact opened, closed and changed, to upsert by interval id', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    const change = host.fold(2, applied(C1, [l(C1)]));
    expect(change.opened.map((i) => i.intervalId)).toEqual(['ev-2/lp_cumulative_1']);
    expect(change.closed.map((i) => i.intervalId)).toEqual(['ev-1/lp_fix_a']);
    expect(change.changed.map((i) => i.intervalId).sort()).toEqual(['ev-1/lp_fix_a', 'ev-2/lp_cumulative_1']);
  });

  it('never modifies the stack or intervals it was given', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    const before = host.stack;
    const frozen = JSON.stringify(before);
    evolveHostStack(before, booted('boot-9'), { eventId: 'ev-x', at: at(5) });
    evolveHostStack(before, applied(C1, [l(C1)]), { eventId: 'ev-y', at: at(5) });
    expect(JSON.stringify(before)).toBe(frozen);
  });

  it('the same PatchApplied folded twice keeps one interval', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    const again = host.fold(2, applied(A, [l(A)]));
    expect(again.opened).toEqual([]);
    expect(host.history()).toHaveLength(1);
    expect(host.stack.entries[0]!.appliedAt).toBe(at(1));
  });

  it('a HostBooted with the boot id it already has is a repeated report, not a reboot', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, applied(A, [l(A)]));
    const change = host.fold(2, booted('boot-1'));
    expect(change.closed).toEqual([]);
    expect(modules(host.stack.entries)).toEqual(['lp_fix_a']);
  });

  it('a new version of the same patch, applied without replace, supersedes the old one', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    host.fold(2, applied(D, [l(A), l(D)]));
    const A2 = { ...A, version: '2', moduleName: 'lp_fix_a_2' };
    const change = host.fold(3, applied(A2, [l(D), l(A2)]));
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([['lp_fix_a', 'replaced']]);
    expect(modules(host.stack.entries)).toEqual(['lp_fix_d', 'lp_fix_a_2']);
  });

  it('a repeated PatchApplied without rollout or actor keeps who applied it and in which rollout', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]), { rolloutId: 'ro-1' });
    host.fold(2, applied(A, [l(A)]), { actor: undefined as never, rolloutId: '' });
    expect(host.stack.entries[0]).toMatchObject({ rolloutId: 'ro-1', appliedBy: operator });
  });

  it('HostEnrolled records boot and kernel; enrolling again from another boot closes all as rebooted', () => {
    const host = new ScriptedHost();
    const enrolled = (bootId: string) => ({
      type: 'HostEnrolled' as const,
      payload: { facts: facts(bootId), agentPublicKey: new Uint8Array() },
    });
    host.fold(0, enrolled('boot-1'));
    expect(host.stack).toMatchObject({ bootId: 'boot-1', kernelRelease: RELEASE });
    host.fold(1, applied(A, [l(A)]));
    expect(host.fold(2, enrolled('boot-1')).closed).toEqual([]);
    expect(host.fold(3, enrolled('boot-2')).closed.map((i) => i.removalReason)).toEqual(['rebooted']);
  });

  it('a HostBooted into another kernel records the new release', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, booted('boot-2', '6.1.0-26-cloud-amd64'));
    expect(host.stack).toMatchObject({ bootId: 'boot-2', kernelRelease: '6.1.0-26-cloud-amd64' });
  });
});

describe('an inventory that disagrees is the truth', () => {
  it('closes an interval the kernel no longer lists, as inventory', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, applied(A, [l(A)]));
    host.fold(2, applied(B, [l(A), l(B)]));
    const change = host.fold(3, inventory('boot-1', [l(B)]));
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([['lp_fix_a', 'inventory']]);
    expect(modules(host.stack.entries)).toEqual(['lp_fix_b']);
  });

  it('opens an interval for a module loaded outside rebootless, named from the catalog when published', () => {
    const catalog = patchCatalog([published(D, [cve('CVE-2025-0001')], at(-10))]);
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, inventory('boot-1', [l(D), listed('hand_made', [fn('vfs_read')])]), { catalog });
    expect(host.stack.entries.map((e) => [e.moduleName, e.patchId, e.version, e.appliedBy, e.rolloutId])).toEqual([
      ['lp_fix_d', 'fix-d', '1', undefined, ''],
      ['hand_made', '', '', undefined, ''],
    ]);
    expect(host.stack.entries[0]!.cves.map((c) => c.id)).toEqual(['CVE-2025-0001']);
  });

  it('an inventory from a new boot id closes everything as rebooted first (a missed HostBooted)', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, applied(A, [l(A)]));
    const change = host.fold(2, inventory('boot-2', [l(A)]));
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([['lp_fix_a', 'rebooted']]);
    // Listed again after the boot: loaded at boot by something else, a new interval.
    expect(change.opened.map((i) => [i.moduleName, i.bootId])).toEqual([['lp_fix_a', 'boot-2']]);
  });

  it('follows a transition: in transition until the kernel shows it enabled, and says so at past instants', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, inventory('boot-1', [listed('lp_fix_a', A.functions, { transition: true })]));
    expect(host.stack.entries[0]).toMatchObject({ state: 'in-transition', enabled: true, liveFrom: null });
    host.fold(3, inventory('boot-1', [l(A)]));
    expect(host.stack.entries[0]).toMatchObject({ state: 'enabled', liveFrom: at(3), liveFromEventId: 'ev-3' });
    const history = host.history();
    expect(stackAt(history, at(2))[0]).toMatchObject({ state: 'in-transition', enabled: true });
    expect(stackAt(history, at(4))[0]).toMatchObject({ state: 'enabled', enabled: true });
  });

  it('a disable in transition, then a disabled patch that stays listed (before 5.1), then re-enabled', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', [l(A)]));
    host.fold(1, inventory('boot-1', [listed('lp_fix_a', A.functions, { transition: true, enabled: false })]));
    expect(host.stack.entries[0]).toMatchObject({ state: 'in-transition', enabled: false, liveUntil: null });
    host.fold(2, inventory('boot-1', [listed('lp_fix_a', A.functions, { enabled: false })]));
    expect(host.stack.entries[0]).toMatchObject({ state: 'disabled', liveUntil: at(2) });
    const history = host.history();
    expect(stackAt(history, at(0))[0]!.state).toBe('enabled');
    expect(stackAt(history, at(1))[0]).toMatchObject({ state: 'in-transition', enabled: false });
    expect(stackAt(history, at(2))[0]!.state).toBe('disabled');
    // Enabled again: a new stretch of live code, a new interval.
    const change = host.fold(3, applied(A, [l(A)]));
    expect(change.closed.map((i) => [i.intervalId, i.removalReason])).toEqual([['ev-0/lp_fix_a', 'reverted']]);
    expect(change.opened.map((i) => i.intervalId)).toEqual(['ev-3/lp_fix_a']);
  });

  it('orders by stack_order when the kernel shows it (6.13+)', () => {
    const host = new ScriptedHost();
    host.fold(
      0,
      inventory('boot-1', [listed('second', [], { stackOrder: 2 }), listed('first', [], { stackOrder: 1 })]),
    );
    expect(modules(host.stack.entries)).toEqual(['first', 'second']);
  });

  it('a revert whose listing still shows other patches keeps them, and one that omits the listing closes only its own', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    host.fold(2, applied(B, [l(A), l(B)]));
    const change = host.fold(3, reverted(A));
    expect(change.closed.map((i) => i.moduleName)).toEqual(['lp_fix_a']);
    expect(modules(host.stack.entries)).toEqual(['lp_fix_b']);
  });

  it('given drift with the observed listing, unlisted modules close as inventory and listed ones stay', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    host.fold(2, applied(B, [l(A), l(B)]));
    const drift = (kind: string, observed: ReturnType<typeof l>[]): Parameters<ScriptedHost['fold']>[1] => ({
      type: 'DriftDetected',
      payload: { hostId: 'h', kind, detail: '', expected: [], observed },
    });
    const change = host.fold(3, drift('removed-by-hand', [l(B)]));
    expect(change.closed.map((i) => [i.moduleName, i.removalReason])).toEqual([['lp_fix_a', 'inventory']]);
    expect(modules(host.stack.entries)).toEqual(['lp_fix_b']);
    // A drift that lists nothing and removed nothing (a stuck transition) says nothing of the stack.
    expect(host.fold(4, drift('transition-stuck', [])).changed).toEqual([]);
    expect(host.fold(5, drift('removed-by-hand', [])).closed.map((i) => i.moduleName)).toEqual(['lp_fix_b']);
  });

  it('marks a forced apply; it stays forced', () => {
    const host = new ScriptedHost();
    host.fold(1, applied({ ...A, forced: true }, [l(A)]));
    host.fold(2, inventory('', [l(A)]));
    expect(host.stack.entries[0]!.forced).toBe(true);
  });
});

describe('hostFactOf', () => {
  it('picks the stack-changing payload of an event body, and nothing for other events', () => {
    const body = { eventId: 'e', type: 'HostBooted', stream: 'host/web-17', correlationId: '', causationId: '' };
    const fact = booted('boot-3');
    expect(hostFactOf({ ...body, hostBooted: fact.payload as never })).toEqual(fact);
    expect(
      hostFactOf({ ...body, type: 'PatchRetracted', patchRetracted: { patchId: 'x', version: '1', reason: 'r' } }),
    ).toBe(undefined);
  });

  it('an empty stack starts with sequence 1 and a given boot', () => {
    expect(emptyHostStack('h', { bootId: 'b', kernelRelease: RELEASE })).toEqual({
      hostId: 'h',
      bootId: 'b',
      kernelRelease: RELEASE,
      entries: [],
      nextStackSeq: 1,
      observedAt: null,
    });
  });
});
