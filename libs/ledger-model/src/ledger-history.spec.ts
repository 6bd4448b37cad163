// The scripted history, end to end through the pure rules: enroll, apply, stack a second
// patch, atomic replace, disable a middle patch, reboot, re-apply; then stacks at past instants,
// undo plans and compliance findings, as LedgerService would answer them.
import { events } from '@rebootless/contracts';
import { patchCatalog, PublishedPatch } from './catalog';
import { complianceReport } from './compliance';
import { cveExposure, fixPublications } from './exposure';
import { effectiveKernel, liveFunctions } from './live-functions';
import { stackAt } from './stack';
import {
  applied,
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
  T0,
} from './test-support';
import { planUndo, previousCumulativeOnHost } from './undo';
import { DAY_MS } from './time';

const d = (days: number) => T0 + days * DAY_MS;
const minutes = (days: number) => (days * DAY_MS) / 60_000;

const FIX_A: PatchSpec = { patchId: 'fix-a', version: '1', moduleName: 'lp_fix_a', functions: [fn('nft_verdict')] };
const FIX_B: PatchSpec = { patchId: 'fix-b', version: '1', moduleName: 'lp_fix_b', functions: [fn('udp_rcv')] };
const CUM1: PatchSpec = {
  patchId: 'cumulative',
  version: '1',
  moduleName: 'lp_cumulative_1',
  functions: [fn('nft_verdict'), fn('udp_rcv'), fn('tcp_v4_rcv')],
  replace: true,
};
const CUM2: PatchSpec = {
  ...CUM1,
  version: '2',
  moduleName: 'lp_cumulative_2',
  functions: [...CUM1.functions, fn('ext4_write')],
};
const FIX_D: PatchSpec = { patchId: 'fix-d', version: '1', moduleName: 'lp_fix_d', functions: [fn('ext4_write')] };
const FIX_E: PatchSpec = { patchId: 'fix-e', version: '1', moduleName: 'lp_fix_e', functions: [fn('tcp_v4_rcv')] };

const patches: PublishedPatch[] = [
  published(FIX_A, [cve('CVE-A')], d(1)),
  published(FIX_B, [cve('CVE-B')], d(5)),
  published(CUM1, [cve('CVE-A'), cve('CVE-B'), cve('CVE-C')], d(10)),
  published(FIX_D, [cve('CVE-D')], d(15)),
  published(FIX_E, [cve('CVE-E', events.Severity.SEVERITY_HIGH)], d(17)),
  published(CUM2, [cve('CVE-A'), cve('CVE-B'), cve('CVE-C'), cve('CVE-D')], d(30)),
];
const catalog = patchCatalog(patches);
const l = (p: PatchSpec) => listed(p.moduleName, p.functions);

function history(): ScriptedHost {
  const host = new ScriptedHost();
  const at = (day: number, fact: Parameters<ScriptedHost['fold']>[1]) => host.fold(minutes(day), fact, { catalog });
  at(0, inventory('boot-1', []));
  at(3, applied(FIX_A, [l(FIX_A)]));
  at(6, applied(FIX_B, [l(FIX_A), l(FIX_B)]));
  at(12, applied(CUM1, [l(CUM1)]));
  at(16, applied(FIX_D, [l(CUM1), l(FIX_D)]));
  at(18, applied(FIX_E, [l(CUM1), l(FIX_D), l(FIX_E)]));
  at(20, reverted(FIX_D, [l(CUM1), l(FIX_E)]));
  at(25, booted('boot-2'));
  at(26, applied(CUM1, [l(CUM1)]));
  at(31, applied(CUM2, [l(CUM2)]));
  return host;
}

