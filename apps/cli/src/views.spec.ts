import { builder, events, ledger } from '@rebootless/contracts';
import { buildsTable, pciHostRows, selectorText, strategyText, time, undoPlanDetail } from './views';

const ts = (iso: string) => {
  const ms = Date.parse(iso);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
};

describe('views for people', () => {
  it('writes times in RFC 3339, whole seconds without a fraction, unset as "-"', () => {
    expect(time(ts('2026-11-22T08:00:00Z'))).toBe('2026-11-22T08:00:00Z');
    expect(time(ts('2026-11-22T08:00:00.250Z'))).toBe('2026-11-22T08:00:00.250Z');
    expect(time(undefined)).toBe('-');
    expect(time({ seconds: '0', nanos: 0 })).toBe('-');
  });

  it('lists builds with their kernels done out of all', () => {
    const build = {
      buildId: 'b-1',
      patchId: 'cve-1',
      version: '2',
      state: builder.BuildState.BUILD_STATE_FAILED,
      kernels: [{ state: builder.BuildState.BUILD_STATE_SUCCEEDED }, { state: builder.BuildState.BUILD_STATE_FAILED }],
      submittedAt: ts('2026-11-22T08:00:00Z'),
      submittedBy: { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '10.0.0.7:5000' },
    } as unknown as builder.Build;
    expect(buildsTable([build]).split('\n')).toEqual([
      'BUILD  PATCH  VERSION  STATE   KERNELS  SUBMITTED             BY',
      'b-1    cve-1  2        failed      1/2  2026-11-22T08:00:00Z  alice (10.0.0.7:5000)',
    ]);
    expect(buildsTable([])).toBe('no builds');
  });

  it('says which hosts a selector picks and what a strategy does', () => {
    expect(
      selectorText({ kernelReleases: ['6.1.0-18-cloud-amd64'], labels: { env: 'prod' }, hostIds: ['web-01'] }),
    ).toBe('kernel 6.1.0-18-cloud-amd64, env=prod, host web-01');
    expect(strategyText(undefined)).toBe("the dispatcher's default");
    expect(
      strategyText({
        canaryHostIds: [],
        canaryCount: 2,
        waves: [{ percent: 10 }, { count: 5 }],
        maxInFlight: 0,
        soakSeconds: 300,
        waveFailureBudget: 1,
        totalFailureBudget: 0,
        approvalBeforeFirstWave: true,
        approvalBetweenWaves: false,
        onFailure: events.FailurePolicy.FAILURE_POLICY_ROLL_BACK,
        applyTimeoutSeconds: 0,
        offlineDeadlineSeconds: 0,
      }),
    ).toBe(
      'canary 2, waves 10%,5, soak 5m, wave failure budget 1, approval before the first wave, on failure roll-back',
    );
  });

  it('writes the PCI report one row per host and CVE', () => {
    const report = {
      hosts: [
        {
          hostId: 'web-01',
          cveId: 'CVE-2024-1086',
          severity: events.Severity.SEVERITY_CRITICAL,
          status: ledger.ComplianceStatus.COMPLIANCE_STATUS_NON_COMPLIANT,
          exposedSince: ts('2026-10-01T00:00:00Z'),
          deadline: ts('2026-10-31T00:00:00Z'),
          fixedBy: undefined,
          reason: 'still exposed past the deadline',
        },
      ],
    } as unknown as ledger.ComplianceReportResponse;
    expect(pciHostRows(report)).toEqual([
      [
        'web-01',
        'CVE-2024-1086',
        'critical',
        'non-compliant',
        '2026-10-01T00:00:00Z',
        '2026-10-31T00:00:00Z',
        '-',
        '-',
        'still exposed past the deadline',
      ],
    ]);
  });

  it('shows an undo plan with the code each function falls back to', () => {
    const plan: ledger.PlanUndoResponse = {
      disableOrder: ledger.DisableOrder.DISABLE_ORDER_TOP_ONLY,
      steps: [
        {
          kind: ledger.UndoStepKind.UNDO_STEP_KIND_APPLY,
          moduleName: 'lp_fix__v1',
          patch: { patchId: 'fix', version: '1' },
          downgrade: true,
          detail: 'reload the previous cumulative patch',
        },
      ],
      functions: [
        {
          function: { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 },
          runsNow: { moduleName: 'lp_fix__v2', patch: { patchId: 'fix', version: '2' } },
          runsAfter: { moduleName: 'lp_fix__v1', patch: { patchId: 'fix', version: '1' } },
        },
      ],
      rebootRequired: false,
      warnings: ['the command needs --allow-downgrade'],
    };
    expect(undoPlanDetail('web-01', 'fix', plan).split('\n')).toEqual([
      'undo fix on web-01 (disable order: only the top of the stack (before 5.1))',
      '',
      'STEP  ACTION             MODULE      PATCH  DETAIL',
      '   1  apply (downgrade)  lp_fix__v1  fix 1  reload the previous cumulative patch',
      '',
      'FUNCTION           RUNS NOW            RUNS AFTER',
      'cmdline_proc_show  lp_fix__v2 (fix 2)  lp_fix__v1 (fix 1)',
      'warning: the command needs --allow-downgrade',
    ]);
  });
});
