import type { events } from '@rebootless/contracts';
import type { AgentStateData, DesiredPatch } from '../state/agent-state';
import {
  CRASH_LOOP_WINDOW_MS,
  STUCK_TRANSITION_MS,
  crashLoopSuspect,
  deliveryBackoffMs,
  desiredAfterApply,
  detectDrift,
  forcedThisBoot,
  isQuarantined,
  withoutQuarantine,
  liveVersionOf,
  moduleToRevert,
  rememberCommand,
  supersededBy,
  wasSeen,
  type AppliedModule,
} from './host-rules';

const NOW = Date.parse('2026-12-06T04:00:00Z');
const DAY = 86_400_000;

function remembered(
  over: Partial<AgentStateData> = {},
): Pick<AgentStateData, 'applying' | 'lastApplied' | 'cleanStop'> {
  return { cleanStop: false, ...over };
}

function desired(patchId: string, version: string, over: Partial<DesiredPatch> = {}): DesiredPatch {
  return {
    patchId,
    version,
    moduleName: `lp_${patchId}__v${version}`.replace(/[.-]/g, '_'),
    artifactDigest: 'a'.repeat(64),
    replace: false,
    cves: [],
    ...over,
  };
}

function module(patchId: string, version: string, replace = false): AppliedModule {
  return { ...desired(patchId, version), replace, cves: [{ id: 'CVE-2024-1086' }] };
}

function live(moduleName: string, enabled = true, transition = false): events.LivePatchState {
  return { moduleName, enabled, transition } as events.LivePatchState;
}

describe('the crash-loop guard', () => {
  it('Given an apply under way, When the host boots anew, Then that patch is the suspect', () => {
    const applying = {
      commandId: 'c1',
      patchId: 'fix-a',
      version: '1',
      moduleName: 'lp_fix_a',
      artifactDigest: 'a'.repeat(64),
      bootId: 'boot-1',
      startedAt: NOW - 5_000,
    };

    expect(crashLoopSuspect(remembered({ applying }), 'boot-1', NOW)).toEqual({
      patchId: 'fix-a',
      version: '1',
      why: 'the host went down during its apply',
    });
  });

  it('Given a patch applied 42 s before an unplanned stop, When the host boots anew, Then it is the suspect', () => {
    const lastApplied = { patchId: 'fix-a', version: '1', bootId: 'boot-1', at: NOW - 42_000 };

    expect(crashLoopSuspect(remembered({ lastApplied }), 'boot-1', NOW)).toEqual({
      patchId: 'fix-a',
      version: '1',
      why: 'the host went down 42 s after it was applied, without a planned stop',
    });
  });

  it('Given a planned stop after the apply, When the host boots anew, Then nothing is suspect', () => {
    const lastApplied = { patchId: 'fix-a', version: '1', bootId: 'boot-1', at: NOW - 42_000 };

    expect(crashLoopSuspect(remembered({ lastApplied, cleanStop: true }), 'boot-1', NOW)).toBeUndefined();
  });

  it('Given the apply was longer ago than the window, Then nothing is suspect; a moment inside it, Then it is', () => {
    const at = (ago: number) =>
      remembered({ lastApplied: { patchId: 'fix-a', version: '1', bootId: 'boot-1', at: NOW - ago } });

    expect(crashLoopSuspect(at(CRASH_LOOP_WINDOW_MS), 'boot-1', NOW)).toBeUndefined();
    expect(crashLoopSuspect(at(CRASH_LOOP_WINDOW_MS - 1), 'boot-1', NOW)?.patchId).toBe('fix-a');
    expect(crashLoopSuspect(at(30_000), 'boot-1', NOW, 10_000)).toBeUndefined();
  });

  it('Given the patch was applied in an earlier boot than the one that ended, Then it did not crash this one', () => {
    const lastApplied = { patchId: 'fix-a', version: '1', bootId: 'boot-0', at: NOW - 42_000 };

    expect(crashLoopSuspect(remembered({ lastApplied }), 'boot-1', NOW)).toBeUndefined();
  });

  it('Given a quarantined version, Then only that version of the patch is held back', () => {
    const quarantined = [{ patchId: 'fix-a', version: '1', reason: 'crash', since: NOW }];

    expect(isQuarantined(quarantined, { patchId: 'fix-a', version: '1' })).toBe(true);
    expect(isQuarantined(quarantined, { patchId: 'fix-a', version: '2' })).toBe(false);
  });

  it('Given two quarantined versions, When an operator clears one, Then only the other stays held back', () => {
    const quarantined = [
      { patchId: 'fix-a', version: '1', reason: 'crash', since: NOW },
      { patchId: 'fix-a', version: '2', reason: 'crash', since: NOW },
    ];

    const after = withoutQuarantine(quarantined, { patchId: 'fix-a', version: '1' });

    expect(after).toEqual([quarantined[1]]);
    expect(isQuarantined(after, { patchId: 'fix-a', version: '1' })).toBe(false);
  });
});

describe('the command replay window', () => {
  it('Given a command expiring in an hour, When it is remembered, Then it is kept until a day after its expiry', () => {
    const seen = rememberCommand([], 'c1', NOW + 3_600_000, NOW);

    expect(seen).toEqual([{ id: 'c1', until: NOW + 3_600_000 + DAY }]);
    expect(wasSeen(seen, 'c1')).toBe(true);
    expect(wasSeen(seen, 'c2')).toBe(false);
  });

  it('Given a command with no expiry, When it is remembered, Then it is kept 31 days', () => {
    expect(rememberCommand([], 'c1', undefined, NOW)).toEqual([{ id: 'c1', until: NOW + 31 * DAY }]);
  });

  it('Given memories past their time, When another command arrives, Then they are dropped and the rest kept', () => {
    const seen = [
      { id: 'old', until: NOW - 1 },
      { id: 'edge', until: NOW },
      { id: 'recent', until: NOW + 1 },
    ];

    expect(rememberCommand(seen, 'c1', NOW, NOW).map((c) => c.id)).toEqual(['recent', 'c1']);
  });
});

