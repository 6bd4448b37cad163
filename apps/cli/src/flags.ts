// Turns flag values into the proto messages the services take. Pure; every refusal names the
// flag and the accepted form.
import { builder, dispatcher, events } from '@rebootless/contracts';
import type { FlagValue } from './args';
import { UsageError } from './errors';
import { parseDuration } from './time-input';

export type Flags = Readonly<Record<string, FlagValue>>;

export function str(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === 'string' ? value : undefined;
}

export function list(flags: Flags, name: string): string[] {
  const value = flags[name];
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

export function bool(flags: Flags, name: string): boolean {
  return flags[name] === true;
}

/** A whole number in [min, max]. */
export function parseCount(text: string, flag: string, min = 0, max = 2 ** 32 - 1): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`${flag} "${text}" is not a whole number from ${min} to ${max}`);
  }
  return Number(text);
}

export function optionalCount(flags: Flags, name: string, min = 0): number | undefined {
  const text = str(flags, name);
  return text === undefined ? undefined : parseCount(text, `--${name}`, min);
}

const SEVERITIES: Readonly<Record<string, events.Severity>> = {
  low: events.Severity.SEVERITY_LOW,
  medium: events.Severity.SEVERITY_MEDIUM,
  high: events.Severity.SEVERITY_HIGH,
  critical: events.Severity.SEVERITY_CRITICAL,
};

export function parseSeverity(text: string, flag: string): events.Severity {
  const severity = SEVERITIES[text.trim().toLowerCase()];
  if (severity === undefined) {
    throw new UsageError(`${flag} "${text}" is not a severity: use ${Object.keys(SEVERITIES).join(', ')}`);
  }
  return severity;
}

const CVE_ID = /^CVE-\d{4}-\d{4,}$/i;

/** "CVE-2024-1086:critical" or "CVE-2024-1086:high:7.8". */
export function parseCve(text: string): events.Cve {
  const [id = '', severity, cvss, ...rest] = text.split(':');
  const form = 'CVE-YYYY-NNNN:SEVERITY[:CVSS], e.g. CVE-2024-1086:critical';
  if (!CVE_ID.test(id) || severity === undefined || rest.length > 0) {
    throw new UsageError(`--cve "${text}" is not ${form}`);
  }
  if (cvss !== undefined && !/^(10(\.0)?|\d(\.\d)?)$/.test(cvss)) {
    throw new UsageError(`--cve "${text}": the CVSS score "${cvss}" is not a number from 0.0 to 10.0`);
  }
  return {
    id: id.toUpperCase(),
    severity: parseSeverity(severity, `--cve "${text}": severity`),
    cvssScore: cvss ?? '',
  };
}

