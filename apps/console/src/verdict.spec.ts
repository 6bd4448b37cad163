import { hostVerdict, type Fix, type HostFacts } from './verdict';

const NOW = new Date('2026-12-06T00:00:00Z');
const DAY = 86_400_000;
const RELEASE = '6.1.0-18-cloud-amd64';

function given(host: Partial<HostFacts> = {}): HostFacts {
  return { kernelRelease: RELEASE, online: true, rebootRequired: false, entries: [], ...host };
}

function fix(overrides: Partial<Fix> = {}): Fix {
  return {
    patchId: 'cve-2024-1086',
    version: '1',
    kernelReleases: [RELEASE],
    cveIds: ['CVE-2024-1086'],
    publishedAt: new Date(NOW.getTime() - 2 * DAY),
    retracted: false,
    ...overrides,
  };
}

const carrying = (cveIds: string[], patchId = 'cve-2024-1086') => ({
  moduleName: 'lp_fix',
  ...(patchId ? { patchId } : {}),
  state: 'STACK_ENTRY_STATE_ENABLED',
  cveIds,
});

describe('hostVerdict', () => {
  it('given no fix for its kernel, the host is up to date', () => {
    expect(hostVerdict(given(), [fix({ kernelReleases: ['5.10.0-1-amd64'] })], NOW, 30).verdict).toBe('up-to-date');
  });

  it('given a fix published two days ago and not live, a patch is missing, with the exposure since its publication', () => {
    const v = hostVerdict(given(), [fix()], NOW, 30);
    expect(v.verdict).toBe('patch-missing');
    expect(v.missing).toEqual([
      expect.objectContaining({ cveId: 'CVE-2024-1086', since: new Date(NOW.getTime() - 2 * DAY) }),
    ]);
  });

  it('given the fix live, the host is up to date', () => {
    expect(hostVerdict(given({ entries: [carrying(['CVE-2024-1086'])] }), [fix()], NOW, 30).verdict).toBe('up-to-date');
  });

  it('given a disabled fix, the host is still exposed', () => {
    const entry = { ...carrying(['CVE-2024-1086']), state: 'STACK_ENTRY_STATE_DISABLED' };
    expect(hostVerdict(given({ entries: [entry] }), [fix()], NOW, 30).verdict).toBe('patch-missing');
  });

  it('given the fix published longer ago than the deadline, the host is exposed past its deadline', () => {
    const old = fix({ publishedAt: new Date(NOW.getTime() - 31 * DAY) });
    expect(hostVerdict(given(), [old], NOW, 30).verdict).toBe('exposed-past-deadline');
  });

  it('counts the deadline from the first fix published, not from a later version', () => {
    const v = hostVerdict(
      given(),
      [
        fix({ version: '2', publishedAt: new Date(NOW.getTime() - DAY) }),
        fix({ publishedAt: new Date(NOW.getTime() - 40 * DAY) }),
      ],
      NOW,
      30,
    );
    expect(v.verdict).toBe('exposed-past-deadline');
    expect(v.missing[0]?.version).toBe('1');
  });

  it('ignores retracted fixes', () => {
    expect(hostVerdict(given(), [fix({ retracted: true })], NOW, 30).verdict).toBe('up-to-date');
  });

  it('given a live module rebootless never published, the host has drifted', () => {
    const v = hostVerdict(given({ entries: [carrying([], '')] }), [], NOW, 30);
    expect(v).toEqual({ verdict: 'drift', missing: [], unknownModules: ['lp_fix'] });
  });

  it('given a forced patch, the host needs a reboot', () => {
    expect(hostVerdict(given({ rebootRequired: true }), [], NOW, 30).verdict).toBe('reboot-required');
  });

  it('given a silent agent, the host is offline whatever else is known', () => {
    expect(hostVerdict(given({ online: false, rebootRequired: true }), [fix()], NOW, 30).verdict).toBe('offline');
  });
});
