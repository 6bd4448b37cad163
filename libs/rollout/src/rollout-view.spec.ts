import { dispatcher } from '@rebootless/contracts';
import { rolloutView } from './rollout-view';
import { catalogWith, fleetOf, hostIds, request, RolloutDriver, strategy } from './test-fleet';

const H = dispatcher.HostRolloutState;
const V = dispatcher.RolloutView;

/** Per wave, how many hosts the full view shows in each state. */
function countedFromHosts(view: dispatcher.Rollout): [number, number][][] {
  return view.waves.map((w) => {
    const counts = new Map<number, number>();
    for (const h of w.hosts) counts.set(h.state, (counts.get(h.state) ?? 0) + 1);
    return [...counts].sort(([a], [b]) => a - b);
  });
}

describe('the summary view of a rollout', () => {
  it('counts what the full view lists, host by host, wave by wave, and lists no host', () => {
    // Given a canary that succeeded and a wave with successes, a failure, a timeout and hosts in flight
    const d = new RolloutDriver(fleetOf(hostIds(20)), catalogWith());
    const run = d.create(
      request({ strategy: strategy({ canaryCount: 2, waveFailureBudget: 5, totalFailureBudget: 5 }) }),
    );
    d.settle();
    for (const h of d.requestedHosts()) d.applied(h);
    d.settle();
    const wave = [...d.openCommands().keys()];
    for (const h of wave.slice(0, 6)) d.applied(h);
    d.failed(wave[6]!);
    d.now += 61_000; // the rest of the wave's commands expire unanswered
    d.settle();
    // When both views are asked for at the same instant
    const full = rolloutView(run, d.now, V.ROLLOUT_VIEW_FULL);
    const summary = rolloutView(run, d.now, V.ROLLOUT_VIEW_SUMMARY);
    // Then the summary's counts are the full view's hosts counted, and the rest is the same
    const counts = summary.waves.map((w) => w.hostCounts.map((c) => [c.state, c.hosts]));
    expect(counts).toEqual(countedFromHosts(full));
    expect(counts[0]).toEqual([[H.HOST_ROLLOUT_STATE_SUCCEEDED, 2]]);
    expect(counts[1]).toEqual([
      [H.HOST_ROLLOUT_STATE_SUCCEEDED, 6],
      [H.HOST_ROLLOUT_STATE_FAILED, 1],
      [H.HOST_ROLLOUT_STATE_TIMED_OUT, 11],
    ]);
    expect(summary.waves.every((w) => w.hosts.length === 0)).toBe(true);
    expect(full.waves.map((w) => w.hostCounts)).toEqual(summary.waves.map((w) => w.hostCounts));
    const withoutHosts = (r: dispatcher.Rollout) => ({ ...r, waves: r.waves.map((w) => ({ ...w, hosts: [] })) });
    expect(withoutHosts(summary)).toEqual(withoutHosts(full));
    // And the wave that spent its budget shows it in both (its state comes from the errors counted)
    expect(summary.waves[1]!.state).toBe(full.waves[1]!.state);
  });

  it('gives the skipped hosts as a number; the full view also names them', () => {
    // Given a fleet where two hosts already carry the patch
    const d = new RolloutDriver(fleetOf(hostIds(5)), catalogWith());
    const run = d.create(request());
    run.skippedHostIds.push('host-0100', 'host-0101');
    // Then
    expect(rolloutView(run, d.now, V.ROLLOUT_VIEW_SUMMARY)).toMatchObject({ skippedHostIds: [], skippedHosts: 2 });
    expect(rolloutView(run, d.now)).toMatchObject({ skippedHostIds: ['host-0100', 'host-0101'], skippedHosts: 2 });
  });
});