describe('supersession', () => {
  const stack = [desired('fix-a', '1'), desired('fix-a', '2'), desired('fix-b', '1')];

  it('Given two versions of a patch and another patch, When version 3 applies, Then both older versions are superseded', () => {
    expect(supersededBy(stack, module('fix-a', '3')).map((d) => d.version)).toEqual(['1', '2']);
    expect(desiredAfterApply(stack, module('fix-a', '3'), 'c'.repeat(64))).toEqual([
      desired('fix-b', '1'),
      { ...desired('fix-a', '3'), artifactDigest: 'c'.repeat(64), cves: ['CVE-2024-1086'] },
    ]);
  });

  it('Given any stack, When a replace (cumulative) patch applies, Then every other module is superseded', () => {
    const cumulative = module('cumulative', '7', true);

    expect(supersededBy(stack, cumulative)).toEqual(stack);
    expect(desiredAfterApply(stack, cumulative, 'c'.repeat(64)).map((d) => d.patchId)).toEqual(['cumulative']);
  });

  it('Given the same module applied again, Then it does not supersede itself and is desired once', () => {
    const again = module('fix-b', '1');

    expect(supersededBy(stack, again)).toEqual([]);
    expect(desiredAfterApply(stack, again, 'a'.repeat(64)).filter((d) => d.patchId === 'fix-b')).toHaveLength(1);
  });

  it('Given versions 1.9 and 1.10 desired, Then the live version is 1.10 (numbered as people number them)', () => {
    expect(liveVersionOf([desired('fix-a', '1.10'), desired('fix-a', '1.9')], 'fix-a')).toBe('1.10');
    expect(liveVersionOf(stack, 'fix-z')).toBeUndefined();
  });

  it("Given a revert naming its module, Then that module; naming none, Then the desired patch's, or none", () => {
    const named = { patchId: 'fix-a', version: '1', moduleName: 'lp_from_the_ledger' };

    expect(moduleToRevert(stack, named)).toBe('lp_from_the_ledger');
    expect(moduleToRevert(stack, { ...named, moduleName: '' })).toBe(desired('fix-a', '1').moduleName);
    expect(moduleToRevert(stack, { patchId: 'fix-z', version: '1', moduleName: '' })).toBeUndefined();
  });

  it('Given a module forced in this boot, Then it is pinned; forced in an earlier boot, Then it is not', () => {
    const forced = [{ moduleName: 'lp_x', bootId: 'boot-1', at: NOW }];

    expect(forcedThisBoot(forced, 'lp_x', 'boot-1')).toBe(true);
    expect(forcedThisBoot(forced, 'lp_x', 'boot-2')).toBe(false);
  });
});

describe('drift', () => {
  it('Given the reported stack, When the kernel shows the same, Then there is no drift', () => {
    const check = detectDrift([live('lp_a')], [live('lp_a')], new Map(), NOW);

    expect(check).toEqual({ findings: [], stackChanged: false, transitionSeen: new Map() });
  });

  it('Given lp_a reported, When the kernel shows lp_b instead, Then one loaded and one removed by hand', () => {
    const check = detectDrift([live('lp_a')], [live('lp_b')], new Map(), NOW);

    expect(check.findings).toEqual([
      { kind: 'loaded-by-hand', detail: 'not loaded by this agent: lp_b' },
      { kind: 'removed-by-hand', detail: 'gone without this agent: lp_a' },
    ]);
    expect(check.stackChanged).toBe(true);
  });

  it('Given lp_a reported enabled, When someone disabled it, Then it counts as both gone (enabled) and loaded (disabled)', () => {
    const check = detectDrift([live('lp_a', true)], [live('lp_a', false)], new Map(), NOW);

    expect(check.findings.map((f) => f.kind)).toEqual(['loaded-by-hand', 'removed-by-hand']);
  });

  it('Given a transition first seen now, Then it is timed from now and is not drift yet', () => {
    const check = detectDrift([live('lp_a', true, true)], [live('lp_a', true, true)], new Map(), NOW);

    expect(check.findings).toEqual([]);
    expect(check.transitionSeen).toEqual(new Map([['lp_a', NOW]]));
  });

  it('Given a transition seen 5 minutes ago, When it still runs, Then it is stuck, reported once, and timed afresh', () => {
    const stack = [live('lp_a', true, true)];
    const check = detectDrift(stack, stack, new Map([['lp_a', NOW - STUCK_TRANSITION_MS]]), NOW);

    expect(check.findings).toEqual([{ kind: 'transition-stuck', detail: 'lp_a in transition for 300 s' }]);
    expect(check.stackChanged).toBe(false);
    expect(check.transitionSeen.has('lp_a')).toBe(false);
  });

  it('Given a transition that ended, Then its timing is forgotten', () => {
    const check = detectDrift([live('lp_a')], [live('lp_a')], new Map([['lp_a', NOW - 1000]]), NOW);

    expect(check.transitionSeen.size).toBe(0);
  });
});

describe('outbox delivery', () => {
  it('Given failed deliveries, Then the wait doubles from 250 ms and stops growing at 30 s', () => {
    expect([1, 2, 3, 4, 8, 9, 50].map(deliveryBackoffMs)).toEqual([250, 500, 1000, 2000, 30_000, 30_000, 30_000]);
  });
});
