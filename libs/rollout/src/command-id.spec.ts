// A driver that lost its lease can still have a write on its way (docs/adr/0025): the instance
// that took the rollout over decides from a log without it. These specs show that both name the
// same command, and that every reader folds it once, whichever copy comes first.
import { rollBack } from './rollout-decider';
import type { RolloutEvent } from './rollout-state';
import { catalogWith, fleetOf, hostIds, request, RolloutDriver, strategy } from './test-fleet';

const HOSTS = hostIds(6);

function driver(): RolloutDriver {
  return new RolloutDriver(fleetOf(HOSTS), catalogWith());
}

/** Another instance that read the same log: every step and fact, in order. */
function replica(of: RolloutDriver): RolloutDriver {
  const d = driver();
  for (const l of of.log) {
    d.now = l.at;
    d.write(l.event);
  }
  for (const f of of.facts) {
    d.now = f.at;
    d.observe(f.fact);
  }
  d.now = of.now;
  return d;
}

function commands(written: readonly RolloutEvent[]): [string, string][] {
  return written.flatMap((e) =>
    e.type === 'HostApplyRequested' || e.type === 'HostRevertRequested'
      ? [[e.data.hostId, e.data.commandId] as [string, string]]
      : [],
  );
}

/** Given a rollout whose canary answered, the first driver decides the wave after it. */
function canaryAnswered(): RolloutDriver {
  const a = driver();
  a.create(request({ strategy: strategy({ canaryCount: 1, waves: [{ percent: 100 }] }) }));
  a.settle();
  a.answerAll();
  return a;
}

/**
 * The first driver decides the wave after the canary but its write is late (`late`); the second,
 * a replica of the log without it, decides the same wave 5 s later (`taken`, folded into `b`).
 */
function decidedTwice() {
  const a = canaryAnswered();
  const b = replica(a);
  const late = a.settle();
  b.now += 5_000;
  const taken = b.settle();
  return { a, b, late, taken };
}

describe('a command decided twice (a late write of a driver that lost its lease)', () => {
  it('has the same id from both drivers, though they decided at different times', () => {
    const { late, taken } = decidedTwice();

    expect(commands(late)).toHaveLength(5);
    expect(commands(taken)).toEqual(commands(late));
    // Ids shaped as UUIDs (version 8), as the agent and the ledger store them.
    for (const [, id] of commands(late))
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('is folded once by a reader that sees the late copy after the answers: nothing is asked again, no answer undone', () => {
    const { b, late } = decidedTwice();
    b.answerAll();

    // The late copy lands after the new driver's commands were answered.
    b.now += 1_000;
    for (const e of late) b.write(e);
    const run = b.book.get('r1')!;
    expect([...run.hosts.values()].filter((h) => h.applyOutcome?.kind !== 'applied').map((h) => h.hostId)).toEqual([]);
    // The wave started when the driver that took over started it, not when the copy came.
    expect(run.waves[1]!.startedAt).toBe(b.now - 1_000);
    // The rollout completes with every host asked once.
    const rest = b.settle();
    expect(rest.map((e) => e.type)).toEqual(['WaveCompleted', 'RolloutCompleted']);
    expect(run.status).toBe('completed');
    const asked = new Map<string, Set<string>>();
    for (const [host, id] of commands(b.log.map((l) => l.event)))
      asked.set(host, (asked.get(host) ?? new Set()).add(id));
    expect([...asked.values()].map((ids) => ids.size)).toEqual(HOSTS.map(() => 1));
  });

  it('is folded the same by a reader that sees the late copy first', () => {
    const { a, b, late, taken } = decidedTwice();

    const first = replica(a);
    for (const e of late) first.write(e);
    for (const e of taken) first.write(e);
    const run = first.book.get('r1')!;
    for (const [hostId, id] of commands(late)) expect(run.hosts.get(hostId)!.apply!.commandId).toBe(id);
    expect(first.openCommands()).toEqual(b.openCommands());
  });
});

describe("each of a host's commands", () => {
  it('has its own id: the roll-back that follows an apply is a new command, named alike by any driver', () => {
    const a = canaryAnswered();
    a.settle();
    a.answerAll();
    const applies = commands(a.log.map((l) => l.event));
    const run = a.book.get('r1')!;
    for (const e of rollBack(run, 'bad patch')) a.write(e);
    const b = replica(a);
    const reverts = a.settle();
    expect(commands(b.settle())).toEqual(commands(reverts));

    const ids = [...applies, ...commands(reverts)].map(([, id]) => id);
    expect(new Set(ids).size).toBe(ids.length);
    // The newest wave first: its five hosts.
    expect(commands(reverts)).toHaveLength(5);
  });

  it('differs between rollouts of the same patch on the same host', () => {
    const a = driver();
    a.create(request({ strategy: strategy({ canaryCount: 0 }) }), 'r1');
    a.create(request({ strategy: strategy({ canaryCount: 0 }) }), 'r2');
    const one = commands(a.settle('r1'));
    const two = commands(a.settle('r2'));
    expect(one.map(([h]) => h)).toEqual(two.map(([h]) => h));
    expect(one.filter(([h, id]) => two.some(([h2, id2]) => h2 === h && id2 === id))).toEqual([]);
  });
});
