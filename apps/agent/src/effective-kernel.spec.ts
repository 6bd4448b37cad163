import type { agent, events } from '@rebootless/contracts';
import { effectiveKernel } from './effective-kernel';

const RELEASE = '6.1.0-28-cloud-amd64';

function given(stack: Partial<events.LivePatchState>[], desired: Partial<agent.DesiredModule>[] = []) {
  return {
    facts: { kernelRelease: RELEASE } as events.HostFacts,
    stack: stack.map((p) => ({
      moduleName: '',
      enabled: true,
      transition: false,
      functions: [],
      objectsPatched: {},
      ...p,
    })),
    desired: [],
    quarantined: [],
    forcedModules: [],
    desiredModules: desired.map((d) => ({ moduleName: '', cveIds: [], live: true, ...d })),
    stalledTasks: [],
  } as agent.GetStatusResponse;
}

describe('effectiveKernel', () => {
  it('Given no live patch, Then it is the release alone, as uname -r says', () => {
    expect(effectiveKernel(given([])).effective).toBe(RELEASE);
  });

  it('Given patches this agent applied, Then each is named by patch id and version, oldest first', () => {
    const status = given(
      [{ moduleName: 'lp_a' }, { moduleName: 'lp_b' }],
      [
        { moduleName: 'lp_b', patch: { patchId: 'cve-2024-1086', version: '2' } },
        { moduleName: 'lp_a', patch: { patchId: 'cve-2023-0001', version: '1' } },
      ],
    );
    expect(effectiveKernel(status).effective).toBe(`${RELEASE}+cve-2023-0001-1+cve-2024-1086-2`);
  });

  it('Given a module loaded by hand, Then it is named by its module, never passed over', () => {
    expect(effectiveKernel(given([{ moduleName: 'livepatch_local_fix' }])).effective).toBe(
      `${RELEASE}+livepatch_local_fix`,
    );
  });

  it('Given a patch still in transition or disabled, Then it is not in effect', () => {
    const status = given([
      { moduleName: 'lp_on' },
      { moduleName: 'lp_patching', transition: true },
      { moduleName: 'lp_off', enabled: false },
    ]);
    expect(effectiveKernel(status)).toEqual({
      release: RELEASE,
      livePatches: [{ moduleName: 'lp_on' }],
      effective: `${RELEASE}+lp_on`,
    });
  });
});
