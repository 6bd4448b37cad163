import { builder, dispatcher, events } from '@rebootless/contracts';
import { parseArgs, type ParsedCommand } from './args';
import { CLI } from './commands';
import {
  createRolloutRequest,
  enumLabel,
  parseCve,
  parseStates,
  parseWaves,
  parseWindow,
  rolloutStrategy,
  submitBuildRequest,
} from './flags';

const flagsOf = (line: string) => (parseArgs(line.split(' ').filter(Boolean), CLI) as ParsedCommand).flags;

describe('rollout create flags → CreateRolloutRequest', () => {
  it('maps selector and strategy flags onto HostSelector and RolloutStrategy', () => {
    const request = createRolloutRequest(
      flagsOf(
        'rollout create --patch cve-1 --version 2 --kernel 6.1.0-18-cloud-amd64 --kernel 6.1.0-20-cloud-amd64 --label env=prod --label dc=ams ' +
          '--host web-01 --canary 2 --canary-host web-07 --waves 10%,40%,50% --max-in-flight 5 --soak 5m --failure-budget 1 ' +
          '--total-failure-budget 3 --require-approval --approve-each-wave --on-failure rollback --apply-timeout 10m ' +
          '--offline-deadline 1h --allow-force --dry-run',
      ),
    );
    expect(request).toEqual<dispatcher.CreateRolloutRequest>({
      patchId: 'cve-1',
      version: '2',
      selector: {
        kernelReleases: ['6.1.0-18-cloud-amd64', '6.1.0-20-cloud-amd64'],
        labels: { env: 'prod', dc: 'ams' },
        hostIds: ['web-01'],
      },
      strategy: {
        canaryHostIds: ['web-07'],
        canaryCount: 2,
        waves: [{ percent: 10 }, { percent: 40 }, { percent: 50 }],
        maxInFlight: 5,
        soakSeconds: 300,
        waveFailureBudget: 1,
        totalFailureBudget: 3,
        window: undefined,
        approvalBeforeFirstWave: true,
        approvalBetweenWaves: true,
        onFailure: events.FailurePolicy.FAILURE_POLICY_ROLL_BACK,
        applyTimeoutSeconds: 600,
        offlineDeadlineSeconds: 3600,
      },
      allowForce: true,
      allowDowngrade: false,
      dryRun: true,
      skipApproval: false,
    });
  });

  it('leaves the strategy unset without strategy flags: the dispatcher’s default applies', () => {
    const request = createRolloutRequest(flagsOf('rollout create --patch p --version 1 --host web-01'));
    expect(request.strategy).toBeUndefined();
    expect(request.selector).toEqual({ kernelReleases: [], labels: {}, hostIds: ['web-01'] });
  });

  it('refuses a rollout without a selection of hosts: never the whole fleet by omission', () => {
    expect(() => createRolloutRequest(flagsOf('rollout create --patch p --version 1'))).toThrow(
      'rollout create needs the hosts to roll out to: --kernel RELEASE, --label KEY=VALUE or --host HOST (repeatable; all given must match)',
    );
  });

  it('reads wave counts, and refuses wave sizes that are neither', () => {
    expect(parseWaves('5,20,100')).toEqual([{ count: 5 }, { count: 20 }, { count: 100 }]);
    expect(parseWaves('1, 50%')).toEqual([{ count: 1 }, { percent: 50 }]);
    expect(() => parseWaves('10%,0')).toThrow('--waves "10%,0": "0" is neither a percent (10%) nor a host count (5)');
    expect(() => parseWaves('150%')).toThrow('--waves "150%": 150% is not a percent from 1% to 100%');
  });

  it('refuses a bad failure policy, count, label or window, naming the flag', () => {
    const strategy = (extra: string) => () =>
      rolloutStrategy(flagsOf(`rollout create --patch p --version 1 --host h ${extra}`));
    expect(strategy('--on-failure retry')).toThrow('--on-failure "retry" is not one of: pause, abort, rollback');
    expect(strategy('--canary 0')).toThrow('--canary "0" is not a whole number from 1 to 4294967295');
    expect(strategy('--max-in-flight many')).toThrow(/^--max-in-flight "many" is not a whole number/);
    expect(() => createRolloutRequest(flagsOf('rollout create --patch p --version 1 --label prod'))).toThrow(
      '--label "prod" is not KEY=VALUE, e.g. --label env=prod',
    );
    expect(parseWindow('Sat,Sun 02:00-05:00')).toEqual({ days: 'Sat,Sun', startUtc: '02:00', endUtc: '05:00' });
    expect(() => parseWindow('weekends')).toThrow(/--window "weekends" is not "DAYS HH:MM-HH:MM" in UTC/);
  });
});

describe('build submit flags → SubmitBuildRequest', () => {
  it('carries the fix file as bytes of the right kind, CVEs with severity and score', () => {
    const flags = flagsOf(
      'build submit --name cve-2024-1086-nf-tables --version 1 --source fix.c --kernel k1 --kernel k2 --cve cve-2024-1086:high:7.8 --cve CVE-2023-0001:critical --replace',
    );
    expect(submitBuildRequest(flags, { kind: 'source', bytes: Buffer.from('C') })).toEqual<builder.SubmitBuildRequest>({
      patchName: 'cve-2024-1086-nf-tables',
      version: '1',
      description: '',
      cves: [
        { id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' },
        { id: 'CVE-2023-0001', severity: events.Severity.SEVERITY_CRITICAL, cvssScore: '' },
      ],
      replace: true,
      kernelReleases: ['k1', 'k2'],
      livepatchModuleSource: Buffer.from('C'),
    });
    expect(submitBuildRequest(flags, { kind: 'diff', bytes: Buffer.from('D') }).unifiedDiff).toEqual(Buffer.from('D'));
  });

  it('refuses CVEs without a severity or with a bad one', () => {
    expect(() => parseCve('CVE-2024-1086')).toThrow(
      '--cve "CVE-2024-1086" is not CVE-YYYY-NNNN:SEVERITY[:CVSS], e.g. CVE-2024-1086:critical',
    );
    expect(() => parseCve('CVE-2024-1086:urgent')).toThrow(
      '--cve "CVE-2024-1086:urgent": severity "urgent" is not a severity: use low, medium, high, critical',
    );
    expect(() => parseCve('CVE-2024-1086:high:11')).toThrow(/the CVSS score "11" is not a number from 0.0 to 10.0/);
  });
});

describe('state filters', () => {
  it('reads short state names, comma-separated or repeated', () => {
    expect(parseStates(['failed,cancelled', 'running'], '--state', 'BUILD_STATE_', builder.BuildState)).toEqual([
      builder.BuildState.BUILD_STATE_FAILED,
      builder.BuildState.BUILD_STATE_CANCELLED,
      builder.BuildState.BUILD_STATE_RUNNING,
    ]);
    expect(parseStates(['rolled-back'], '--state', 'ROLLOUT_STATE_', dispatcher.RolloutState)).toEqual([
      dispatcher.RolloutState.ROLLOUT_STATE_ROLLED_BACK,
    ]);
    expect(() => parseStates(['done'], '--state', 'BUILD_STATE_', builder.BuildState)).toThrow(
      '--state "done" is not one of: queued, running, succeeded, failed, cancelled',
    );
  });

  it('names enum values the short way', () => {
    expect(
      enumLabel(dispatcher.RolloutState, dispatcher.RolloutState.ROLLOUT_STATE_AWAITING_APPROVAL, 'ROLLOUT_STATE_'),
    ).toBe('awaiting-approval');
  });
});
