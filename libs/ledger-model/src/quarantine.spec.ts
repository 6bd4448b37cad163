import { CRASH_LOOP_GUARD_STAGE, quarantinesAfter, type QuarantineFact } from './quarantine';

const guard = (eventId: string, at: number, version = '1'): QuarantineFact => ({
  type: 'PatchApplyFailed',
  eventId,
  at,
  patchId: 'crashy',
  version,
  stage: CRASH_LOOP_GUARD_STAGE,
  error: 'quarantined: the host went down 3 s after it was applied, without a planned stop',
});
const cleared = (eventId: string, at: number, version = '1'): QuarantineFact => ({
  type: 'PatchQuarantineCleared',
  eventId,
  at,
  patchId: 'crashy',
  version,
});

describe('quarantinesAfter', () => {
  it('Given the crash-loop guard recorded a patch, Then it is quarantined since then, with the guard’s reason', () => {
    expect(quarantinesAfter([guard('e1', 100)])).toEqual([
      {
        patchId: 'crashy',
        version: '1',
        reason: 'the host went down 3 s after it was applied, without a planned stop',
        since: 100,
        eventId: 'e1',
      },
    ]);
  });

  it('Given an apply that failed at another stage, Then nothing is quarantined', () => {
    expect(quarantinesAfter([{ ...guard('e1', 100), stage: 'transition', error: 'stalled' }])).toEqual([]);
  });

  it('Given a quarantine, When an operator cleared it, Then it is gone; only that version', () => {
    expect(quarantinesAfter([guard('e1', 100), guard('e2', 110, '2'), cleared('e3', 200)])).toEqual([
      expect.objectContaining({ version: '2', eventId: 'e2' }),
    ]);
  });

  it('Given a cleared quarantine, When the guard quarantines it again, Then it is quarantined from the new record', () => {
    expect(quarantinesAfter([guard('e1', 100), cleared('e2', 200), guard('e3', 300)])).toEqual([
      expect.objectContaining({ since: 300, eventId: 'e3' }),
    ]);
  });

  it('Given the guard recorded the same version twice, Then the first record stands', () => {
    expect(quarantinesAfter([guard('e1', 100), guard('e2', 150)])).toEqual([
      expect.objectContaining({ eventId: 'e1' }),
    ]);
  });
});
