import { dispatcher, events } from '@rebootless/contracts';
import { RolloutForbiddenError, RolloutPreconditionError } from './errors';
import { abort, approve, pause, resume, rollBack } from './rollout-decider';
import { planRollout, planUndoRollout } from './rollout-planner';
import { rolloutView } from './rollout-view';
import { runRecord } from './rollout-state';
import { catalogWith, fleetOf, hostIds, make, publishTo, request, RolloutDriver, strategy, T0 } from './test-fleet';

const H = dispatcher.HostRolloutState;
const R = dispatcher.RolloutState;
const W = dispatcher.WaveState;

function driver(n: number): RolloutDriver {
  return new RolloutDriver(fleetOf(hostIds(n)), catalogWith());
}

describe('a rollout in canary and waves', () => {
  it('patches the canary, then each wave after the previous one answered, then completes', () => {
    const d = driver(200);
    d.create(
      request({ strategy: strategy({ canaryCount: 2, waves: [{ percent: 25 }, { percent: 25 }, { percent: 50 }] }) }),
    );

    expect(d.types(d.settle())).toEqual(['WaveStarted', 'HostApplyRequested', 'HostApplyRequested']);
    expect(d.settle()).toEqual([]); // waits for the canary's answers
    d.answerAll();
    const next = d.settle();
    expect(next[0]).toMatchObject({ type: 'WaveCompleted', data: { waveIndex: 0 } });
    expect(next[1]).toMatchObject({ type: 'WaveStarted', data: { waveIndex: 1 } });
    expect(next.filter((e) => e.type === 'HostApplyRequested')).toHaveLength(50);

    for (let i = 0; i < 3; i++) {
      d.answerAll();
      d.settle();
    }
    const run = d.book.get('r1')!;
    expect(run.status).toBe('completed');
    expect(d.log.at(-1)!.event).toMatchObject({
      type: 'RolloutCompleted',
      data: { succeeded: 200, failed: 0, skipped: 0 },
    });
    // Every host was asked exactly once.
    expect(new Set(d.requestedHosts()).size).toBe(200);
    expect(d.requestedHosts()).toHaveLength(200);
    const view = rolloutView(run, d.now);
    expect(view.state).toBe(R.ROLLOUT_STATE_COMPLETED);
    expect(view.waves.map((w) => w.state)).toEqual([
      W.WAVE_STATE_COMPLETED,
      W.WAVE_STATE_COMPLETED,
      W.WAVE_STATE_COMPLETED,
      W.WAVE_STATE_COMPLETED,
    ]);
    expect(view.waves.flatMap((w) => w.hosts).every((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED)).toBe(true);
  });

  it('never has more hosts in flight than max_in_flight', () => {
    const d = driver(20);
    d.create(request({ strategy: strategy({ canaryCount: 0, maxInFlight: 3 }) }));
    let most = 0;
    for (let i = 0; i < 50 && d.book.get('r1')!.status === 'running'; i++) {
      d.settle();
      most = Math.max(most, d.openCommands().size);
      const [first] = d.openCommands().keys();
      if (first) d.applied(first);
    }
    expect(most).toBe(3);
    expect(d.book.get('r1')!.status).toBe('completed');
  });

  it('waits soak_seconds between waves', () => {
    const d = driver(10);
    d.create(request({ strategy: strategy({ canaryCount: 1, soakSeconds: 600 }) }));
    d.settle();
    d.answerAll();
    expect(d.types(d.settle())).toEqual(['WaveCompleted']);
    expect(rolloutView(d.book.get('r1')!, d.now).waves[0]!.state).toBe(W.WAVE_STATE_SOAKING);
    d.now += 599_000;
    expect(d.settle()).toEqual([]);
    d.now += 2_000;
    expect(d.types(d.settle())[0]).toBe('WaveStarted');
  });

  it('starts no wave outside the maintenance window', () => {
    const d = driver(4);
    // T0 is a Wednesday 10:00 UTC.
    d.create(request({ strategy: strategy({ window: { days: 'Wed', startUtc: '11:00', endUtc: '12:00' } }) }));
    expect(d.settle()).toEqual([]);
    d.now += 60 * 60 * 1000;
    expect(d.types(d.settle())).toEqual(['WaveStarted', 'HostApplyRequested']);
  });
});

describe('approval gates', () => {
  it('waits for an approver before the first wave and between waves', () => {
    const d = driver(6);
    const run = d.create(
      request({
        strategy: strategy({ approvalBeforeFirstWave: true, approvalBetweenWaves: true, waves: [{ percent: 100 }] }),
      }),
    );
    expect(d.settle()).toEqual([]);
    expect(rolloutView(run, d.now).state).toBe(R.ROLLOUT_STATE_AWAITING_APPROVAL);
    expect(() => approve(run, 1, 'alice')).toThrow(
      'wave_index 1 is not the wave waiting for approval: canary (index 0) is',
    );
    approve(run, 0, 'alice').forEach((e) => d.write(e));
    expect(d.types(d.settle())).toEqual(['WaveStarted', 'HostApplyRequested']);
    d.answerAll();
    expect(d.types(d.settle())).toEqual(['WaveCompleted']);
    expect(rolloutView(run, d.now).waves[1]!.state).toBe(W.WAVE_STATE_AWAITING_APPROVAL);
    approve(run, 1, 'alice').forEach((e) => d.write(e));
    expect(d.types(d.settle())[0]).toBe('WaveStarted');
  });
});

describe('the two-person rule', () => {
  it('refuses an approval by the person who created the rollout, and takes another approver', () => {
    const d = driver(6);
    const created = planRollout(
      'r2',
      request({ strategy: strategy({ approvalBeforeFirstWave: true, waves: [{ percent: 100 }] }) }),
      d.fleet,
      d.catalog,
    );
    const alice = { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '127.0.0.1' };
    const run = d.book.evolve({ type: 'RolloutCreated', data: created }, { at: d.now, actor: alice })!;

    expect(() => approve(run, 0, 'alice')).toThrow(
      new RolloutForbiddenError(
        'alice created rollout r2 and cannot approve it too: another approver must (two-person rule)',
      ),
    );
    expect(approve(run, 0, 'bob')).toEqual([
      { type: 'RolloutApproved', data: { rolloutId: 'r2', waveIndex: 0, approver: 'bob' } },
    ]);
  });
});

describe('failures', () => {
  it('pauses itself when the canary stalls, and patches no one else', () => {
    const d = driver(50);
    d.create(request({ strategy: strategy({ canaryCount: 1 }) }));
    d.settle();
    d.failed('host-0000', 1);
    const written = d.settle();
    expect(written).toEqual([
      {
        type: 'RolloutPaused',
        data: {
          rolloutId: 'r1',
          reason:
            'canary: 1 host(s) failed, over its failure budget of 0 (host-0000: transition stalled (1 task(s)) at transition: transition did not complete)',
        },
      },
    ]);
    d.now += 3_600_000;
    expect(d.settle()).toEqual([]);
    expect(d.requestedHosts()).toEqual(['host-0000']);
  });

  it('spends the wave failure budget before acting', () => {
    const d = driver(10);
    d.create(request({ strategy: strategy({ canaryCount: 0, waveFailureBudget: 1, totalFailureBudget: 1 }) }));
    d.settle();
    d.failed('host-0003');
    expect(d.settle()).toEqual([]);
    d.failed('host-0004');
    expect(d.types(d.settle())).toEqual(['RolloutPaused']);
  });

  it('counts a host that never answered before the command expired as timed out', () => {
    const d = driver(3);
    const run = d.create(request());
    d.settle();
    d.now += 61_000;
    expect(d.types(d.settle())).toEqual(['RolloutPaused']);
    expect(rolloutView(run, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_TIMED_OUT);
  });

  it('fails the health gate on drift or a kernel warning after the apply, and on a forced transition', () => {
    for (const unhealthy of [
      (d: RolloutDriver) =>
        d.book.observe(
          {
            type: 'DriftDetected',
            data: make(events.DriftDetected, { hostId: 'host-0000', kind: 'removed-by-hand', detail: 'rmmod' }),
          },
          { at: d.now },
        ),
      (d: RolloutDriver) =>
        d.book.observe(
          {
            type: 'HostInventoryReported',
            data: make(events.HostInventoryReported, {
              facts: make(events.HostFacts, { hostId: 'host-0000', tainted: '512', taintFlags: ['W'] }),
            }),
          },
          { at: d.now },
        ),
    ]) {
      const d = driver(5);
      d.create(request({ strategy: strategy({ soakSeconds: 300 }) }));
      d.settle();
      d.applied('host-0000');
      expect(d.types(d.settle())).toEqual(['WaveCompleted']);
      d.now += 10_000;
      unhealthy(d);
      expect(d.types(d.settle())).toEqual(['RolloutPaused']);
    }
    const d = driver(5);
    d.create(request());
    d.settle();
    d.applied('host-0000', { forced: true });
    expect(d.settle()[0]).toMatchObject({ type: 'RolloutPaused', data: { reason: expect.stringContaining('forced') } });
  });

  it('counts a canary that goes silent after the apply as a failure', () => {
    const d = driver(5);
    d.create(request({ strategy: strategy({ soakSeconds: 300 }) }));
    d.settle();
    d.applied('host-0000');
    d.settle();
    d.now += 5_000;
    d.offline.set('host-0000', d.now);
    d.now += 20_000;
    expect(d.settle()).toEqual([]);
    d.now += 20_000;
    expect(d.settle()[0]).toMatchObject({
      type: 'RolloutPaused',
      data: { reason: expect.stringContaining('went silent') },
    });
  });

  it('aborts instead when the policy says so', () => {
    const d = driver(5);
    d.create(request({ strategy: strategy({ onFailure: events.FailurePolicy.FAILURE_POLICY_ABORT }) }));
    d.settle();
    d.failed('host-0000');
    expect(d.types(d.settle())).toEqual(['RolloutAborted']);
    expect(d.book.get('r1')!.status).toBe('aborted');
  });

  it('after a resume, the failures the operator accepted no longer count', () => {
    const d = driver(5);
    const run = d.create(request());
    d.settle();
    d.failed('host-0000');
    d.settle();
    expect(run.status).toBe('paused');
    resume(run).forEach((e) => d.write(e));
    const next = d.settle();
    expect(d.types(next).slice(0, 2)).toEqual(['WaveCompleted', 'WaveStarted']);
    expect(next.filter((e) => e.type === 'HostApplyRequested')).toHaveLength(4);
  });

  it('a failure that arises after the resume counts again, on a host that was forgiven before', () => {
    const d = driver(5);
    const run = d.create(request({ strategy: strategy({ canaryCount: 2, waves: [{ percent: 100 }] }) }));
    d.settle();
    d.failed('host-0000');
    d.settle();
    resume(run).forEach((e) => d.write(e));
    d.now += 1_000;
    d.applied('host-0001', { forced: true });
    expect(d.settle()[0]).toMatchObject({
      type: 'RolloutPaused',
      data: { reason: expect.stringContaining('host-0001: the transition did not finish by itself (forced)') },
    });
    // host-0000's failure, accepted by the resume, is not counted again.
    expect(run.statusReason).not.toContain('host-0000');
  });

  it('forgives the same failures whatever order a reader folds the resume and the agents facts in', () => {
    const d = driver(5);
    const run = d.create(request({ strategy: strategy({ canaryCount: 2, waves: [{ percent: 100 }] }) }));
    d.settle();
    d.failed('host-0000');
    d.settle();
    d.now += 1_000;
    resume(run).forEach((e) => d.write(e));
    d.now += 1_000;
    d.applied('host-0001', { forced: true });

    // Every event of the dispatcher first, then every agent fact (another partition read later).
    const late = new RolloutDriver(d.fleet, d.catalog);
    for (const l of d.log) late.book.evolve(l.event, { at: l.at });
    for (const f of d.facts) late.book.observe(f.fact, { at: f.at });
    const mine = runRecord(d.book.get('r1')!);
    expect(runRecord(late.book.get('r1')!)).toEqual(mine);
    expect(mine.resumedAt).toBe(d.log.find((l) => l.event.type === 'RolloutResumed')!.at);
    // Both pause again for host-0001 only: host-0000 failed before the resume, host-0001 after it.
    late.now = d.now;
    for (const driven of [d, late]) {
      const [paused] = driven.settle();
      expect(paused).toMatchObject({ type: 'RolloutPaused', data: { reason: expect.stringContaining('1 host(s)') } });
      expect((paused as { data: { reason: string } }).data.reason).toContain('host-0001');
    }
  });
});

describe('roll-back', () => {
  it('reverts exactly the hosts the rollout patched, newest wave first', () => {
    const fleet = fleetOf(hostIds(10));
    fleet.observeFacts(
      make(events.HostFacts, { hostId: 'host-0009', kernelRelease: '6.1.0-31-cloud-amd64', bootId: 'b' }),
      [make(events.LivePatchState, { moduleName: 'livepatch_cve_2024_1086', enabled: true })],
    );
    const d = new RolloutDriver(fleet, catalogWith());
    d.create(
      request({
        strategy: strategy({
          canaryCount: 1,
          waves: [{ count: 4 }, { count: 4 }],
          onFailure: events.FailurePolicy.FAILURE_POLICY_ROLL_BACK,
        }),
      }),
    );
    d.settle();
    d.answerAll(); // canary host-0000
    d.settle();
    d.answerAll(); // wave 1: host-0001..0004
    d.settle();
    // Wave 2: two apply, one fails, one still applying.
    d.applied('host-0005');
    d.applied('host-0006');
    d.failed('host-0007');
    const written = d.settle();
    expect(written[0]).toMatchObject({ type: 'RolloutAborted', data: { rollBack: true } });
    // Newest wave first; host-0008 is still applying, so it is waited for.
    expect(written.slice(1).map((e) => (e.data as { hostId: string }).hostId)).toEqual(['host-0005', 'host-0006']);
    d.applied('host-0008');
    expect(d.settle().map((e) => (e.data as { hostId: string }).hostId)).toEqual(['host-0008']);
    d.answerAll();
    expect(d.settle().map((e) => (e.data as { hostId: string }).hostId)).toEqual([
      'host-0001',
      'host-0002',
      'host-0003',
      'host-0004',
    ]);
    d.answerAll();
    expect(d.settle().map((e) => (e.data as { hostId: string }).hostId)).toEqual(['host-0000']);
    d.answerAll();
    const end = d.settle();
    expect(end).toEqual([
      {
        type: 'RolloutCompleted',
        data: { rolloutId: 'r1', succeeded: 0, failed: 1, skipped: 1, rolledBack: true, reverted: 8 },
      },
    ]);
    // Never the host that already carried the patch (skipped at creation) nor the one that failed.
    expect(d.requestedHosts('HostRevertRequested').sort()).toEqual([
      'host-0000',
      'host-0001',
      'host-0002',
      'host-0003',
      'host-0004',
      'host-0005',
      'host-0006',
      'host-0008',
    ]);
    expect(rolloutView(d.book.get('r1')!, d.now).state).toBe(R.ROLLOUT_STATE_ROLLED_BACK);
  });

  it('can be asked for by an operator, once', () => {
    const d = driver(3);
    const run = d.create(request());
    d.settle();
    d.answerAll();
    d.settle();
    d.answerAll();
    d.settle();
    expect(run.status).toBe('completed');
    rollBack(run, 'bad patch').forEach((e) => d.write(e));
    expect(d.requestedHosts('HostRevertRequested')).toEqual([]);
    d.settle();
    expect(d.openCommands().size).toBe(2);
    expect(() => rollBack(run, 'again')).toThrow(RolloutPreconditionError);
  });
});

describe('offline hosts', () => {
  it('do not hold the wave; their command waits until they reconnect', () => {
    const d = driver(10);
    d.offline.set('host-0003', T0 - 1000);
    d.create(request({ strategy: strategy({ canaryCount: 1, offlineDeadlineSeconds: 600 }) }));
    d.settle();
    d.answerAll();
    d.settle();
    d.answerAll();
    expect(d.types(d.settle())).toEqual(['WaveCompleted']);
    expect(d.book.get('r1')!.status).toBe('running');
    d.now += 60_000;
    d.offline.delete('host-0003');
    expect(d.settle()).toMatchObject([{ type: 'HostApplyRequested', data: { hostId: 'host-0003' } }]);
    d.answerAll();
    expect(d.settle()).toMatchObject([{ type: 'RolloutCompleted', data: { succeeded: 10, skipped: 0 } }]);
  });

  it('are skipped, not failed, past the deadline', () => {
    const d = driver(4);
    d.offline.set('host-0002', T0 - 1000);
    d.create(request({ strategy: strategy({ offlineDeadlineSeconds: 600 }) }));
    d.settle();
    d.answerAll();
    d.settle();
    d.answerAll();
    d.settle();
    d.now += 601_000;
    expect(d.settle()).toMatchObject([{ type: 'RolloutCompleted', data: { succeeded: 3, failed: 0, skipped: 1 } }]);
    expect(rolloutView(d.book.get('r1')!, d.now).waves[1]!.hosts.find((h) => h.hostId === 'host-0002')!.state).toBe(
      H.HOST_ROLLOUT_STATE_SKIPPED,
    );
  });
});

describe('a host that rebooted', () => {
  it('gets the patch again once it is back', () => {
    const d = driver(2);
    d.create(request());
    for (let i = 0; i < 3; i++) {
      d.settle();
      d.answerAll();
    }
    d.settle();
    expect(d.book.get('r1')!.status).toBe('completed');
    d.book.observe(
      { type: 'HostBooted', data: make(events.HostBooted, { hostId: 'host-0001', bootId: 'new' }) },
      { at: d.now + 1 },
    );
    expect(d.settle()).toMatchObject([{ type: 'HostApplyRequested', data: { hostId: 'host-0001' } }]);
  });

  it('does not get back a patch that a later undo took off it', () => {
    const d = driver(2);
    d.create(request());
    for (let i = 0; i < 3; i++) {
      d.settle();
      d.answerAll();
    }
    d.settle();
    d.now += 1000;
    d.write({
      type: 'RolloutCreated',
      data: planUndoRollout(
        'u1',
        { patchId: 'cve-2024-1086', version: '1', reason: 'undo', strategy: strategy({ canaryCount: 0 }) },
        make(events.HostSelector, { hostIds: ['host-0001'] }),
        [
          {
            hostId: 'host-0001',
            moduleName: 'livepatch_cve_2024_1086',
            steps: [revertStep('livepatch_cve_2024_1086')],
          },
        ],
      ),
    });
    const revert = d.settle('u1').find((e) => e.type === 'HostRevertRequested')!;
    d.observe({
      type: 'PatchReverted',
      data: make(events.PatchReverted, {
        hostId: 'host-0001',
        commandId: (revert.data as { commandId: string }).commandId,
      }),
    });
    d.now += 1000;
    d.observe({ type: 'HostBooted', data: make(events.HostBooted, { hostId: 'host-0001', bootId: 'new' }) });
    expect(d.settle()).toEqual([]);
    // The other host, never undone, gets its patch back after its reboot.
    d.observe({ type: 'HostBooted', data: make(events.HostBooted, { hostId: 'host-0000', bootId: 'new' }) });
    expect(d.settle()).toMatchObject([{ type: 'HostApplyRequested', data: { hostId: 'host-0000' } }]);
  });
});

describe('operator commands', () => {
  it('pause, resume and abort only from the states they make sense in', () => {
    const d = driver(3);
    const run = d.create(request());
    expect(() => resume(run)).toThrow('rollout r1 is running; only a paused rollout can be resumed');
    pause(run, 'lunch').forEach((e) => d.write(e));
    expect(d.settle()).toEqual([]);
    expect(() => pause(run, '')).toThrow(RolloutPreconditionError);
    abort(run, 'enough').forEach((e) => d.write(e));
    expect(run.status).toBe('aborted');
    expect(() => abort(run, '')).toThrow(
      'rollout r1 is aborted (enough); only a running or paused rollout can be aborted',
    );
  });
});

describe('rebuilding from the log', () => {
  it('gives the same rollout whatever order the facts arrive in, then resumes asking no host twice', () => {
    const d = driver(30);
    d.create(request({ strategy: strategy({ canaryCount: 2, waves: [{ percent: 50 }, { percent: 50 }] }) }));
    d.settle();
    d.answerAll();
    d.settle();
    // Mid-wave: 5 hosts answered, the others are still applying.
    for (const hostId of [...d.openCommands().keys()].slice(0, 5)) d.applied(hostId);

    // A new dispatcher may read the agents' facts (other partitions) before its own events.
    const rebuilt = new RolloutDriver(d.fleet, d.catalog);
    rebuilt.now = d.now;
    for (const f of d.facts) rebuilt.book.observe(f.fact, { at: f.at });
    for (const l of d.log) rebuilt.book.evolve(l.event, { at: l.at });

    expect(rolloutView(rebuilt.book.get('r1')!, d.now)).toEqual(rolloutView(d.book.get('r1')!, d.now));
    // Nothing to send again: the hosts still applying keep their commands.
    expect(rebuilt.settle()).toEqual([]);
    rebuilt.answerAll();
    rebuilt.settle();
    rebuilt.answerAll();
    rebuilt.settle();
    expect(rebuilt.book.get('r1')!.status).toBe('completed');
    const asked = [...d.requestedHosts(), ...rebuilt.requestedHosts()];
    expect(asked).toHaveLength(30);
    expect(new Set(asked).size).toBe(30);
  });
});

describe('a command sent again after a restart', () => {
  it('keeps its first outcome when the agent refuses the copy as a replay', () => {
    const d = driver(3);
    const run = d.create(request());
    d.settle();
    const commandId = d.openCommands().get('host-0000')!;
    d.applied('host-0000');
    d.book.observe(
      {
        type: 'PatchApplyFailed',
        data: make(events.PatchApplyFailed, { hostId: 'host-0000', commandId, stage: 'verify', error: 'replayed' }),
      },
      { at: d.now },
    );
    expect(rolloutView(run, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_SUCCEEDED);
    expect(d.types(d.settle())).toEqual(['WaveCompleted', 'WaveStarted', 'HostApplyRequested', 'HostApplyRequested']);
  });
});

describe('an undo', () => {
  it('disables the module the plan names on each host, in canary and waves, and completes', () => {
    const d = driver(4);
    const created = planUndoRollout(
      'r1',
      { patchId: 'cve-2024-1086', version: '1', reason: 'regression', strategy: strategy({ canaryCount: 1 }) },
      make(events.HostSelector, { hostIds: ['host-0001', 'host-0002'] }),
      [
        { hostId: 'host-0002', moduleName: 'livepatch_cve_2024_1086', steps: [revertStep('livepatch_cve_2024_1086')] },
        { hostId: 'host-0001', moduleName: 'livepatch_cve_2024_1086', steps: [revertStep('livepatch_cve_2024_1086')] },
      ],
    );
    d.write({ type: 'RolloutCreated', data: created });
    const run = d.book.get('r1')!;
    expect(rolloutView(run, d.now).kind).toBe(dispatcher.RolloutKind.ROLLOUT_KIND_UNDO);
    expect(d.settle()).toMatchObject([
      { type: 'WaveStarted', data: { waveIndex: 0 } },
      {
        type: 'HostRevertRequested',
        data: { hostId: 'host-0001', moduleName: 'livepatch_cve_2024_1086', reason: 'undo' },
      },
    ]);
    d.reverted('host-0001');
    d.settle();
    d.reverted('host-0002');
    expect(d.types(d.settle())).toEqual(['WaveCompleted', 'RolloutCompleted']);
    expect(run.status).toBe('completed');
    expect(() => rollBack(run, 'x')).toThrow(RolloutPreconditionError);
  });
});

const ACTION = events.UndoStepAction;

function revertStep(moduleName: string, patchId = 'cve-2024-1086', version = '1'): events.UndoPlanStep {
  return { action: ACTION.UNDO_STEP_ACTION_REVERT, moduleName, patchId, version, downgrade: false, detail: '' };
}

function applyStep(moduleName: string, patchId: string, version: string, downgrade = false): events.UndoPlanStep {
  return { action: ACTION.UNDO_STEP_ACTION_APPLY, moduleName, patchId, version, downgrade, detail: '' };
}

const rebootStep: events.UndoPlanStep = {
  action: ACTION.UNDO_STEP_ACTION_REBOOT,
  moduleName: '',
  patchId: '',
  version: '',
  downgrade: false,
  detail: 'the patch was forced: only a reboot removes it',
};

/** An undo of cve-2024-1086 on host-0000 carrying out `steps`; the catalog also has `others`. */
function undoOf(steps: events.UndoPlanStep[], others: [string, string][] = []): RolloutDriver {
  const catalog = catalogWith();
  for (const [patchId, version] of others) publishTo(catalog, patchId, version);
  const d = new RolloutDriver(fleetOf(hostIds(1)), catalog);
  d.write({
    type: 'RolloutCreated',
    data: planUndoRollout(
      'r1',
      { patchId: 'cve-2024-1086', version: '1', reason: 'regression', strategy: strategy({ canaryCount: 0 }) },
      make(events.HostSelector, { hostIds: ['host-0000'] }),
      [{ hostId: 'host-0000', moduleName: 'livepatch_cve_2024_1086', steps }],
    ),
  });
  return d;
}

/** The one command the decider sends now, in short. */
function sent(d: RolloutDriver): string[] {
  return d
    .settle()
    .filter((e) => e.type === 'HostApplyRequested' || e.type === 'HostRevertRequested')
    .map((e) =>
      e.type === 'HostRevertRequested'
        ? `revert ${e.data.moduleName} (step ${e.data.undoStep})`
        : `apply ${e.data.patchId}@${e.data.version}${e.data.allowDowngrade ? ' downgrade' : ''} (step ${e.data.undoStep})`,
    );
}

describe('a multi-step undo', () => {
  it('before 5.1: reverts the patch above first, then the target, then applies the one above again, each after the last was confirmed', () => {
    // Given a stack cve-2024-1086 < cve-2024-9999 on a kernel where only the top patch may be disabled
    const d = undoOf(
      [
        revertStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'),
        revertStep('livepatch_cve_2024_1086'),
        applyStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'),
      ],
      [['cve-2024-9999', '1']],
    );
    // When the undo runs, the first step goes out alone
    expect(sent(d)).toEqual(['revert livepatch_cve_2024_9999 (step 1)']);
    expect(sent(d)).toEqual([]);
    expect(rolloutView(d.book.get('r1')!, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_IN_PROGRESS);
    // Then each next one only after the agent's fact confirmed the previous
    d.reverted('host-0000');
    expect(sent(d)).toEqual(['revert livepatch_cve_2024_1086 (step 2)']);
    d.reverted('host-0000');
    expect(sent(d)).toEqual(['apply cve-2024-9999@1 (step 3)']);
    expect(d.book.get('r1')!.status).toBe('running');
    d.applied('host-0000', { patchId: 'cve-2024-9999', moduleName: 'livepatch_cve_2024_9999' });
    expect(d.types(d.settle())).toEqual(['WaveCompleted', 'RolloutCompleted']);
    expect(d.log.at(-1)!.event).toMatchObject({ type: 'RolloutCompleted', data: { succeeded: 1, failed: 0 } });
  });

  it('a replace chain: loads the previous cumulative patch again as a downgrade', () => {
    const d = undoOf([applyStep('livepatch_cumulative', 'cumulative', '1', true)], [['cumulative', '1']]);
    expect(sent(d)).toEqual(['apply cumulative@1 downgrade (step 1)']);
    d.applied('host-0000', { patchId: 'cumulative', moduleName: 'livepatch_cumulative', replace: true });
    expect(d.types(d.settle())).toEqual(['WaveCompleted', 'RolloutCompleted']);
  });

  it('stops at a step that failed, and sends nothing after it', () => {
    const d = undoOf(
      [revertStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'), revertStep('livepatch_cve_2024_1086')],
      [['cve-2024-9999', '1']],
    );
    expect(sent(d)).toEqual(['revert livepatch_cve_2024_9999 (step 1)']);
    const commandId = d.openCommands().get('host-0000')!;
    d.observe({
      type: 'PatchRevertFailed',
      data: make(events.PatchRevertFailed, { hostId: 'host-0000', commandId, stage: 'disable', error: 'EBUSY' }),
    });
    const after = d.settle();
    expect(after.filter((e) => e.type === 'HostRevertRequested')).toEqual([]);
    expect(rolloutView(d.book.get('r1')!, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_FAILED);
  });

  it('a forced patch: never reboots on its own; a reboot by the operator completes the step, then the others come back', () => {
    const d = undoOf(
      [rebootStep, applyStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1')],
      [['cve-2024-9999', '1']],
    );
    expect(sent(d)).toEqual([]);
    d.now += 24 * 3600_000; // a day later: still waiting, not skipped, no command sent
    expect(sent(d)).toEqual([]);
    expect(rolloutView(d.book.get('r1')!, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_IN_PROGRESS);
    d.observe({ type: 'HostBooted', data: make(events.HostBooted, { hostId: 'host-0000', bootId: 'after' }) });
    expect(sent(d)).toEqual(['apply cve-2024-9999@1 (step 2)']);
    d.applied('host-0000', { patchId: 'cve-2024-9999', moduleName: 'livepatch_cve_2024_9999' });
    expect(d.types(d.settle())).toEqual(['WaveCompleted', 'RolloutCompleted']);
  });

  it('never loads a retracted patch again: the step waits, then times out at the offline deadline', () => {
    const d = undoOf(
      [
        revertStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'),
        revertStep('livepatch_cve_2024_1086'),
        applyStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'),
      ],
      [['cve-2024-9999', '1']],
    );
    sent(d);
    d.reverted('host-0000');
    sent(d);
    d.catalog.patchRetracted({ patchId: 'cve-2024-9999', version: '1', reason: 'corrupts ext4' });
    d.reverted('host-0000');
    expect(sent(d)).toEqual([]);
    d.now += strategy().offlineDeadlineSeconds * 1000 + 1;
    expect(sent(d)).toEqual([]);
    expect(d.log.at(-1)!.event).toMatchObject({ type: 'RolloutPaused' });
    expect(rolloutView(d.book.get('r1')!, d.now).waves[0]!.hosts[0]!.state).toBe(H.HOST_ROLLOUT_STATE_TIMED_OUT);
  });

  it('replays to the same place: a book rebuilt from the log sends the same next step', () => {
    const d = undoOf(
      [revertStep('livepatch_cve_2024_9999', 'cve-2024-9999', '1'), revertStep('livepatch_cve_2024_1086')],
      [['cve-2024-9999', '1']],
    );
    sent(d);
    d.reverted('host-0000');
    const again = new RolloutDriver(d.fleet, d.catalog);
    for (const { event } of d.log) again.write(event);
    for (const { fact } of d.facts) again.observe(fact);
    expect(sent(again)).toEqual(['revert livepatch_cve_2024_1086 (step 2)']);
  });
});

describe('a patch retracted during its rollout', () => {
  it('aborts the rollout: no host gets it any more', () => {
    const d = driver(5);
    const run = d.create(request());
    d.settle();
    d.answerAll();
    d.catalog.patchRetracted({ patchId: 'cve-2024-1086', version: '1', reason: 'corrupts ext4' });
    expect(d.settle()).toEqual([
      {
        type: 'RolloutAborted',
        data: {
          rolloutId: 'r1',
          reason: 'patch cve-2024-1086 version 1 was retracted: corrupts ext4',
          rollBack: false,
        },
      },
    ]);
    expect(run.status).toBe('aborted');
    expect(d.requestedHosts()).toEqual(['host-0000']);
  });
});
