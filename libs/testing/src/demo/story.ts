// The story `npm start` tells once the system is up (scripts/stack.mjs): a live patch built for a
// CVE on both kernel releases of the demo fleet, rolled out in waves with a canary, one host
// whose transition stalls (reported, the rollout pauses, the operator resumes without it), an
// undo on one host, the PCI report before and after, and the ledger verified. Every step goes
// through the services' public gRPC APIs over TLS with an operator token, as the CLI would; the
// rollout itself is created by the rebootless CLI, so its trace starts where an operator's does.
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import {
  builder,
  dispatcher,
  events,
  grpcServices,
  ledger,
  toTimestamp,
  type GrpcServiceContract,
} from '@rebootless/contracts';
import { livepatchSample } from '@rebootless/kernel-toolchain';
import { channelCredentials, loadTlsMaterial, mintToken, readTokenPrivateKey, type Role } from '@rebootless/trust';
import { readStream, serviceClient, unary, type Client } from '../fleet/rig';
import { builtEntry } from '../process';
import { DEMO_LABEL, type DemoPlan } from './demo-plan';

export interface StoryOptions {
  pkiDir: string;
  builderAddress: string;
  dispatcherAddress: string;
  ledgerAddress: string;
  releases: readonly [string, string];
  plan: DemoPlan;
  /** One line of the story for people, as it happens. */
  say: (line: string) => void;
  /** The web console's address (apps/console), told at the end when it runs. */
  consoleUrl?: string;
  /**
   * With tracing on (`npm start -- --tracing`): the CLI that creates the rollout exports its spans
   * too (the OpenTelemetry variables of this process), and the link to its trace is told.
   */
  tracing?: {
    link: (traceId: string) => string;
  };
}

export const STORY_PATCH = 'cve-2024-1086-demo';
const CVE = { id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_CRITICAL, cvssScore: '7.8' };
/** PCI-DSS 6.3.3: critical fixes live within a month. The report is read as of the day after. */
const DEADLINE_DAYS = 30;
const OPERATOR = 'alice';
const APPROVER = 'bob';
// The story's one channel configuration reaches the three services; each must show its own certificate.
const SERVICES_OF_THE_STACK = [
  { kind: 'service', id: 'builder' },
  { kind: 'service', id: 'dispatcher' },
  { kind: 'service', id: 'ledger' },
] as const;

export interface PciSummary {
  asOf: string;
  hostsInScope: number;
  hostsCompliant: number;
  nonCompliantHostIds: string[];
}

export interface StoryResult {
  releases: string[];
  hosts: number;
  patch: { patchId: string; version: string; buildId: string; modules: { kernelRelease: string; digest: string }[] };
  pciBefore: PciSummary;
  rollout: {
    rolloutId: string;
    /** The rollout's trace, with tracing on. */
    trace?: { traceId: string; link: string };
    state: string;
    pausedBecause: string;
    stalledHost: { hostId: string; state: string; error: string };
    succeeded: number;
  };
  undo: { hostId: string; rolloutId: string; state: string; plan: string[] };
  pciAfter: PciSummary;
  verify: { eventsChecked: string; producersChecked: number; findings: number; details: string[] };
  seconds: number;
}

const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;

function enumName(e: Record<number, string>, value: number, prefix: string): string {
  return (e[value] ?? String(value)).replace(prefix, '').toLowerCase().replace(/_/g, '-');
}
const rolloutState = (s: dispatcher.RolloutState) => enumName(R, s, 'ROLLOUT_STATE_');
const hostState = (s: dispatcher.HostRolloutState) => enumName(H, s, 'HOST_ROLLOUT_STATE_');
const waveState = (s: dispatcher.WaveState) => enumName(dispatcher.WaveState, s, 'WAVE_STATE_');