export function parseLabels(values: readonly string[], flag = '--label'): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} "${value}" is not KEY=VALUE, e.g. ${flag} env=prod`);
    labels[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return labels;
}

/** "10%,40%,50%" or "5,20,100" (each wave on its own: a percent of the selected hosts, or a count). */
export function parseWaves(text: string): events.WaveSize[] {
  const items = text.split(',').map((s) => s.trim());
  return items.map((item) => {
    const percent = /^(\d+)%$/.exec(item);
    if (percent) {
      const value = Number(percent[1]);
      if (value < 1 || value > 100) throw new UsageError(`--waves "${text}": ${item} is not a percent from 1% to 100%`);
      return { percent: value };
    }
    if (/^\d+$/.test(item) && Number(item) > 0) return { count: Number(item) };
    throw new UsageError(
      `--waves "${text}": "${item}" is neither a percent (10%) nor a host count (5); write e.g. 10%,40%,50% or 5,20,100`,
    );
  });
}

export function hostSelector(flags: Flags): events.HostSelector {
  return {
    kernelReleases: list(flags, 'kernel'),
    labels: parseLabels(list(flags, 'label')),
    hostIds: list(flags, 'host'),
  };
}

export function isEmptySelector(selector: events.HostSelector): boolean {
  return (
    selector.kernelReleases.length === 0 && Object.keys(selector.labels).length === 0 && selector.hostIds.length === 0
  );
}

const FAILURE_POLICIES: Readonly<Record<string, events.FailurePolicy>> = {
  pause: events.FailurePolicy.FAILURE_POLICY_PAUSE,
  abort: events.FailurePolicy.FAILURE_POLICY_ABORT,
  rollback: events.FailurePolicy.FAILURE_POLICY_ROLL_BACK,
};

const STRATEGY_FLAG_NAMES = [
  'canary',
  'canary-host',
  'waves',
  'max-in-flight',
  'soak',
  'failure-budget',
  'total-failure-budget',
  'require-approval',
  'approve-each-wave',
  'on-failure',
  'apply-timeout',
  'offline-deadline',
  'window',
];

/** "Sat,Sun 02:00-05:00". */
export function parseWindow(text: string): events.MaintenanceWindow {
  const m = /^\s*([A-Za-z]{3}(?:,[A-Za-z]{3})*)\s+([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)\s*$/.exec(text);
  const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  if (!m || !m[1]!.split(',').every((d) => days.includes(d.toLowerCase()))) {
    throw new UsageError(
      `--window "${text}" is not "DAYS HH:MM-HH:MM" in UTC, e.g. "Sat,Sun 02:00-05:00" (days: Mon,Tue,Wed,Thu,Fri,Sat,Sun)`,
    );
  }
  return { days: m[1]!, startUtc: `${m[2]}:${m[3]}`, endUtc: `${m[4]}:${m[5]}` };
}

/** The strategy the flags describe; undefined when no strategy flag is given (the dispatcher's default). */
export function rolloutStrategy(flags: Flags): events.RolloutStrategy | undefined {
  if (!STRATEGY_FLAG_NAMES.some((name) => flags[name] !== undefined)) return undefined;
  const onFailure = str(flags, 'on-failure');
  const policy =
    onFailure === undefined ? events.FailurePolicy.FAILURE_POLICY_UNSPECIFIED : FAILURE_POLICIES[onFailure];
  if (policy === undefined) {
    throw new UsageError(`--on-failure "${onFailure}" is not one of: ${Object.keys(FAILURE_POLICIES).join(', ')}`);
  }
  const duration = (name: string) => {
    const text = str(flags, name);
    return text === undefined ? 0 : parseDuration(text, `--${name}`);
  };
  const window = str(flags, 'window');
  return {
    canaryHostIds: list(flags, 'canary-host'),
    canaryCount: optionalCount(flags, 'canary', 1) ?? 0,
    waves: str(flags, 'waves') === undefined ? [] : parseWaves(str(flags, 'waves')!),
    maxInFlight: optionalCount(flags, 'max-in-flight', 1) ?? 0,
    soakSeconds: duration('soak'),
    waveFailureBudget: optionalCount(flags, 'failure-budget') ?? 0,
    totalFailureBudget: optionalCount(flags, 'total-failure-budget') ?? 0,
    window: window === undefined ? undefined : parseWindow(window),
    approvalBeforeFirstWave: bool(flags, 'require-approval'),
    approvalBetweenWaves: bool(flags, 'approve-each-wave'),
    onFailure: policy,
    applyTimeoutSeconds: duration('apply-timeout'),
    offlineDeadlineSeconds: duration('offline-deadline'),
  };
}

export function createRolloutRequest(flags: Flags): dispatcher.CreateRolloutRequest {
  const selector = hostSelector(flags);
  // Never the whole fleet by omission: the dispatcher refuses an empty selector too.
  if (isEmptySelector(selector)) {
    throw new UsageError(
      'rollout create needs the hosts to roll out to: --kernel RELEASE, --label KEY=VALUE or --host HOST (repeatable; all given must match)',
    );
  }
  return {
    patchId: str(flags, 'patch')!,
    version: str(flags, 'version')!,
    selector,
    strategy: rolloutStrategy(flags),
    allowForce: bool(flags, 'allow-force'),
    allowDowngrade: bool(flags, 'allow-downgrade'),
    dryRun: bool(flags, 'dry-run'),
    skipApproval: bool(flags, 'skip-approval'),
  };
}

/** The fix files are read by the caller; this checks that exactly one was given. */
export function fixFile(flags: Flags): { kind: 'source' | 'diff'; path: string } {
  const source = str(flags, 'source');
  const diff = str(flags, 'diff');
  if (source !== undefined && diff !== undefined) {
    throw new UsageError(
      'build submit takes one fix: --source FILE (livepatch C) or --diff FILE (unified diff), not both',
    );
  }
  if (source !== undefined) return { kind: 'source', path: source };
  if (diff !== undefined) return { kind: 'diff', path: diff };
  throw new UsageError(
    'build submit needs the fix: --source FILE (livepatch module C source) or --diff FILE (unified diff)',
  );
}

export function submitBuildRequest(
  flags: Flags,
  fix: { kind: 'source' | 'diff'; bytes: Buffer },
): builder.SubmitBuildRequest {
  return {
    patchName: str(flags, 'name')!,
    version: str(flags, 'version')!,
    description: str(flags, 'description') ?? '',
    cves: list(flags, 'cve').map(parseCve),
    replace: bool(flags, 'replace'),
    kernelReleases: list(flags, 'kernel'),
    ...(fix.kind === 'source' ? { livepatchModuleSource: fix.bytes } : { unifiedDiff: fix.bytes }),
  };
}

/** "failed" → BUILD_STATE_FAILED; each value may itself be a comma-separated list. */
export function parseStates<E extends number>(
  values: readonly string[],
  flag: string,
  prefix: string,
  enumObject: Record<string, string | number>,
): E[] {
  const names = Object.keys(enumObject).filter((k) => k.startsWith(prefix) && !k.endsWith('UNSPECIFIED'));
  const short = (name: string) => name.slice(prefix.length).toLowerCase().replace(/_/g, '-');
  return values
    .flatMap((v) => v.split(','))
    .map((value) => {
      const name = names.find((n) => short(n) === value.trim().toLowerCase());
      if (!name) throw new UsageError(`${flag} "${value}" is not one of: ${names.map(short).join(', ')}`);
      return enumObject[name] as E;
    });
}

/** BUILD_STATE_SUCCEEDED → "succeeded". */
export function enumLabel(enumObject: Record<string | number, string | number>, value: number, prefix: string): string {
  const name = enumObject[value];
  return typeof name === 'string' ? name.slice(prefix.length).toLowerCase().replace(/_/g, '-') : String(value);
}
