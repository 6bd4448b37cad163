// npm run bench:rollout: one dispatcher (the built service, a child process) and BENCH_HOSTS
// (default 10,000) real agents on simulated kernels, spread over BENCH_FLEET_PROCESSES (default
// 2, more when the open-files limit needs it; 0: in this process) child processes, each agent on its own gRPC stream (multiplexed over
// shared HTTP/2 connections), a module really compiled and signed by the builder. Measures the
// seconds from CreateRollout until every host has the patch applied (the rollout completed), then
// until the ledger shows it on every host (when the ledger starts), and the dispatcher's peak
// memory (VmHWM). No soak: canary, then everyone. BENCH_HOSTS=10000,100000 runs each size in turn
// (fresh topic, services and fleet each) and reports both in one result. Each simulated agent
// keeps its outbox open: the npm script raises the open-files limit (ulimit -n) for the fleet.
// BENCH_DISPATCHERS=2: two dispatcher instances sharing the agents and a PostgreSQL for their
// rollout leases (DATABASE_ADMIN_URL, the admin URL a database of its own is made from; docs/adr/0025).
// The dispatcher is the site's artifact cache (ADR 0026): the builder's own counter says how many
// times it served the module, the dispatcher's how many copies it served. BENCH_SHARED_DOWNLOADS=off
// makes every simulated agent fetch its own copy from the dispatcher, as real hosts do (default on:
// one fetch per fleet process, each agent still verifying and hashing the module itself).
// Prints one JSON object as its last line and writes it to bench/results/rollout-<date>.json.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dispatcher, grpcServices, ledger } from '@rebootless/contracts';
import { ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient, replayLag } from '@rebootless/kafka';
import { devTopicDurability } from '../kafka';
import {
  buildPatch,
  freePort,
  rolloutClient,
  scrapeMetric,
  serviceClient,
  startBuilder,
  startDispatcher,
  startLedger,
  unary,
  type ServiceProcess,
} from '../fleet/rig';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import { deleteBenchTopic, machineFacts, reportBenchResult, storedModuleBytes } from './machine';
import { Client as PgClient } from 'pg';
import { ForkedFleet } from '../fleet/forked-fleet';
import { SimulatedFleet } from '../fleet/simulated-fleet';

