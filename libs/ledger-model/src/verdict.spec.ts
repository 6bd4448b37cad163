import { cveExposure, fixPublications } from './exposure';
import { at, cve, fn, PatchSpec, published, RELEASE } from './test-support';
import { DAY_MS } from './time';
import { checkState, hostVerdict, LivePatch, missingPatches, VerdictInput } from './verdict';

const NF: PatchSpec = { patchId: 'nf-tables', version: '1', moduleName: 'lp_nf', functions: [fn('nft_verdict')] };
const NF2: PatchSpec = { ...NF, version: '2', moduleName: 'lp_nf_2' };
const CUMULATIVE: PatchSpec = {
  patchId: 'cumulative',
  version: '7',
  moduleName: 'lp_cumulative',
  functions: [fn('nft_verdict'), fn('udp_rcv')],
  replace: true,
};
const OTHER_KERNEL = '6.1.0-26-cloud-amd64';

const live = (p: PatchSpec, extra: Partial<LivePatch> = {}): LivePatch => ({
  patchId: p.patchId,
  version: p.version,
  moduleName: p.moduleName,
  live: true,
  forced: false,
  ...extra,
});

const catalog = [published(NF, [cve('CVE-2024-1086')], at(100))];

function given(input: Partial<VerdictInput> = {}): VerdictInput {
  return {
    kernelRelease: RELEASE,
    online: true,
    stack: [live(NF)],
    published: catalog,
    exposures: [],
    driftReported: false,
    asOf: at(200),
    deadlineDays: 30,
    ...input,
  };
}

/** The host's real exposure from its (empty) stack history: exposed since the fix's publication. */
function exposedSinceFix() {
  return cveExposure(
    {
      hostId: 'web-17',
      enrolledAt: at(0),
      enrolledEventId: 'ev-0',
      kernels: [{ release: RELEASE, from: at(0), eventId: 'ev-0' }],
      intervals: [],
    },
    fixPublications(catalog),
  );
}

describe('hostVerdict', () => {
  it('given every published patch for its kernel live, the host is up to date', () => {
    expect(hostVerdict(given())).toEqual({ verdict: 'up-to-date', reasons: [], missing: [] });
  });

  it('given a patch published for its kernel and not on its stack, the patch is missing', () => {
    const result = hostVerdict(given({ stack: [], exposures: exposedSinceFix() }));
    expect(result.verdict).toBe('patch-missing');
    expect(result.missing).toEqual([{ patchId: 'nf-tables', version: '1' }]);
    expect(result.reasons).toEqual([`published for ${RELEASE} and not live: nf-tables 1`]);
  });

  it('given the missing version quarantined by its agent, the patch is missing but upgrade would not send it', () => {
    const result = hostVerdict(
      given({ stack: [], exposures: exposedSinceFix(), quarantined: [{ patchId: 'nf-tables', version: '1' }] }),
    );
    expect(result).toEqual({
      verdict: 'patch-missing',
      reasons: [
        'quarantined by its agent, refused until an operator clears it (rebootless hosts clear-quarantine): nf-tables 1',
      ],
      missing: [],
    });
    // Another version quarantined holds nothing back.
    expect(
      hostVerdict(
        given({ stack: [], exposures: exposedSinceFix(), quarantined: [{ patchId: 'nf-tables', version: '0' }] }),
      ).missing,
    ).toEqual([{ patchId: 'nf-tables', version: '1' }]);
  });

  it('when the deadline passes with the CVE still exposed, the host is exposed past deadline', () => {
    const day31 = at(100) + 31 * DAY_MS;
    const result = hostVerdict(given({ stack: [], exposures: exposedSinceFix(), asOf: day31 }));
    expect(result.verdict).toBe('exposed-past-deadline');
    expect(result.reasons[0]).toBe('exposed past the 30-day deadline to CVE-2024-1086');
    // One day earlier it is only missing.
    expect(hostVerdict(given({ stack: [], exposures: exposedSinceFix(), asOf: day31 - 2 * DAY_MS })).verdict).toBe(
      'patch-missing',
    );
  });

  it('given a forced patch on the stack, a reboot is required', () => {
    expect(hostVerdict(given({ stack: [live(NF, { forced: true })] })).verdict).toBe('reboot-required');
  });

  it('given a module rebootless did not publish, or a drift report, the host drifted', () => {
    const byHand = hostVerdict(given({ stack: [live(NF), { ...live(NF), patchId: '', moduleName: 'by_hand' }] }));
    expect(byHand).toEqual({
      verdict: 'drift',
      reasons: ['live patch modules rebootless did not publish: by_hand'],
      missing: [],
    });
    expect(hostVerdict(given({ driftReported: true })).verdict).toBe('drift');
  });

  it('given an agent not heard from, the host is offline, and a worse verdict still shows first', () => {
    expect(hostVerdict(given({ online: false })).verdict).toBe('offline');
    const both = hostVerdict(
      given({ online: false, stack: [], exposures: exposedSinceFix(), asOf: at(100) + 40 * DAY_MS }),
    );
    expect(both.verdict).toBe('exposed-past-deadline');
    expect(both.reasons).toHaveLength(3);
  });
});

describe('missingPatches', () => {
  it('wants the newest version of each patch id built for the kernel, and only that one', () => {
    const patches = [published(NF, [], at(1)), published(NF2, [], at(2))];
    expect(missingPatches(RELEASE, [], patches)).toEqual([{ patchId: 'nf-tables', version: '2' }]);
    expect(missingPatches(RELEASE, [live(NF2)], patches)).toEqual([]);
    // An older version live still misses the newer.
    expect(missingPatches(RELEASE, [live(NF)], patches)).toEqual([{ patchId: 'nf-tables', version: '2' }]);
  });

  it('skips retracted versions and other kernels', () => {
    const patches = [
      published(NF, [], at(1)),
      published(NF2, [], at(2), { retracted: true }),
      published(CUMULATIVE, [], at(3), { releases: [OTHER_KERNEL] }),
    ];
    expect(missingPatches(RELEASE, [live(NF)], patches)).toEqual([]);
  });

  it('counts a patch in transition or disabled as not live', () => {
    expect(missingPatches(RELEASE, [live(NF, { live: false })], catalog)).toEqual([
      { patchId: 'nf-tables', version: '1' },
    ]);
  });

  it('given a cumulative patch published later live, an older patch is carried by it and not wanted', () => {
    const patches = [published(NF, [], at(1)), published(CUMULATIVE, [], at(5))];
    expect(missingPatches(RELEASE, [live(CUMULATIVE)], patches)).toEqual([]);
    // Published after the cumulative one: still wanted.
    const later = [published(CUMULATIVE, [], at(1)), published(NF, [], at(5))];
    expect(missingPatches(RELEASE, [live(CUMULATIVE)], later)).toEqual([{ patchId: 'nf-tables', version: '1' }]);
  });

  it('given a newer cumulative patch also missing, only it is wanted: it would disable the older ones', () => {
    const patches = [published(NF, [], at(1)), published(CUMULATIVE, [], at(5))];
    expect(missingPatches(RELEASE, [], patches)).toEqual([{ patchId: 'cumulative', version: '7' }]);
  });
});

describe('checkState', () => {
  it('is the worst of the hosts: CRITICAL, then UNKNOWN, then WARNING, then OK', () => {
    expect(checkState([])).toBe(0);
    expect(checkState(['up-to-date', 'patch-missing'])).toBe(1);
    expect(checkState(['patch-missing', 'offline'])).toBe(3);
    expect(checkState(['offline', 'drift', 'reboot-required'])).toBe(2);
  });
});
