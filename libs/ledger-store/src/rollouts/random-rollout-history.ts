// Random but valid rollout histories for the ledger's property tests: the dispatcher's own decider
// writes the waves and commands; operators approve, pause, resume, abort and roll back; agents
// answer applied, failed, forced, slow, reverted or not at all; hosts drift, warn and reboot.
// Each fleet ends with a rollout driven to an end state chosen in turn, so that every end state
// is reached whatever the seed (a purely random course rarely completes a rollout).
import { events, toTimestamp } from '@rebootless/contracts';
import { EventPayload, payloadFields } from '@rebootless/events';
import {
  RolloutEvent,
  RolloutRun,
  RolloutStatus,
  TickContext,
  abort,
  approve,
  nextEvents,
  pause,
  resume,
  rollBack,
  rolloutTesting,
  waveAwaitingApproval,
} from '@rebootless/rollout';
import { Prng } from '../stacks/random-host-history';

// The dispatcher in miniature the rollout lib's own tests drive.
const { RELEASE, RolloutDriver, catalogWith, fleetOf, make, request, strategy } = rolloutTesting;
export type RolloutDriver = InstanceType<typeof RolloutDriver>;

const P = events.FailurePolicy;

/** Every status a rollout can end a history in: each fleet's last rollout ends in the next one. */
export const END_STATES: readonly RolloutStatus[] = [
  'running',
  'paused',
  'completed',
  'aborted',
  'rolling-back',
  'rolled-back',
];

export interface Entry {
  at: number;
  payload: EventPayload;
}

/**
 * One fleet, one to three rollouts on it and a random course of events, then one more rollout
 * driven to `end`; returns the dispatcher in miniature that wrote the log.
 */
export function randomScenario(rng: Prng, s: number, log: Entry[], end: RolloutStatus): RolloutDriver {
  const ids = Array.from({ length: 2 + rng.int(9) }, (_, i) => `s${s}-h${i}`);
  const driver = new RolloutDriver(fleetOf(ids), catalogWith());
  driver.now += s * 3_600_000;
  const rollouts: string[] = [];
  // Command ids are derived from rollout and host ids, which are unique in the whole log.
  const context = () => driver.context;
  let logged = 0;
  let observed = 0;
  const record = () => {
    for (; logged < driver.log.length; logged++) {
      const l = driver.log[logged]!;
      log.push({ at: l.at, payload: l.event as EventPayload });
    }
    for (; observed < driver.facts.length; observed++) {
      const f = driver.facts[observed]!;
      log.push({ at: f.at, payload: f.fact as EventPayload });
    }
  };
  const write = (es: RolloutEvent[]) => es.forEach((e) => driver.write(e));
  const tryWrite = (make: () => RolloutEvent[]) => {
    try {
      write(make());
    } catch {
      // Not in a state for it: an operator's call refused, nothing written.
    }
  };
  const create = () => {
    const rolloutId = `s${s}-r${rollouts.length}`;
    const req = request({
      strategy: strategy({
        canaryCount: rng.int(3),
        waves: rng.chance(0.5) ? [{ percent: 50 }, { percent: 50 }] : [{ percent: 100 }],
        soakSeconds: rng.pick([0, 30]),
        approvalBeforeFirstWave: rng.chance(0.3),
        approvalBetweenWaves: rng.chance(0.3),
        onFailure: rng.pick([P.FAILURE_POLICY_PAUSE, P.FAILURE_POLICY_ABORT, P.FAILURE_POLICY_ROLL_BACK]),
        waveFailureBudget: rng.int(2),
        totalFailureBudget: rng.int(3),
        maxInFlight: rng.int(3),
      }),
    });
    try {
      driver.create(req, rolloutId);
      rollouts.push(rolloutId);
    } catch {
      // Nothing to roll out to (every host already carries it): no rollout.
    }
  };
  create();
  for (let step = 0; step < 40; step++) {
    const run: RolloutRun | undefined = rollouts.length ? driver.book.get(rng.pick(rollouts)) : undefined;
    const hostId = rng.pick(ids);
    const a = rng.int(100);
    if (a < 25 && run) {
      for (let i = 0; i < 200 && nextEvents(run, context()).length > 0; i++) write(nextEvents(run, context()));
    } else if (a < 50 && run) {
      const open = [...run.hosts.values()].filter(
        (h) => (h.revert && !h.revertOutcome) || (h.apply && !h.applyOutcome && !h.revert),
      );
      const h = open.length ? rng.pick(open) : undefined;
      if (h && h.revert && !h.revertOutcome) {
        const d = { hostId: h.hostId, commandId: h.revert.commandId, patchId: run.patchId, version: run.version };
        if (rng.chance(0.8)) driver.observe({ type: 'PatchReverted', data: make(events.PatchReverted, d) });
        else
          driver.observe({
            type: 'PatchRevertFailed',
            data: make(events.PatchRevertFailed, { ...d, stage: 'disable', error: 'busy' }),
          });
      } else if (h && h.apply) {
        const d = { hostId: h.hostId, commandId: h.apply.commandId, patchId: run.patchId, version: run.version };
        if (rng.chance(0.7))
          driver.observe({
            type: 'PatchApplied',
            data: make(events.PatchApplied, {
              ...d,
              moduleName: 'livepatch_cve_2024_1086',
              transitionMs: rng.chance(0.1) ? '120000' : '800',
              forced: rng.chance(0.1),
            }),
          });
        else
          driver.observe({
            type: 'PatchApplyFailed',
            data: make(events.PatchApplyFailed, { ...d, stage: 'transition', error: 'stalled', reverted: true }),
          });
      }
    } else if (a < 62) {
      driver.now += rng.int(rng.chance(0.2) ? 900_000 : 90_000);
    } else if (a < 68 && run) {
      const waiting = waveAwaitingApproval(run);
      if (waiting) tryWrite(() => approve(run, waiting.index, 'bob'));
    } else if (a < 72 && run) tryWrite(() => pause(run, 'looking at canary'));
    else if (a < 78 && run) tryWrite(() => resume(run));
    else if (a < 80 && run) tryWrite(() => abort(run, 'wrong patch'));
    else if (a < 82 && run) tryWrite(() => rollBack(run, 'regression'));
    else if (a < 86) {
      driver.observe({
        type: 'DriftDetected',
        data: make(events.DriftDetected, { hostId, kind: 'module-unloaded', detail: 'by hand' }),
      });
    } else if (a < 90) {
      driver.observe({
        type: 'HostBooted',
        data: make(events.HostBooted, { hostId, bootId: `b-${step}`, kernelRelease: RELEASE }),
      });
    } else if (a < 95) {
      const warned = rng.chance(0.5);
      driver.observe({
        type: 'HostInventoryReported',
        data: make(events.HostInventoryReported, {
          facts: { ...fleetFacts(hostId), tainted: warned ? '512' : '0', taintFlags: warned ? ['W'] : [] },
          patches: [],
        }),
      });
    } else if (rollouts.length < 3) create();
    record();
  }
  driveTo(driver, context, `s${s}-r${rollouts.length}`, end, rng);
  record();
  return driver;
}