// One size, or several one after the other (BENCH_HOSTS=10000,100000), each with its own topic,
// services and fleet, reported in one result so their ratio comes from one run on one machine.
const SIZES = parseSizes(process.env['BENCH_HOSTS'] ?? '10000');
// Debian's current cloud kernel, resolved in main() (the patch is really built for it).
let RELEASE = process.env['BENCH_KERNEL_RELEASE'] ?? '';
const LEDGER = process.env['BENCH_LEDGER'] !== 'off';
// All 10,000 simulated agents share this machine's cores; fetching 10,000 copies of the module at
// once from one builder would measure the simulation, not the dispatcher.
const MAX_IN_FLIGHT = Number(process.env['BENCH_MAX_IN_FLIGHT'] ?? 2_000);
const FLEET_PROCESSES_SET = process.env['BENCH_FLEET_PROCESSES'];
// Several dispatcher instances (docs/adr/0025) share the fleet's agents and one PostgreSQL for
// their rollout leases; the rollout is created on the first, and driven by it.
const DISPATCHERS = Number(process.env['BENCH_DISPATCHERS'] ?? 1);
const PG_ADMIN = process.env['DATABASE_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SHARED_DOWNLOADS = process.env['BENCH_SHARED_DOWNLOADS'] !== 'off';
const HOLD_MS = Number(process.env['BENCH_HOLD_MS'] ?? 0);
/** The agents' hold of PatchApplyStarted for the seal of PatchApplied (ADR 0030); unset: the agent's default. */
const STARTED_HOLD_MS = process.env['BENCH_STARTED_HOLD_MS'];
// V8's heap limits, as docs/deploy.md sets them for production: left to itself, V8 sizes the old
// space from the machine's memory (about 4 GiB here) and lets garbage grow to it; at 100,000 hosts
// two dispatchers, the ledger and the fleet then pass this machine's 24 GiB and the kernel kills one.
const DISPATCHER_HEAP_MIB = Number(process.env['BENCH_DISPATCHER_HEAP_MIB'] ?? 1536);
const LEDGER_HEAP_MIB = Number(process.env['BENCH_LEDGER_HEAP_MIB'] ?? 2048);
/** V8's young generation per semi-space, as the units set it (ADR 0029's second addendum); 0: V8's default. */
const SEMI_SPACE_MIB = Number(process.env['BENCH_SEMI_SPACE_MIB'] ?? 64);
const SEMI_SPACE_ARGS = SEMI_SPACE_MIB > 0 ? [`--max-semi-space-size=${SEMI_SPACE_MIB}`] : [];

/** A counter's samples summed by one label, from a service's /metrics. */
async function countersBy(address: string, name: string, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await scrapeMetric(address, name)) {
    const key = s.labels[label] ?? '';
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Peak resident memory of a process (Linux VmHWM), in MiB. */
function peakRssMiB(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Math.round(Number(kb) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number, everyMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Hosts of the bench fleet the ledger counts (optionally only those carrying a patch). */
async function countLedgerHosts(
  client: ReturnType<typeof serviceClient>,
  filter: { carriesPatchId?: string },
): Promise<number> {
  const counted = await unary<ledger.CountHostsResponse>(client, 'countHosts', {
    labels: { fleet: 'bench' },
    ...filter,
  });
  return counted.hosts;
}

/** What reading the result back from the ledger costs once it is all there (milliseconds, one call each). */
async function timeLedgerReads(
  client: ReturnType<typeof serviceClient>,
  rolloutId: string,
  patchId: string,
): Promise<Record<string, number>> {
  const timed = async (work: () => Promise<unknown>) => {
    const t0 = performance.now();
    await work();
    return Math.round(performance.now() - t0);
  };
  return {
    count_hosts_carrying_patch: await timed(() => countLedgerHosts(client, { carriesPatchId: patchId })),
    get_rollout_summary: await timed(() =>
      unary<ledger.GetRolloutResponse>(client, 'getRollout', {
        rolloutId,
        view: dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY,
      }),
    ),
  };
}

function log(line: string): void {
  process.stderr.write(`[bench:rollout] ${line}\n`);
}

function parseSizes(value: string): number[] {
  const sizes = value.split(',').map((v) => Number(v.trim().replace(/_/g, '')));
  const bad = sizes.find((n) => !Number.isInteger(n) || n < 1 || n > 999_999);
  if (bad !== undefined || sizes.length === 0)
    throw new Error(`BENCH_HOSTS=${value}: expected host counts from 1 to 999,999, separated by commas`);
  return sizes;
}

/** The machine's load average (1, 5 and 15 minutes): every process on it, not just this bench. */
function loadAverage(): [number, number, number] {
  const [one, five, fifteen] = os.loadavg().map((l) => Math.round(l * 100) / 100);
  return [one!, five!, fifteen!];
}

/** The soft limit on open files this process (and the fleet it forks) has, from /proc. */
/** BENCH_FLEET_PROCESSES, or 2, or as many as the open-files limit asks for (a file per host). */
function fleetProcesses(hosts: number, limit: number | undefined): number {
  if (FLEET_PROCESSES_SET !== undefined) return Number(FLEET_PROCESSES_SET);
  return Math.max(2, limit === undefined ? 2 : Math.ceil(hosts / (limit - 1_000)));
}

function openFilesLimit(): number | undefined {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  // Every simulated agent holds its outbox's file open: a fleet process needs one per host.
  const limit = openFilesLimit();
  for (const hosts of SIZES) {
    const processes = fleetProcesses(hosts, limit);
    const perProcess = Math.ceil(hosts / Math.max(1, processes)) + 1_000;
    if (limit !== undefined && limit < perProcess)
      throw new Error(
        `the open-files limit is ${limit}, and ${hosts} hosts over ${processes || 1} process(es) ` +
          `need about ${perProcess} each: raise it (ulimit -n; npm run bench:rollout tries) or add BENCH_FLEET_PROCESSES`,
      );
  }
  RELEASE ||= await currentDebianCloudRelease();
  // Measured before the services start and again at the end: this kind of machine's speed
  // drifts by up to half between minutes (its neighbours), and a ratio across runs needs both.
  const started = { date: new Date().toISOString(), load_average: loadAverage(), machine: machineFacts() };
  const runs: Record<string, unknown>[] = [];
  for (const hosts of SIZES) {
    log(`--- ${hosts} hosts (load average ${loadAverage().join(' ')})`);
    runs.push(await runSize(hosts));
  }
  const result = {
    benchmark: 'rollout',
    date: started.date,
    machine: started.machine,
    calibration_at_end: machineFacts().calibration,
    load_average_at_start: started.load_average,
    load_average_at_end: loadAverage(),
    sizes: SIZES,
    runs,
    targets: { seconds_100k_hosts: 180, dispatcher_peak_mib: 2048 },
  };
  reportBenchResult('rollout', result);
}

async function runSize(hosts: number): Promise<Record<string, unknown>> {
  const fleetWorkers = fleetProcesses(hosts, openFilesLimit());
  // Each look at the rollout, or at the ledger's hosts, answers every host (100,000 at the largest
  // size): once a second up to 50,000 hosts, then less often, so the looking does not weigh on
  // what it times.
  const pollMs = Math.max(1_000, hosts / 50);
  const canary = Math.min(100, Math.max(1, Math.floor(hosts / 100)));
  const brokers = kafkaBrokersFromEnv();
  const topic = `bench.rollout.${randomUUID().slice(0, 8)}`;
  await ensureEventsTopic({ brokers, topic, partitions: 12, durability: devTopicDurability() });
  // The simulated hosts' disks (10,000 data dirs, one module copy each) live in memory when the
  // machine has /dev/shm: a host writes to its own disk, not to one shared by ten thousand.
  const base = process.env['BENCH_DIR'] ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  const root = fs.mkdtempSync(path.join(base, 'rebootless-bench-rollout-'));
  const env = { topic, brokers: brokers.join(',') };
  const processes: ServiceProcess[] = [];
  // A service that dies mid-run ends the bench at once with its last words, instead of a wait
  // that times out minutes later saying nothing of why (a V8 heap limit, the kernel's OOM killer).
  let finished = false;
  const watch = (p: ServiceProcess) => {
    processes.push(p);
    void p.exited.then(({ code, signal }) => {
      if (finished) return;
      log(
        `${p.name} (pid ${p.pid}) exited (${signal ?? `code ${code}`}) mid-run; its last output:\n${p.output.slice(-4000)}`,
      );
      // The other services go with it: left running, they took a core from the next run.
      for (const other of processes) if (other !== p) other.kill('SIGKILL');
      process.exit(1);
    });
  };
  const kafka = kafkaClient(brokers, 'rebootless-bench-rollout');
  let fleet: SimulatedFleet | ForkedFleet | undefined;
  let databaseUrl: string | undefined;
  try {
    const builderDir = path.join(root, 'builder');
    const builderMetrics = `127.0.0.1:${await freePort()}`;
    const built = await startBuilder({
      ...env,
      dataDir: builderDir,
      extra: { REBOOTLESS_METRICS_ADDRESS: builderMetrics },
    });
    watch(built.process);
    const patch = await buildPatch(built.address, { patchName: 'bench-rollout', kernelReleases: [RELEASE] });
    log(`built ${patch.patchId} ${patch.version} for ${RELEASE}`);

    const ledgerAddress = `127.0.0.1:${await freePort()}`;
    const names = DISPATCHERS > 1 ? Array.from({ length: DISPATCHERS }, (_, i) => String.fromCharCode(97 + i)) : [''];
    const dispatcherDirs = names.map((n) => path.join(root, n ? `dispatcher-${n}` : 'dispatcher'));
    if (DISPATCHERS > 1) databaseUrl = await freshDatabase(`rebootless_bench_rollout_${process.pid}`);
    // The cache figures are the first instance's (the one the rollout is created on).
    const dispatcherMetrics = `127.0.0.1:${await freePort()}`;
    const instances: Awaited<ReturnType<typeof startDispatcher>>[] = [];
    for (const [i, name] of names.entries()) {
      const others = dispatcherDirs.filter((_, j) => j !== i);
      const started = await startDispatcher({
        ...env,
        dataDir: dispatcherDirs[i]!,
        nodeArgs: [`--max-old-space-size=${DISPATCHER_HEAP_MIB}`, ...SEMI_SPACE_ARGS],
        extra: {
          DISPATCHER_LEDGER_ADDRESS: ledgerAddress,
          DISPATCHER_TRUSTED_DATA_DIRS: [builderDir, ...others].join(','),
          DISPATCHER_BUILDER_ADDRESS: built.address,
          REBOOTLESS_METRICS_ADDRESS: i === 0 ? dispatcherMetrics : `127.0.0.1:${await freePort()}`,
          // How many artifact streams the dispatcher sends at once (its default when unset).
          ...(process.env['BENCH_ARTIFACT_SERVES']
            ? { DISPATCHER_ARTIFACT_SERVES: process.env['BENCH_ARTIFACT_SERVES'] }
            : {}),
          LOG_LEVEL: 'warn',
          ...(name ? { DISPATCHER_INSTANCE: name, DISPATCHER_DATABASE_URL: databaseUrl! } : {}),
        },
      });
      watch(started.process);
      instances.push(started);
    }
    const disp = instances[0]!;

    let ledgerClient: ReturnType<typeof serviceClient> | undefined;
    let ledgerNote = 'BENCH_LEDGER=off';
    if (LEDGER) {
      try {
        const led = await startLedger({
          ...env,
          dataDir: path.join(root, 'ledger'),
          address: ledgerAddress,
          trustedDataDirs: [builderDir, ...dispatcherDirs],
          nodeArgs: [`--max-old-space-size=${LEDGER_HEAP_MIB}`, ...SEMI_SPACE_ARGS],
        });
        watch(led.process);
        ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress);
        ledgerNote = '';
      } catch (error) {
        ledgerNote = `the ledger did not start: ${String(error).split('\n').slice(0, 3).join(' ')}`;
        log(ledgerNote);
      }
    }

    const fleetOptions = {
      root: path.join(root, 'hosts'),
      dispatcherAddress: instances.map((d) => d.address),
      builderAddress: built.address,
      builderPublicKey: built.publicKey,
      syncWrites: false,
      agentFetchTimeoutMs: 600_000,
      sharedArtifacts: SHARED_DOWNLOADS,
      ...(STARTED_HOLD_MS !== undefined ? { startedHoldMs: Number(STARTED_HOLD_MS) } : {}),
    };
    const specs = Array.from({ length: hosts }, (_, i) => ({
      hostId: `bench-${String(i).padStart(6, '0')}`,
      kernelRelease: RELEASE,
      labels: { fleet: 'bench' },
    }));
    fleet =
      fleetWorkers > 0
        ? new ForkedFleet(fleetOptions, specs, fleetWorkers, [
            ...SEMI_SPACE_ARGS,
            ...(process.env['FLEET_NODE_ARGS'] ?? '').split(' ').filter(Boolean),
          ])
        : new SimulatedFleet(fleetOptions, specs);
    const startAt = Date.now();
    if (fleet instanceof ForkedFleet) await fleet.start(200);
    else await fleet.start(undefined, 200);
    await until(async () => fleet!.connectedCount() === hosts, `all ${hosts} agents connected`, 600_000, 500);
    log(`${hosts} agents started and connected in ${((Date.now() - startAt) / 1000).toFixed(1)} s`);

    const client = rolloutClient(disp.address);
    // The dispatcher learns hosts from their hellos and the log: wait until it knows all of them.
    await until(
      async () => {
        const dry = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
          patchId: patch.patchId,
          version: patch.version,
          selector: { kernelReleases: [], labels: { fleet: 'bench' }, hostIds: [] },
          strategy: { canaryCount: canary, waves: [{ percent: 100 }], soakSeconds: 0, onFailure: 1 },
          dryRun: true,
          skipApproval: true,
        }).catch(() => undefined);
        return (dry?.rollout?.waves.reduce((n, w) => n + w.hosts.length, 0) ?? 0) === hosts;
      },
      'the dispatcher knows every host',
      // With several instances, the hosts of the others are known from their enrollment in the log.
      DISPATCHERS > 1 ? 600_000 : 120_000,
      pollMs,
    );

    // The rollout starts from a settled fleet: the ledger has taken in every host's enrollment
    // (30,000 start events for 10,000 hosts), so what follows measures the rollout, not that backlog.
    if (ledgerClient) {
      const lc = ledgerClient;
      await until(
        async () => (await countLedgerHosts(lc, {}).catch(() => 0)) === hosts,
        'the ledger knows every host',
        600_000,
        pollMs,
      );
      log('the ledger knows every host');
    }

    // CPU each part used during the rollout: on a shared machine the wall clock says as much
    // about the neighbours as about rebootless; these say what the rollout itself cost.
    const parts: Record<string, number[]> = {
      dispatcher: instances.map((d) => d.process.pid),
      builder: [built.process.pid],
      ledger: processes.filter((p) => p.name === 'ledger').map((p) => p.pid),
      agents: fleet instanceof ForkedFleet ? fleet.pids() : [process.pid],
    };
    const cpuOf = (pids: number[]) => pids.reduce((n, pid) => n + (cpuSeconds(pid) ?? 0), 0);
    const partsBefore = Object.fromEntries(Object.entries(parts).map(([k, pids]) => [k, cpuOf(pids)]));
    const cpuBefore = instances.map((d) => cpuSeconds(d.process.pid) ?? 0);
    const loadAtCreate = loadAverage();
    const t0 = Date.now();
    // On the monotonic clock --cpu-prof timestamps its samples with: the rollout's share of a profile.
    const monotonicAtCreate = process.hrtime.bigint() / 1000n;
    const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
      patchId: patch.patchId,
      version: patch.version,
      selector: { kernelReleases: [], labels: { fleet: 'bench' }, hostIds: [] },
      // What is measured is the rollout, not the wait for a second person (ADR 0013).
      skipApproval: true,
      strategy: {
        canaryCount: canary,
        waves: [{ percent: 100 }],
        soakSeconds: 0,
        onFailure: 1,
        applyTimeoutSeconds: 900,
        maxInFlight: MAX_IN_FLIGHT,
      },
    });
    const rolloutId = rollout!.rolloutId;
    let last: dispatcher.Rollout | undefined;
    let allSentSeconds: number | undefined;
    let watching = true;
    // The ledger is watched while the rollout ends, not after: its figure is when it first showed
    // every host, whenever the dispatcher's completion was seen.
    let ledgerSeconds: number | null = null;
    const ledgerWatch = ledgerClient
      ? (async (lc) => {
          await until(async () => !watching || allSentSeconds !== undefined, 'every command sent', 900_000, 250);
          // Every host's stack as the ledger counts it: what the agents reported, not what the
          // dispatcher asked for.
          await until(
            async () => !watching || (await countLedgerHosts(lc, { carriesPatchId: patch.patchId })) === hosts,
            'the ledger shows the patch on every host',
            600_000,
            pollMs / 2,
          );
          if (watching) ledgerSeconds = (Date.now() - t0) / 1000;
        })(ledgerClient).catch((error: unknown) => {
          ledgerNote = `the ledger did not show every host: ${String(error)}`;
        })
      : Promise.resolve();
    await until(
      async () => {
        // Counts, not 100,000 hosts every poll: what is measured is the rollout, not its 2 MB views.
        last = (
          await unary<dispatcher.GetRolloutResponse>(
            client,
            'getRollout',
            { rolloutId, view: dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY },
            60_000,
          )
        ).rollout;
        const pending = last?.waves.some((w) =>
          w.hostCounts.some((c) => c.state === dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_PENDING && c.hosts > 0),
        );
        if (allSentSeconds === undefined && last && !pending) allSentSeconds = (Date.now() - t0) / 1000;
        if (last?.state === dispatcher.RolloutState.ROLLOUT_STATE_PAUSED) {
          throw new Error(`the rollout paused: ${last.stateReason}`);
        }
        return last?.state === dispatcher.RolloutState.ROLLOUT_STATE_COMPLETED;
      },
      'every host applied',
      900_000,
      pollMs,
    ).catch((error: unknown) => {
      watching = false;
      throw error;
    });
    const appliedSeconds = (Date.now() - t0) / 1000;
    log(`rollout window in --cpu-prof time: ${monotonicAtCreate} to ${process.hrtime.bigint() / 1000n} µs`);
    const dispatcherCpu = instances.map((d, i) => (cpuSeconds(d.process.pid) ?? 0) - cpuBefore[i]!);
    const partsCpu = Object.fromEntries(
      Object.entries(parts).map(([k, pids]) => [k, Math.round((cpuOf(pids) - partsBefore[k]!) * 100) / 100]),
    );
    const loadAtApplied = loadAverage();
    const succeeded = last!.waves
      .flatMap((w) => w.hostCounts)
      .filter((c) => c.state === dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_SUCCEEDED)
      .reduce((n, c) => n + c.hosts, 0);
    log(`rollout completed in ${appliedSeconds.toFixed(1)} s (${succeeded} hosts succeeded)`);

    await ledgerWatch;
    const ledgerReads =
      ledgerClient && ledgerSeconds !== null
        ? await timeLedgerReads(ledgerClient, rolloutId, patch.patchId)
        : undefined;
    ledgerClient?.close();
    client.close();

    // A dispatcher instance keeps no checkpoint: one started (or restarted) now reads the whole
    // log this run wrote before it serves. How long that takes, beside how long the log is.
    const logRecords = Number((await replayLag(kafka, topic, new Map())).end);
    const startedAt = performance.now();
    let lateStartSeconds: number | null = null;
    let lateRss: number | null = null;
    let lateError: string | undefined;
    try {
      const late = await startDispatcher({
        ...env,
        dataDir: path.join(root, 'dispatcher-late'),
        nodeArgs: [`--max-old-space-size=${DISPATCHER_HEAP_MIB}`, ...SEMI_SPACE_ARGS],
        readyWithinMs: 900_000,
        extra: {
          DISPATCHER_TRUSTED_DATA_DIRS: [builderDir, ...dispatcherDirs].join(','),
          LOG_LEVEL: 'warn',
          ...(DISPATCHERS > 1 ? { DISPATCHER_INSTANCE: 'late', DISPATCHER_DATABASE_URL: databaseUrl! } : {}),
        },
      });
      lateStartSeconds = (performance.now() - startedAt) / 1000;
      lateRss = peakRssMiB(late.process.pid) ?? null;
      await late.process.stop();
    } catch (error) {
      // The rollout's figures stand without this one.
      lateError = String(error).split('\n')[0];
    }
    log(
      `a dispatcher instance started on the log (${logRecords} records) ` +
        (lateStartSeconds === null ? `did not serve: ${lateError}` : `served after ${lateStartSeconds.toFixed(1)} s`),
    );

    // Where the module came from: the builder's count of full serves per digest, the cache's work.
    const digest = patch.artifacts[RELEASE]!;
    const builderServes = await countersBy(builderMetrics, 'rebootless_artifacts_served_total', 'digest');
    const cacheRequests = await countersBy(dispatcherMetrics, 'rebootless_artifact_cache_requests_total', 'result');
    const cacheBytes = await countersBy(dispatcherMetrics, 'rebootless_artifact_cache_bytes_total', 'direction');
    const artifacts = {
      agents_share_downloads_per_process: SHARED_DOWNLOADS,
      dispatcher_artifact_serves_at_once: Number(process.env['BENCH_ARTIFACT_SERVES'] ?? 64),
      builder_fetches_per_artifact: builderServes[digest] ?? 0,
      builder_fetches_by_caller: await countersBy(builderMetrics, 'rebootless_artifacts_served_total', 'caller'),
      cache_requests: { hit: cacheRequests['hit'] ?? 0, miss: cacheRequests['miss'] ?? 0 },
      cache_bytes_served: cacheBytes['served'] ?? 0,
      cache_bytes_fetched_from_builder: cacheBytes['fetched'] ?? 0,
    };
    log(`artifacts: ${JSON.stringify(artifacts)}`);
    if (HOLD_MS > 0) {
      // Everything still up, for a heap snapshot or a look at /proc (BENCH_HOLD_MS).
      log(`holding for ${HOLD_MS} ms: dispatchers ${instances.map((d) => d.process.pid).join(', ')}`);
      await new Promise((r) => setTimeout(r, HOLD_MS));
    }

    return {
      date: new Date().toISOString(),
      hosts: hosts,
      canary_hosts: canary,
      kernel_release: RELEASE,
      max_in_flight: MAX_IN_FLIGHT,
      agents:
        (fleetWorkers > 0 ? `in ${fleetWorkers} child processes` : 'in this process') +
        ', one simulated kernel and data dir each (in /dev/shm); ' +
        (SHARED_DOWNLOADS
          ? 'per process one module store and one FetchArtifact (to the dispatcher) per digest'
          : 'each agent fetching its own copy from the dispatcher') +
        ', each agent verifying the manifest with its pinned key and hashing the module itself',
      agent_started_hold_ms: STARTED_HOLD_MS === undefined ? 'the agent default (2000)' : Number(STARTED_HOLD_MS),
      hosts_succeeded: succeeded,
      seconds_create_to_last_command_sent: allSentSeconds === undefined ? null : Math.round(allSentSeconds * 100) / 100,
      seconds_create_to_all_applied: Math.round(appliedSeconds * 100) / 100,
      seconds_create_to_all_in_ledger: ledgerSeconds === null ? null : Math.round(ledgerSeconds * 100) / 100,
      ...(ledgerNote ? { ledger_note: ledgerNote } : {}),
      ...(ledgerReads ? { ledger_reads_ms: ledgerReads } : {}),
      dispatcher_instances: DISPATCHERS,
      dispatcher_heap_limit_mib: DISPATCHER_HEAP_MIB,
      ledger_heap_limit_mib: LEDGER_HEAP_MIB,
      semi_space_mib: SEMI_SPACE_MIB || 'the V8 default',
      // With several instances: the first (which drives the rollout), then the others.
      dispatcher_peak_rss_mib:
        DISPATCHERS > 1
          ? instances.map((d) => peakRssMiB(d.process.pid) ?? null)
          : (peakRssMiB(disp.process.pid) ?? null),
      ledger_peak_rss_mib: processes
        .filter((p) => p.name === 'ledger')
        .map((p) => peakRssMiB(p.pid) ?? null)
        .at(0),
      // The dispatcher's own share: CPU it used from CreateRollout to the last apply.
      dispatcher_cpu_seconds_during_rollout:
        DISPATCHERS > 1
          ? dispatcherCpu.map((c) => Math.round(c * 100) / 100)
          : Math.round(dispatcherCpu[0]! * 100) / 100,
      ...(DISPATCHERS > 1 ? { agents_per_dispatcher: await agentsPerInstance(databaseUrl!) } : {}),
      // Another instance started once the ledger had it all: it reads the whole log before serving.
      dispatcher_start_on_log: {
        log_records: logRecords,
        seconds_to_serving: lateStartSeconds === null ? null : Math.round(lateStartSeconds * 100) / 100,
        peak_rss_mib: lateRss,
        ...(lateError ? { error: lateError } : {}),
      },
      cpu_seconds_create_to_all_applied: partsCpu,
      // Runnable tasks on the machine (all users): at CreateRollout, and when every host had applied.
      load_average_at_create: loadAtCreate,
      load_average_at_all_applied: loadAtApplied,
      module_bytes: storedModuleBytes(path.join(builderDir, 'artifacts')),
      artifacts,
    };
  } finally {
    finished = true;
    await fleet?.close().catch(() => undefined);
    for (const p of processes.reverse()) await p.stop().catch(() => undefined);
    await deleteBenchTopic(kafka, topic);
    if (databaseUrl) await dropDatabase(databaseUrl).catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function freshDatabase(name: string): Promise<string> {
  const c = new PgClient({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(PG_ADMIN);
  u.pathname = `/${name}`;
  return u.toString();
}

async function dropDatabase(url: string): Promise<void> {
  const c = new PgClient({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

/** How many agents each instance held when the rollout completed (they spread by host id). */
async function agentsPerInstance(url: string): Promise<Record<string, number>> {
  const c = new PgClient({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ instance: string; n: string }>(
      'SELECT instance, count(*) AS n FROM dispatcher_agent_presence WHERE connected GROUP BY instance ORDER BY instance',
    );
    return Object.fromEntries(rows.map((r) => [r.instance, Number(r.n)]));
  } finally {
    await c.end();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `[bench:rollout] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