describe('a host through the scripted history', () => {
  const host = history();
  const intervals = host.history();
  const names = (day: number) => stackAt(intervals, d(day)).map((e) => `${e.patchId} ${e.version}`);

  it('has the expected stack at chosen past instants', () => {
    expect(names(2)).toEqual([]);
    expect(names(4)).toEqual(['fix-a 1']);
    expect(names(7)).toEqual(['fix-a 1', 'fix-b 1']);
    expect(names(13)).toEqual(['cumulative 1']);
    expect(names(19)).toEqual(['cumulative 1', 'fix-d 1', 'fix-e 1']);
    expect(names(21)).toEqual(['cumulative 1', 'fix-e 1']);
    expect(names(25.5)).toEqual([]);
    expect(names(27)).toEqual(['cumulative 1']);
    expect(names(40)).toEqual(['cumulative 2']);
  });

  it('says at day 19 which code runs and what the kernel is', () => {
    const at19 = stackAt(intervals, d(19));
    expect(effectiveKernel(RELEASE, at19)).toBe('6.1.0-18-cloud-amd64 + cumulative 1 (replace) + fix-d 1 + fix-e 1');
    expect(liveFunctions(at19).map((f) => `${f.function.name}=${f.runs.moduleName}`)).toEqual([
      'ext4_write=lp_fix_d',
      'nft_verdict=lp_cumulative_1',
      'tcp_v4_rcv=lp_fix_e',
      'udp_rcv=lp_cumulative_1',
    ]);
    expect(at19.map((e) => e.cves.map((c) => c.id).join('+'))).toEqual(['CVE-A+CVE-B+CVE-C', 'CVE-D', 'CVE-E']);
  });

  it('plans the undo of the middle patch at day 19 by the kernel rule', () => {
    const stack = stackAt(intervals, d(19));
    const any = planUndo({ hostId: 'web-17', stack, patchId: 'fix-d', kernelRelease: RELEASE });
    expect(any.steps.map((s) => `${s.kind} ${s.moduleName}`)).toEqual(['disable lp_fix_d', 'remove-module lp_fix_d']);
    expect(
      any.functions.map(
        (f) => `${f.function.name}: ${f.runsNow.moduleName} -> ${f.runsAfter.moduleName || 'original'}`,
      ),
    ).toEqual(['ext4_write: lp_fix_d -> original']);
    const topOnly = planUndo({ hostId: 'web-17', stack, patchId: 'fix-d', kernelRelease: '4.19.0-27-amd64' });
    expect(topOnly.steps.map((s) => `${s.kind} ${s.moduleName}`)).toEqual([
      'disable lp_fix_e',
      'remove-module lp_fix_e',
      'disable lp_fix_d',
      'remove-module lp_fix_d',
      'apply lp_fix_e',
    ]);
  });

  it('undoes the second cumulative by loading the first again, the one the history says it replaced', () => {
    const target = host.stack.entries[0]!;
    const plan = planUndo({
      hostId: 'web-17',
      stack: host.stack.entries,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
      earlierCumulatives: patches,
      replacedOnHost: previousCumulativeOnHost(intervals, target),
    });
    expect(plan.previousCumulative).toEqual({ patchId: 'cumulative', version: '1' });
    expect(plan.steps[0]).toMatchObject({ kind: 'apply', moduleName: 'lp_cumulative_1', downgrade: true });
    expect(plan.functions.find((f) => f.function.name === 'ext4_write')!.runsAfter.moduleName).toBe('');
    expect(plan.warnings).toContain('after the downgrade the host is exposed again to CVE-D');
  });

  it('the first cumulative had nothing cumulative before it on this host: the plan says so', () => {
    const at27 = stackAt(intervals, d(27));
    const plan = planUndo({
      hostId: 'web-17',
      stack: at27,
      patchId: 'cumulative',
      kernelRelease: RELEASE,
      earlierCumulatives: patches,
    });
    expect(plan.previousCumulative).toBeNull();
    expect(plan.warnings[0]).toMatch(/^no earlier cumulative patch is known/);
  });

  const exposures = cveExposure(
    {
      hostId: 'web-17',
      enrolledAt: d(0),
      enrolledEventId: 'ev-0',
      kernels: [{ release: RELEASE, from: d(0), eventId: 'ev-0' }],
      intervals,
    },
    fixPublications(patches),
  );

  it('was exposed to each CVE from its fix until a fix was live, and again after the revert and the reboot', () => {
    const of = (id: string) =>
      exposures
        .filter((e) => e.cveId === id)
        .map((e) => [
          (e.exposedFrom - T0) / DAY_MS,
          e.exposedUntil === null ? null : (e.exposedUntil - T0) / DAY_MS,
          e.openedBy,
        ]);
    expect(of('CVE-A')).toEqual([
      [1, 3, 'fix-published'],
      [25, 26, 'rebooted'],
    ]);
    expect(of('CVE-C')).toEqual([
      [10, 12, 'fix-published'],
      [25, 26, 'rebooted'],
    ]);
    expect(of('CVE-D')).toEqual([
      [15, 16, 'fix-published'],
      [20, 31, 'reverted'],
    ]);
    expect(of('CVE-E')).toEqual([
      [17, 18, 'fix-published'],
      [25, null, 'rebooted'],
    ]);
  });

  it('is compliant at day 40 and not at day 60 for CVE-E (high) when highs are in scope; CVE-D was fixed in time after its revert', () => {
    const scope = [events.Severity.SEVERITY_CRITICAL, events.Severity.SEVERITY_HIGH];
    const at40 = complianceReport(exposures, { asOf: d(40), severities: scope });
    expect(at40.rows.map((r) => `${r.cveId} ${r.status}`)).toEqual([
      'CVE-A compliant',
      'CVE-B compliant',
      'CVE-C compliant',
      'CVE-D compliant',
      'CVE-E compliant',
    ]);
    const at60 = complianceReport(exposures, { asOf: d(60), severities: scope });
    const e = at60.rows.find((r) => r.cveId === 'CVE-E')!;
    expect(e).toMatchObject({ status: 'non-compliant', exposedSince: d(25), deadline: d(55), fixedAt: null });
    expect(e.evidence.map((x) => x.eventId)).toEqual([
      'ev-published-fix-e-1',
      `ev-${minutes(18)}`,
      `ev-${minutes(25)}`,
    ]);
    // The default scope (critical only) leaves CVE-E out.
    expect(complianceReport(exposures, { asOf: d(60) }).rows.map((r) => r.cveId)).toEqual([
      'CVE-A',
      'CVE-B',
      'CVE-C',
      'CVE-D',
    ]);
  });
});
