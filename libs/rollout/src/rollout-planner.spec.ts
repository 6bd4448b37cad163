import { RolloutInputError, RolloutPreconditionError } from './errors';
import { planRollout } from './rollout-planner';
import { catalogWith, fleetOf, hostIds, request, RELEASE, strategy } from './test-fleet';

describe('planRollout', () => {
  const fleet = fleetOf(hostIds(8));

  it('records the plan: patch, selection, effective strategy and waves', () => {
    const created = planRollout('r1', request({ strategy: strategy({ canaryCount: 2 }) }), fleet, catalogWith());
    expect(created).toMatchObject({ rolloutId: 'r1', patchId: 'cve-2024-1086', version: '1', skippedHostIds: [] });
    expect(created.waves.map((w) => w.hostIds.length)).toEqual([2, 6]);
  });

  it('takes the latest published version when none is named', () => {
    const catalog = catalogWith('p', '1');
    catalog.patchPublished({
      patchId: 'p',
      version: '2',
      buildId: 'b2',
      artifacts: [{ kernelRelease: RELEASE, artifactDigest: 'd', vermagic: '' }],
      cves: [],
      replace: false,
      severity: 0,
      patchName: 'p',
    });
    expect(planRollout('r1', request({ patchId: 'p', version: '' }), fleet, catalog).version).toBe('2');
  });

  it('refuses an unknown patch, an unknown version and a retracted one', () => {
    const catalog = catalogWith('p', '1');
    expect(() => planRollout('r1', request({ patchId: '' }), fleet, catalog)).toThrow(
      new RolloutInputError('patch_id', 'is required'),
    );
    expect(() => planRollout('r1', request({ patchId: 'nope' }), fleet, catalog)).toThrow(
      new RolloutPreconditionError('patch nope is not published (the log has no PatchPublished for it)'),
    );
    expect(() => planRollout('r1', request({ patchId: 'p', version: '9' }), fleet, catalog)).toThrow(
      'patch p has no published version 9; published: 1',
    );
    catalog.patchRetracted({ patchId: 'p', version: '1', reason: 'oops on arm' });
    expect(() => planRollout('r1', request({ patchId: 'p', version: '1' }), fleet, catalog)).toThrow(
      'patch p version 1 was retracted: oops on arm',
    );
  });
});
