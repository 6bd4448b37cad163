import { events } from '@rebootless/contracts';
import { RolloutDriver, catalogWith, fleetOf, hostIds, make, request } from './test-fleet';
import { RolloutBook, type HostFactEvent, runRecord } from './rollout-state';

/** A rollout on three hosts whose canary got its command, as the dispatcher wrote it; answered if asked. */
function writtenRollout(answered: boolean) {
  const driver = new RolloutDriver(fleetOf(hostIds(3)), catalogWith());
  driver.create(request());
  driver.settle();
  driver.now += 1000;
  if (answered) driver.applied(driver.requestedHosts()[0]!);
  return { driver };
}

const snapshot = (book: RolloutBook, id = 'r1') => {
  const run = book.get(id)!;
  return { record: runRecord(run), hosts: [...run.hosts.values()] };
};

describe('a reader that sees a command before its rollout (another partition)', () => {
  it('folds the command and its answer once the rollout is created, as the dispatcher did', () => {
    // Given the dispatcher's log: RolloutCreated, WaveStarted, HostApplyRequested..., then an answer
    const { driver } = writtenRollout(true);
    const own = driver.log.map((l) => l);
    const commands = own.filter((l) => l.event.type === 'HostApplyRequested');
    const rest = own.filter((l) => l.event.type !== 'HostApplyRequested');
    // When another reader reads the host partitions first (commands, then the answer), then the rollout's
    const reader = new RolloutBook({ keepOutcomes: 'for-waiting-steps' });
    for (const c of commands) expect(reader.evolve(c.event, { at: c.at })).toBeUndefined();
    for (const f of driver.facts) reader.observe(f.fact, { at: f.at });
    for (const r of rest) reader.evolve(r.event, { at: r.at });
    // Then its rollout is the dispatcher's, the answered host succeeded
    expect(snapshot(reader)).toEqual(snapshot(driver.book));
    expect(reader.takeLeftoverChanges().every(([, value]) => value === '')).toBe(true);
  });

  it("sees the host's facts after the command in their order, as a reader that read the rollout first", () => {
    // Given the canary's command, a warning read before its answer, the answer, then a drift
    const { driver } = writtenRollout(false);
    const hostId = driver.requestedHosts()[0]!;
    const warned = make(events.HostFacts, { hostId, tainted: '512', taintFlags: ['W'] });
    driver.observe({ type: 'HostInventoryReported', data: make(events.HostInventoryReported, { facts: warned }) });
    driver.applied(hostId);
    driver.observe({
      type: 'DriftDetected',
      data: make(events.DriftDetected, { hostId, kind: 'module-unloaded', detail: 'by hand' }),
    });
    const commands = driver.log.filter((l) => l.event.type === 'HostApplyRequested');
    const rest = driver.log.filter((l) => l.event.type !== 'HostApplyRequested');
    // When a reader reads the host's partition to its end before the rollout's
    const reader = new RolloutBook({ keepOutcomes: 'for-waiting-steps' });
    for (const c of commands) reader.evolve(c.event, { at: c.at });
    for (const f of driver.facts) reader.observe(f.fact, { at: f.at });
    const waiting = new Map(reader.takeLeftoverChanges());
    for (const r of rest) reader.evolve(r.event, { at: r.at });
    // Then the warning, the answer and the drift waited after the command, in that order, and the
    // rollout is the dispatcher's: the warning came before the answer and is not the host's issue
    expect(
      (JSON.parse(waiting.get('early/r1')!) as Record<string, object[]>)[hostId]!.map((w) => Object.keys(w).sort()[0]),
    ).toEqual(['event', 'at', 'commandId', 'at']);
    expect(snapshot(reader)).toEqual(snapshot(driver.book));
    expect(reader.get('r1')!.hosts.get(hostId)!.issue?.what).toBe('drift (module-unloaded): by hand');
  });

  it('keeps no answer to a command that will never come', () => {
    // Given a reader's book
    const reader = new RolloutBook({ keepOutcomes: 'for-waiting-steps' });
    // When an agent answers a command no rollout sent
    reader.observe(
      { type: 'PatchApplied', data: make(events.PatchApplied, { hostId: 'h', commandId: 'cmd-elsewhere' }) },
      { at: 1 },
    );
    // Then nothing waits for it
    expect(reader.takeLeftoverChanges()).toEqual([]);
  });
});

describe('a book taken back from its records', () => {
  it('goes on as the book it was stored from', () => {
    // Given a rollout whose canary got its command, stored as records
    const { driver } = writtenRollout(false);
    const { record, hosts } = snapshot(driver.book);
    const restored = new RolloutBook();
    restored.restore(JSON.parse(JSON.stringify(record)), JSON.parse(JSON.stringify(hosts)));
    // When the canary answers in both
    const hostId = driver.requestedHosts()[0]!;
    const commandId = driver.openCommands().get(hostId)!;
    const answer: HostFactEvent = {
      type: 'PatchApplyFailed',
      data: make(events.PatchApplyFailed, { hostId, commandId, stage: 'load', error: 'vermagic' }),
    };
    restored.observe(answer, { at: driver.now });
    driver.observe(answer);
    // Then the restored book matched the answer to its command, as the original did
    expect(snapshot(restored)).toEqual(snapshot(driver.book));
    expect(restored.get('r1')!.hosts.get(hostId)!.applyOutcome?.kind).toBe('apply-failed');
  });
});

describe('an answer from another host than the one the command was sent to (issue 16)', () => {
  const answerFrom = (hostId: string, commandId: string): HostFactEvent => ({
    type: 'PatchApplied',
    data: make(events.PatchApplied, { hostId, commandId, moduleName: 'lp_forged' }),
  });

  it('is no outcome of the command: the host it was sent to still waits', () => {
    // Given a rollout whose canary got its command
    const { driver } = writtenRollout(false);
    const canary = driver.requestedHosts()[0]!;
    const commandId = driver.openCommands().get(canary)!;
    // When another host (one the rollout does not even name) says it applied that command
    const changed = driver.book.observe(answerFrom('evil-01', commandId), { at: driver.now });
    // Then nothing changed: the canary has no outcome
    expect(changed).toEqual([]);
    expect(driver.book.get('r1')!.hosts.get(canary)!.applyOutcome).toBeUndefined();
  });

  it('is no outcome either when it was read before the command (another partition)', () => {
    // Given the dispatcher's log, its commands read after a forged answer to one of them
    const { driver } = writtenRollout(false);
    const canary = driver.requestedHosts()[0]!;
    const commandId = driver.openCommands().get(canary)!;
    const reader = new RolloutBook();
    reader.observe(answerFrom('evil-01', commandId), { at: driver.now });
    for (const l of driver.log) reader.evolve(l.event, { at: l.at });
    // Then the canary still waits, as in the dispatcher's own book
    expect(reader.get('r1')!.hosts.get(canary)!.applyOutcome).toBeUndefined();
    expect(snapshot(reader)).toEqual(snapshot(driver.book));
    // And its own answer still counts
    reader.observe(answerFrom(canary, commandId), { at: driver.now });
    expect(reader.get('r1')!.hosts.get(canary)!.applyOutcome?.kind).toBe('applied');
  });
});
