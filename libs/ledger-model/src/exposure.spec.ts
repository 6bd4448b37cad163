import { events } from '@rebootless/contracts';
import { patchCatalog } from './catalog';
import { cveExposure, ExposureInterval, fixPublications, HostHistory, KernelPeriod } from './exposure';
import {
  applied,
  at,
  booted,
  cve,
  fn,
  inventory,
  listed,
  PatchSpec,
  published,
  RELEASE,
  reverted,
  ScriptedHost,
} from './test-support';

const FIX: PatchSpec = { patchId: 'nf-tables', version: '1', moduleName: 'lp_nf', functions: [fn('nft_verdict')] };
const OTHER: PatchSpec = {
  patchId: 'other',
  version: '1',
  moduleName: 'lp_other',
  functions: [fn('udp_rcv')],
  replace: true,
};
const NEXT_KERNEL = '6.1.0-26-cloud-amd64';
const l = (p: PatchSpec) => listed(p.moduleName, p.functions);

const fixes = fixPublications([
  published(FIX, [cve('CVE-2024-1086'), cve('CVE-2024-0001', events.Severity.SEVERITY_LOW)], at(100)),
]);

function historyOf(
  host: ScriptedHost,
  kernels: KernelPeriod[] = [{ release: RELEASE, from: at(0), eventId: 'ev-0' }],
): HostHistory {
  return { hostId: 'web-17', enrolledAt: at(0), enrolledEventId: 'ev-0', kernels, intervals: host.history() };
}

const brief = (list: ExposureInterval[]) =>
  list.map((e) => [
    e.cveId,
    (e.exposedFrom - at(0)) / 60_000,
    e.exposedUntil === null ? null : (e.exposedUntil - at(0)) / 60_000,
    e.openedBy,
    e.closedBy,
  ]);