/** TLS as the CLI's certificate (user:cli) plus a token of `sub` with `roles` on every call. */
function operatorCredentials(
  pkiDir: string,
  sub: string = OPERATOR,
  roles: readonly Role[] = ['operator', 'auditor'],
): grpc.ChannelCredentials {
  const token = mintToken(readTokenPrivateKey(pkiDir), { sub, roles, ttlSeconds: 3600 });
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(
    channelCredentials(loadTlsMaterial(pkiDir, { kind: 'user', id: 'cli' }), SERVICES_OF_THE_STACK),
    bearer,
  );
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`the story stopped: ${what} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function tellStory(options: StoryOptions): Promise<StoryResult> {
  const t0 = Date.now();
  const { plan, say } = options;
  const credentials = operatorCredentials(options.pkiDir);
  const open = (contract: GrpcServiceContract, address: string) => serviceClient(contract, address, credentials);
  const build = open(grpcServices.build, options.builderAddress);
  const rollouts = open(grpcServices.rollout, options.dispatcherAddress);
  // A second person approves the first wave: nobody starts a rollout on their own (ADR 0013).
  const approvals = serviceClient(
    grpcServices.rollout,
    options.dispatcherAddress,
    operatorCredentials(options.pkiDir, APPROVER, ['approver', 'auditor']),
  );
  const ledgerClient = open(grpcServices.ledger, options.ledgerAddress);
  try {
    const step = (title: string) => say(`\n== ${title}`);

    step(`1. The fleet: ${plan.hosts.length} simulated hosts on two kernel releases`);
    for (const release of options.releases) {
      const n = plan.hosts.filter((h) => h.kernelRelease === release).length;
      say(`   ${String(n).padStart(4)} hosts on ${release}`);
    }
    await until('every demo host enrolled in the ledger', async () => {
      const hosts = await listHosts(ledgerClient, {});
      return hosts.length >= plan.hosts.length ? hosts : undefined;
    });
    say(`   every host enrolled: the ledger knows each one's kernel and (empty) patch stack`);

    step(`2. A live patch for ${CVE.id} (critical), built for both releases`);
    const version = await nextVersion(build);
    const moduleName = 'lp_cve_2024_1086_demo';
    const submitted = await unary<builder.SubmitBuildResponse>(build, 'submitBuild', {
      patchName: STORY_PATCH,
      version,
      description: 'demo fix: the module replaces cmdline_proc_show (reading /proc/cmdline shows it)',
      cves: [CVE],
      replace: false,
      kernelReleases: [...options.releases],
      livepatchModuleSource: Buffer.from(
        livepatchSample({ moduleName, replacementText: `live-patched by rebootless (${STORY_PATCH} ${version})` }),
      ),
    });
    say(`   build ${submitted.buildId}: ${STORY_PATCH} ${version}, livepatch source replacing cmdline_proc_show`);
    const updates = await readStream<builder.WatchBuildResponse>(
      build,
      'watchBuild',
      { buildId: submitted.buildId },
      (m) => {
        const s = m.stageChanged;
        const state = s && enumName(builder.BuildState, s.state, 'BUILD_STATE_');
        if (s) say(`   ${s.kernelRelease}: ${s.stage === state ? state : `${s.stage} ${state}`}`);
        return !!m.finished;
      },
      20 * 60_000,
    );
    const finished = updates.at(-1)?.finished;
    if (!finished || finished.state !== builder.BuildState.BUILD_STATE_SUCCEEDED) {
      const why = finished?.kernels.map((k) => `${k.kernelRelease}: ${k.stage} ${k.diagnostics.join(' ')}`).join('; ');
      throw new Error(`the story stopped: build ${submitted.buildId} did not succeed (${why ?? 'no end'})`);
    }
    for (const k of finished.kernels) say(`   ${k.kernelRelease}: signed module ${k.artifactDigest}`);

    step(`3. The PCI-DSS report before the rollout`);
    const asOf = new Date(Date.now() + (DEADLINE_DAYS + 1) * 86_400_000);
    say(
      `   as of ${asOf.toISOString().slice(0, 10)}, the day after the ${DEADLINE_DAYS}-day deadline, if nothing is done:`,
    );
    const pciBefore = await until('the ledger knows the fix', async () => {
      const report = await pci(ledgerClient, asOf);
      return report.hostsInScope >= plan.hosts.length && report.nonCompliantHostIds.length === plan.hosts.length
        ? report
        : undefined;
    });
    say(
      `   ${pciBefore.hostsCompliant}/${pciBefore.hostsInScope} hosts compliant: every host still runs the vulnerable code`,
    );

    step(`4. Rollout in waves: a canary per release, then 30% and 70% of the rest`);
    // Through the rebootless CLI as a process, as an operator starts it: with tracing on, its
    // command span is the root of the rollout's trace (gRPC metadata carries it to the dispatcher,
    // whose waves, commands to agents, events and the ledger's projections all join it).
    const { rollout: createdRollout, traceId } = await createRolloutWithCli(options, [
      '--patch',
      submitted.patchId,
      '--version',
      version,
      ...Object.entries(DEMO_LABEL).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
      ...plan.canaryHostIds.flatMap((h) => ['--canary-host', h]),
      '--waves',
      '30%,70%',
      '--soak',
      '2s',
      '--on-failure',
      'pause',
      '--apply-timeout',
      '120s',
      '--offline-deadline',
      '600s',
    ]);
    const rolloutId = createdRollout.rolloutId;
    const trace = options.tracing && traceId ? { traceId, link: options.tracing.link(traceId) } : undefined;
    if (options.tracing) {
      if (!trace) throw new Error('the story stopped: with tracing on, the CLI did not tell its trace id');
      say(`   its trace, from the operator's command to every host and the ledger: ${trace.link}`);
    }
    await unary(approvals, 'approveRollout', { rolloutId, waveIndex: 0 });
    say(`   ${APPROVER} (approver) approved the first wave of ${OPERATOR}'s rollout`);
    say(
      `   rollout ${rolloutId}: ${createdRollout.waves
        .map((w) => `${w.name} ${w.hosts.length} host(s)`)
        .join(', ')}; on failure: pause`,
    );
    let rollout = await followRollout(rollouts, rolloutId, say, [R.ROLLOUT_STATE_PAUSED, R.ROLLOUT_STATE_COMPLETED]);
    const stalled = rollout.waves.flatMap((w) => w.hosts).find((h) => h.hostId === plan.stallHostId);
    if (rollout.state !== R.ROLLOUT_STATE_PAUSED || stalled?.state !== H.HOST_ROLLOUT_STATE_FAILED) {
      throw new Error(
        `the story stopped: expected the rollout to pause on ${plan.stallHostId}, but it is ${rolloutState(rollout.state)} (${rollout.stateReason})`,
      );
    }
    const pausedBecause = rollout.stateReason;

    step(`5. ${plan.stallHostId} stalled, and the rollout stopped to say so`);
    say(`   paused: ${pausedBecause}`);
    say(`   ${plan.stallHostId}: ${stalled.error}`);
    say(`   the agent reversed the transition after its timeout: ${plan.stallHostId} runs the original code, unharmed`);
    say(`   operator ${OPERATOR} resumes the rollout; ${plan.stallHostId} stays failed for later`);
    await unary(rollouts, 'resumeRollout', { rolloutId });
    rollout = await followRollout(rollouts, rolloutId, say, [
      R.ROLLOUT_STATE_COMPLETED,
      R.ROLLOUT_STATE_ABORTED,
      R.ROLLOUT_STATE_ROLLED_BACK,
    ]);
    const hostsOf = rollout.waves.flatMap((w) => w.hosts);
    const succeeded = hostsOf.filter((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED).length;
    say(`   ${rolloutState(rollout.state)}: ${succeeded}/${hostsOf.length} hosts patched`);

    step(`6. Undo on ${plan.undoHostId}`);
    // The ledger follows the log on its own time (after a broker failover it reads again): the
    // plan is asked for once the ledger shows the patch live there, as an operator would check.
    await until(`the ledger shows the patch on ${plan.undoHostId}`, async () => {
      const hosts = await listHosts(ledgerClient, { carriesPatchId: submitted.patchId });
      return hosts.some((h) => h.facts?.hostId === plan.undoHostId) ? true : undefined;
    });
    const undoPlan = await unary<ledger.PlanUndoResponse>(ledgerClient, 'planUndo', {
      hostId: plan.undoHostId,
      patchId: submitted.patchId,
    });
    const planLines = [
      ...undoPlan.steps.map(
        (s) =>
          `${enumName(ledger.UndoStepKind, s.kind, 'UNDO_STEP_KIND_')} ${s.moduleName}${s.detail ? `: ${s.detail}` : ''}`,
      ),
      ...undoPlan.functions.map(
        (f) =>
          `${f.function?.name}: ${f.runsNow?.moduleName || 'original kernel code'} -> ${f.runsAfter?.moduleName || 'original kernel code'}`,
      ),
    ];
    say(`   the ledger's plan (PlanUndo):`);
    for (const line of planLines) say(`     ${line}`);
    const undone = await unary<dispatcher.UndoResponse>(rollouts, 'undo', {
      hostId: plan.undoHostId,
      patchId: submitted.patchId,
      version,
      reason: 'the application team asked for the original /proc/cmdline back',
      allowDowngrade: false,
      dryRun: false,
    });
    const undoId = undone.rollout!.rolloutId;
    const undoRollout = await followRollout(rollouts, undoId, () => undefined, [
      R.ROLLOUT_STATE_COMPLETED,
      R.ROLLOUT_STATE_ABORTED,
      R.ROLLOUT_STATE_PAUSED,
    ]);
    say(`   undo ${undoId} (dispatcher Undo): ${rolloutState(undoRollout.state)}`);
    if (undoRollout.state !== R.ROLLOUT_STATE_COMPLETED) {
      throw new Error(`the story stopped: the undo on ${plan.undoHostId} ended ${rolloutState(undoRollout.state)}`);
    }

    step(`7. The PCI-DSS report after`);
    const carriers = succeeded - 1; // the undone host no longer carries it
    await until('the ledger shows every patched host', async () => {
      const hosts = await listHosts(ledgerClient, { carriesPatchId: submitted.patchId });
      return hosts.length === carriers ? hosts : undefined;
    });
    const pciAfter = await until('the report reflects the rollout and the undo', async () => {
      const report = await pci(ledgerClient, asOf);
      return report.hostsCompliant === carriers ? report : undefined;
    });
    say(
      `   as of ${asOf.toISOString().slice(0, 10)}: ${pciAfter.hostsCompliant}/${pciAfter.hostsInScope} hosts compliant`,
    );
    say(`   still exposed: ${pciAfter.nonCompliantHostIds.join(', ')} (the stall and the undo)`);

    step(`8. The ledger verified`);
    const verified = await unary<ledger.VerifyIntegrityResponse>(ledgerClient, 'verifyIntegrity', { producerId: '' });
    say(
      `   ${verified.eventsChecked} events of ${verified.producersChecked} producers re-checked (hash chains, signatures): ${verified.findings.length} findings`,
    );
    for (const f of verified.findings) say(`   finding: ${f.detail}`);
    if (options.consoleUrl) {
      step(`9. The same, in the web console: ${options.consoleUrl}`);
      say(`   the fleet's verdicts, ${plan.undoHostId}'s stack at any instant, rollout ${rolloutId} and its timeline,`);
      say(
        `   exposure to ${CVE.id} over time and the PCI-DSS report, signed in with an operator, approver or auditor token`,
      );
    }

    return {
      releases: [...options.releases],
      hosts: plan.hosts.length,
      patch: {
        patchId: submitted.patchId,
        version,
        buildId: submitted.buildId,
        modules: finished.kernels.map((k) => ({ kernelRelease: k.kernelRelease, digest: k.artifactDigest })),
      },
      pciBefore,
      rollout: {
        rolloutId,
        ...(trace ? { trace } : {}),
        state: rolloutState(rollout.state),
        pausedBecause,
        stalledHost: { hostId: stalled.hostId, state: hostState(stalled.state), error: stalled.error },
        succeeded,
      },
      undo: { hostId: plan.undoHostId, rolloutId: undoId, state: rolloutState(undoRollout.state), plan: planLines },
      pciAfter,
      verify: {
        eventsChecked: verified.eventsChecked,
        producersChecked: verified.producersChecked,
        findings: verified.findings.length,
        details: verified.findings.map((f) => f.detail),
      },
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    for (const client of [build, rollouts, approvals, ledgerClient]) client.close();
  }
}

/** One more than the highest version built so far: each run of the story publishes a new version. */
async function nextVersion(build: Client): Promise<string> {
  const { builds } = await unary<builder.ListBuildsResponse>(build, 'listBuilds', {
    pageSize: 1000,
    pageToken: '',
    patchId: STORY_PATCH,
    states: [],
  });
  return String(Math.max(0, ...builds.map((b) => Number.parseInt(b.version, 10) || 0)) + 1);
}

async function listHosts(client: Client, filter: Partial<ledger.ListHostsRequest>): Promise<ledger.Host[]> {
  const out: ledger.Host[] = [];
  let pageToken = '';
  do {
    const page = await unary<ledger.ListHostsResponse>(client, 'listHosts', {
      pageSize: 500,
      pageToken,
      kernelRelease: '',
      labels: { ...DEMO_LABEL },
      carriesPatchId: '',
      exposedToCveId: '',
      ...filter,
    });
    out.push(...page.hosts);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

async function pci(client: Client, asOf: Date): Promise<PciSummary> {
  const report = await unary<ledger.ComplianceReportResponse>(client, 'complianceReport', {
    scope: { kernelReleases: [], labels: { ...DEMO_LABEL }, hostIds: [] },
    minSeverity: events.Severity.SEVERITY_CRITICAL,
    deadlineDays: DEADLINE_DAYS,
    asOf: toTimestamp(asOf),
    format: ledger.ReportFormat.REPORT_FORMAT_UNSPECIFIED,
    exemptHostIds: [],
  });
  const rows = report.hosts.filter((h) => h.cveId === CVE.id);
  return {
    asOf: asOf.toISOString(),
    hostsInScope: report.hostsInScope,
    hostsCompliant: report.hostsCompliant,
    nonCompliantHostIds: rows
      .filter((h) => h.status === ledger.ComplianceStatus.COMPLIANCE_STATUS_NON_COMPLIANT)
      .map((h) => h.hostId)
      .sort(),
  };
}

/** Polls the rollout and tells each change of a wave or of the rollout, until it is in one of `end`. */
async function followRollout(
  client: Client,
  rolloutId: string,
  say: (line: string) => void,
  end: dispatcher.RolloutState[],
): Promise<dispatcher.Rollout> {
  const told = new Map<string, string>();
  return until(
    `rollout ${rolloutId} reached ${end.map(rolloutState).join(' or ')}`,
    async () => {
      const { rollout } = await unary<dispatcher.GetRolloutResponse>(client, 'getRollout', { rolloutId });
      for (const w of rollout!.waves) {
        const done = w.hosts.filter((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED).length;
        const failed = w.hosts.filter((h) => h.state === H.HOST_ROLLOUT_STATE_FAILED).map((h) => h.hostId);
        const line = `${w.name}: ${waveState(w.state)}, ${done}/${w.hosts.length} patched${failed.length ? `, failed: ${failed.join(', ')}` : ''}`;
        if (w.state !== dispatcher.WaveState.WAVE_STATE_PENDING && told.get(w.name) !== line) {
          told.set(w.name, line);
          say(`   ${line}`);
        }
      }
      return end.includes(rollout!.state) ? rollout! : undefined;
    },
    15 * 60_000,
  );
}

/** The rollout as `rebootless rollout create --json` prints it (proto JSON names, enums as names). */
interface CliRollout {
  rolloutId: string;
  waves: { name: string; hosts: unknown[] }[];
}

/**
 * Runs the built CLI (apps/cli/dist/main.js) as the operator: TLS with the CLI's certificate and
 * an operator token. Resolves with the rollout it printed and, when it traced, the trace id it
 * told on stderr.
 */
async function createRolloutWithCli(
  options: StoryOptions,
  args: readonly string[],
): Promise<{ rollout: CliRollout; traceId: string | undefined }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
  const child = spawn(process.execPath, [builtEntry('apps/cli/dist/main.js'), 'rollout', 'create', ...args, '--json'], {
    env: {
      ...inherited,
      REBOOTLESS_PKI_DIR: options.pkiDir,
      REBOOTLESS_BUILDER: options.builderAddress,
      REBOOTLESS_DISPATCHER: options.dispatcherAddress,
      REBOOTLESS_LEDGER: options.ledgerAddress,
      REBOOTLESS_TOKEN: mintToken(readTokenPrivateKey(options.pkiDir), {
        sub: OPERATOR,
        roles: ['operator', 'auditor'],
        ttlSeconds: 600,
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`the story stopped: rebootless rollout create exited ${code}: ${stderr.trim()}`);
  return {
    rollout: JSON.parse(stdout) as CliRollout,
    traceId: /^rebootless: trace ([0-9a-f]{32})$/m.exec(stderr)?.[1],
  };
}
