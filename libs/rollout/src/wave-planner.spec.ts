import { RolloutInputError } from './errors';
import { hostIds, strategy } from './test-fleet';
import { effectiveStrategy, planWaves } from './wave-planner';

describe('planWaves', () => {
  it('puts a canary first, then waves by percentage of the hosts left, every host exactly once', () => {
    const targets = hostIds(200);
    const plan = planWaves(
      targets,
      strategy({ canaryCount: 2, waves: [{ percent: 10 }, { percent: 40 }, { percent: 50 }] }),
    );
    expect(plan.map((w) => [w.index, w.name, w.hostIds.length])).toEqual([
      [0, 'canary', 2],
      [1, 'wave 1', 20],
      [2, 'wave 2', 79],
      [3, 'wave 3', 99],
    ]);
    expect(new Set(plan.flatMap((w) => w.hostIds)).size).toBe(200);
  });

  it('takes the named canary hosts first', () => {
    const plan = planWaves(hostIds(10), strategy({ canaryHostIds: ['host-0007'], canaryCount: 2 }));
    expect(plan[0]!.hostIds).toEqual(['host-0007', 'host-0000']);
    expect(plan[1]!.hostIds).not.toContain('host-0007');
  });

  it('accepts counts that add up to the hosts after the canary', () => {
    const plan = planWaves(hostIds(10), strategy({ canaryCount: 1, waves: [{ count: 4 }, { count: 5 }] }));
    expect(plan.map((w) => w.hostIds.length)).toEqual([1, 4, 5]);
  });

  it.each([
    [
      { waves: [{ count: 4 }, { count: 4 }] },
      'strategy.waves: wave counts add up to 8 but 9 host(s) remain after the canary',
    ],
    [{ waves: [{ percent: 30 }, { percent: 60 }] }, 'strategy.waves: wave percentages add up to 90, not 100'],
    [{ waves: [{ percent: 50 }, { count: 5 }] }, 'strategy.waves: mixes counts and percentages'],
    [{ waves: [{ percent: 0 }, { percent: 100 }] }, 'strategy.waves[0].percent: 0 is not from 1 to 100'],
    [{ waves: [{ count: 0 }, { count: 9 }] }, 'strategy.waves[0].count: must be at least 1'],
    [{ waves: [{}] }, 'strategy.waves[0]: sets neither count nor percent'],
    [{ canaryCount: 11 }, 'strategy.canary_count: 11 canary hosts asked but the selection targets 10'],
    [
      { canaryHostIds: ['elsewhere'] },
      'strategy.canary_host_ids: elsewhere is not among the hosts the rollout targets',
    ],
    [
      { window: { days: 'Sat,Funday', startUtc: '02:00', endUtc: '05:00' } },
      'strategy.window.days: "Funday" is not a weekday',
    ],
  ])('refuses a plan that does not add up: %j', (overrides, message) => {
    const attempt = () => planWaves(hostIds(10), strategy(overrides));
    expect(attempt).toThrow(RolloutInputError);
    expect(attempt).toThrow(message);
  });

  it('drops waves a small fleet leaves empty', () => {
    const plan = planWaves(hostIds(3), strategy({ canaryCount: 1, waves: [{ percent: 10 }, { percent: 90 }] }));
    expect(plan.map((w) => [w.name, w.hostIds.length])).toEqual([
      ['canary', 1],
      ['wave 1', 2],
    ]);
  });

  it('gives an unset strategy the defaults: one canary, then everyone, pause on failure', () => {
    const s = effectiveStrategy(undefined);
    expect(planWaves(hostIds(5), s).map((w) => w.hostIds.length)).toEqual([1, 4]);
    expect(s.onFailure).toBe(1);
    expect(s.applyTimeoutSeconds).toBeGreaterThan(0);
  });
});