describe('CVE exposure of one host', () => {
  it('from the fix publication until the fix is live, again after a reboot until re-applied, again after a revert', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(200, applied(FIX, [l(FIX)]));
    host.fold(300, booted('boot-2'));
    host.fold(350, applied(FIX, [l(FIX)]));
    host.fold(400, reverted(FIX, []));
    const exposure = cveExposure(historyOf(host), fixes).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(exposure)).toEqual([
      ['CVE-2024-1086', 100, 200, 'fix-published', 'patched'],
      ['CVE-2024-1086', 300, 350, 'rebooted', 'patched'],
      ['CVE-2024-1086', 400, null, 'reverted', null],
    ]);
    expect(exposure[0]).toMatchObject({
      hostId: 'web-17',
      severity: events.Severity.SEVERITY_CRITICAL,
      kernelRelease: RELEASE,
      openedEventId: 'ev-published-nf-tables-1',
      closedEventId: 'ev-200',
      fixedBy: { patchId: 'nf-tables', version: '1' },
      fixPublishedAt: at(100),
      fixPublishedBy: { patchId: 'nf-tables', version: '1' },
    });
    expect(exposure[1]).toMatchObject({ openedEventId: 'ev-300', closedEventId: 'ev-350' });
    expect(exposure[2]).toMatchObject({ openedEventId: 'ev-400', closedEventId: null, fixedBy: null });
  });

  it('every CVE the fix names gets its own intervals, with its own severity', () => {
    const host = new ScriptedHost();
    host.fold(200, applied(FIX, [l(FIX)]));
    const exposure = cveExposure(historyOf(host), fixes);
    expect(brief(exposure)).toEqual([
      ['CVE-2024-0001', 100, 200, 'fix-published', 'patched'],
      ['CVE-2024-1086', 100, 200, 'fix-published', 'patched'],
    ]);
    expect(exposure[0]!.severity).toBe(events.Severity.SEVERITY_LOW);
  });

  it('a host enrolled after the publication is exposed from its enrollment', () => {
    const host = new ScriptedHost();
    const history = {
      ...historyOf(host, [{ release: RELEASE, from: at(150), eventId: 'ev-enroll' }]),
      enrolledAt: at(150),
      enrolledEventId: 'ev-enroll',
    };
    const exposure = cveExposure(history, fixes).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(exposure)).toEqual([['CVE-2024-1086', 150, null, 'enrolled', null]]);
    expect(exposure[0]!.openedEventId).toBe('ev-enroll');
  });

  it('a host patched before the fix was published is never exposed', () => {
    const host = new ScriptedHost();
    host.fold(50, applied(FIX, [l(FIX)]));
    expect(cveExposure(historyOf(host), fixes)).toEqual([]);
  });

  it('a host whose kernel has no published fix is not exposed, and booting such a kernel ends the exposure', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(250, booted('boot-2', NEXT_KERNEL));
    const kernels = [
      { release: RELEASE, from: at(0), eventId: 'ev-0' },
      { release: NEXT_KERNEL, from: at(250), eventId: 'ev-250' },
    ];
    const exposure = cveExposure(historyOf(host, kernels), fixes).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(exposure)).toEqual([['CVE-2024-1086', 100, 250, 'fix-published', 'kernel-changed']]);
    expect(exposure[0]!.closedEventId).toBe('ev-250');
  });

  it('booting into a kernel that has a published fix opens an exposure for it', () => {
    const both = fixPublications([
      published(FIX, [cve('CVE-2024-1086')], at(100), { releases: [RELEASE, NEXT_KERNEL] }),
    ]);
    const host = new ScriptedHost();
    host.fold(200, applied(FIX, [l(FIX)]));
    host.fold(300, booted('boot-2', NEXT_KERNEL));
    const kernels = [
      { release: RELEASE, from: at(0), eventId: 'ev-0' },
      { release: NEXT_KERNEL, from: at(300), eventId: 'ev-300' },
    ];
    const exposure = cveExposure(historyOf(host, kernels), both);
    expect(exposure.map((e) => [e.kernelRelease, (e.exposedFrom - at(0)) / 60_000, e.openedBy])).toEqual([
      [RELEASE, 100, 'fix-published'],
      [NEXT_KERNEL, 300, 'rebooted'],
    ]);
  });

  it('an atomic replace by a patch without the fix exposes the host again', () => {
    const host = new ScriptedHost();
    host.fold(200, applied(FIX, [l(FIX)]));
    host.fold(260, applied(OTHER, [l(OTHER)]));
    const exposure = cveExposure(historyOf(host), fixes).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(exposure)).toEqual([
      ['CVE-2024-1086', 100, 200, 'fix-published', 'patched'],
      ['CVE-2024-1086', 260, null, 'replaced', null],
    ]);
  });

  it('a patch carrying the CVE in its interval (from the catalog) fixes it whatever its version', () => {
    const catalog = patchCatalog([
      published({ ...FIX, version: '7' }, [cve('CVE-2024-1086')], at(10), { releases: ['other'] }),
    ]);
    const host = new ScriptedHost();
    host.fold(180, applied({ ...FIX, version: '7' }, [l(FIX)]), { catalog });
    const exposure = cveExposure(historyOf(host), fixes).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(exposure)).toEqual([['CVE-2024-1086', 100, 180, 'fix-published', 'patched']]);
  });

  it('as of an earlier instant, what happened later is not known yet', () => {
    const host = new ScriptedHost();
    host.fold(200, applied(FIX, [l(FIX)]));
    expect(cveExposure(historyOf(host), fixes, at(50))).toEqual([]);
    const early = cveExposure(historyOf(host), fixes, at(150)).filter((e) => e.cveId === 'CVE-2024-1086');
    expect(brief(early)).toEqual([['CVE-2024-1086', 100, null, 'fix-published', null]]);
  });

  it('a fix still being enabled does not protect yet', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(200, inventory('boot-1', [listed(FIX.moduleName, FIX.functions, { transition: true })]));
    host.fold(230, inventory('boot-1', [l(FIX)]));
    const catalogued = host.history().map((i) => ({ ...i, patchId: FIX.patchId, version: FIX.version }));
    const exposure = cveExposure({ ...historyOf(host), intervals: catalogued }, fixes).filter(
      (e) => e.cveId === 'CVE-2024-1086',
    );
    expect(brief(exposure)).toEqual([['CVE-2024-1086', 100, 230, 'fix-published', 'patched']]);
    expect(exposure[0]!.closedEventId).toBe('ev-230');
  });

  it('retracted patches publish no fix', () => {
    expect(fixPublications([published(FIX, [cve('CVE-1')], at(1), { retracted: true })])).toEqual([]);
    expect(
      fixPublications([published(FIX, [cve('CVE-1')], at(1), { releases: ['a', 'b'] })]).map((f) => f.kernelRelease),
    ).toEqual(['a', 'b']);
  });
});