/**
 * A rollout planned on the fleet and driven to `end`: hosts answer applied (or reverted), the
 * clock moves past soaks, waves are approved, a pause is resumed, until the rollout stands in
 * `end`. Its budgets are wide and its policy pauses, so that the earlier course cannot end it.
 */
function driveTo(
  driver: RolloutDriver,
  context: () => TickContext,
  rolloutId: string,
  end: RolloutStatus,
  rng: Prng,
): void {
  const wide = { waveFailureBudget: 100, totalFailureBudget: 100, onFailure: P.FAILURE_POLICY_PAUSE };
  const run = driver.create(
    request({
      strategy: strategy({
        canaryCount: rng.int(2),
        waves: rng.chance(0.5) ? [{ percent: 50 }, { percent: 50 }] : [{ percent: 100 }],
        soakSeconds: rng.pick([0, 30]),
        approvalBetweenWaves: rng.chance(0.5),
        ...wide,
      }),
    }),
    rolloutId,
  );
  const tick = () => {
    for (let i = 0; i < 200; i++) {
      const next = nextEvents(run, context());
      if (next.length === 0) return;
      next.forEach((e) => driver.write(e));
    }
  };
  const answer = () => {
    for (const h of run.hosts.values()) {
      if (h.revert && !h.revertOutcome) {
        const d = { hostId: h.hostId, commandId: h.revert.commandId, patchId: run.patchId, version: run.version };
        driver.observe({ type: 'PatchReverted', data: make(events.PatchReverted, d) });
      } else if (h.apply && !h.applyOutcome && !h.revert) {
        const d = { hostId: h.hostId, commandId: h.apply.commandId, patchId: run.patchId, version: run.version };
        driver.observe({
          type: 'PatchApplied',
          data: make(events.PatchApplied, { ...d, moduleName: 'livepatch_cve_2024_1086', transitionMs: '800' }),
        });
      }
    }
  };
  const step = () => {
    if (run.status === 'paused') resume(run).forEach((e) => driver.write(e));
    const waiting = waveAwaitingApproval(run);
    if (waiting) approve(run, waiting.index, 'bob').forEach((e) => driver.write(e));
    tick();
    answer();
    driver.now += 60_000;
    tick();
  };
  switch (end) {
    case 'running':
      tick();
      break;
    case 'paused':
      pause(run, 'looking at canary').forEach((e) => driver.write(e));
      break;
    case 'aborted':
      tick();
      abort(run, 'wrong patch').forEach((e) => driver.write(e));
      break;
    case 'rolling-back':
      step();
      rollBack(run, 'regression').forEach((e) => driver.write(e));
      break;
    case 'rolled-back':
      step();
      rollBack(run, 'regression').forEach((e) => driver.write(e));
      for (let i = 0; i < 50 && run.status !== 'rolled-back'; i++) step();
      break;
    case 'completed':
      for (let i = 0; i < 50 && run.status !== 'completed'; i++) step();
      break;
  }
  if (run.status !== end) throw new Error(`the generator drove ${rolloutId} to ${run.status}, not ${end}`);
}

function fleetFacts(hostId: string): events.HostFacts {
  return make(events.HostFacts, { hostId, hostname: hostId, kernelRelease: RELEASE, bootId: `boot-${hostId}` });
}

export function bodyOf(e: Entry, i: number): events.EventBody {
  const p = e.payload;
  const data = p.data as { rolloutId?: string; hostId?: string; facts?: { hostId: string } };
  const hostId = data.hostId ?? data.facts?.hostId;
  const onHost = p.type === 'HostApplyRequested' || p.type === 'HostRevertRequested' || !data.rolloutId;
  return {
    ...make(events.EventBody, {}),
    eventId: `e${i}`,
    type: p.type,
    stream: onHost ? `host/${hostId}` : `rollout/${data.rolloutId}`,
    occurredAt: toTimestamp(new Date(e.at)),
    correlationId: data.rolloutId ?? '',
    ...payloadFields(p),
  };
}
