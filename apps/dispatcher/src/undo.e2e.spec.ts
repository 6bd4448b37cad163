// Undos that take more than one step, as an operator runs them: the built builder, dispatcher and
// ledger as child processes on a fresh topic of the real broker, livepatch modules really compiled
// by the builder, and real agents on simulated kernels. The ledger plans; the dispatcher carries
// the plan out one step at a time; after each step the ledger's stack is the one the plan said.
// Build first (`npm run build`); the kernel headers come from the builder's cache.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { dispatcher, events, grpcServices, ledger, toTimestamp } from '@rebootless/contracts';
import { decodeEvent } from '@rebootless/events';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import {
  buildPatch,
  freePort,
  freshEventsTopic,
  readWholeTopic,
  rolloutClient,
  serviceClient,
  SimulatedFleet,
  startBuilder,
  startDispatcher,
  startLedger,
  testKafka,
  unary,
  type BuiltPatch,
  type Client,
  type ServiceProcess,
} from '@rebootless/testing';

jest.setTimeout(15 * 60_000);

const R = dispatcher.RolloutState;
const STEP = ledger.UndoStepKind;
const brokers = process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092';
const kafka = testKafka('undo-e2e');

let RELEASE: string;
let root: string;
let topic: string;
const services: ServiceProcess[] = [];
let client: Client;
let ledgerClient: Client;
let fleet: SimulatedFleet;
let builderAddress: string;
let builderKey: Buffer;
let dispatcherAddress: string;
let low: BuiltPatch;
let high: BuiltPatch;
let cumulative1: BuiltPatch;
let cumulative2: BuiltPatch;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-undo-e2e-'));
  topic = await freshEventsTopic('undo', 3);
  RELEASE = await currentDebianCloudRelease();
  const builderDir = path.join(root, 'builder');
  const builder = await startBuilder({ topic, brokers, dataDir: builderDir });
  services.push(builder.process);
  builderAddress = builder.address;
  builderKey = builder.publicKey;
  const build = (patchName: string, version: string, replace: boolean) =>
    buildPatch(builder.address, {
      patchName,
      version,
      kernelReleases: [RELEASE],
      replace,
      replacementText: `${patchName} ${version}`,
    });
  low = await build('undo-low', '1.0.0', false);
  high = await build('undo-high', '1.0.0', false);
  cumulative1 = await build('undo-cumulative', '1.0.0', true);
  cumulative2 = await build('undo-cumulative', '2.0.0', true);

  const dispatcherDir = path.join(root, 'dispatcher');
  const ledgerAddress = `127.0.0.1:${await freePort()}`;
  const dispatcherService = await startDispatcher({
    topic,
    brokers,
    dataDir: dispatcherDir,
    extra: { DISPATCHER_LEDGER_ADDRESS: ledgerAddress, DISPATCHER_TRUSTED_DATA_DIRS: builderDir },
  });
  services.push(dispatcherService.process);
  // The "old" hosts run a kernel whose livepatch follows the pre-5.1 rule (only the top patch may
  // be disabled): the simulated kernel is switched to it, and the ledger is told so, the way a
  // distribution kernel that differs from its upstream version is described.
  const ledgerService = await startLedger({
    topic,
    brokers,
    dataDir: path.join(root, 'ledger'),
    address: ledgerAddress,
    trustedDataDirs: [builderDir, dispatcherDir],
    extra: { LEDGER_KERNEL_DISABLE_ORDER: `${RELEASE}=top-only` },
  });
  services.push(ledgerService.process);
  dispatcherAddress = dispatcherService.address;
  client = rolloutClient(dispatcherAddress);
  ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress);

  fleet = new SimulatedFleet(
    {
      root: path.join(root, 'hosts'),
      dispatcherAddress,
      builderAddress,
      builderPublicKey: builderKey,
      agentTransitionTimeoutMs: 3_000,
    },
    [
      { hostId: 'old-0', kernelRelease: RELEASE, labels: { group: 'undo' }, stacking: 'top-only' },
      { hostId: 'chain-0', kernelRelease: RELEASE, labels: { group: 'undo' } },
    ],
  );
  await fleet.start();
  await until(() => fleet.connectedCount() === 2, 'both agents connected');
});

afterAll(async () => {
  client?.close();
  ledgerClient?.close();
  await fleet?.close();
  for (const s of services.reverse()) await s.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function strategy(): Partial<events.RolloutStrategy> {
  return {
    canaryHostIds: [],
    canaryCount: 0,
    waves: [{ percent: 100 }],
    soakSeconds: 0,
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
    applyTimeoutSeconds: 60,
    offlineDeadlineSeconds: 600,
  };
}

async function untilDone(rolloutId: string): Promise<dispatcher.Rollout> {
  let last: dispatcher.Rollout | undefined;
  await until(
    async () => {
      last = (await unary<dispatcher.GetRolloutResponse>(client, 'getRollout', { rolloutId })).rollout!;
      return [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED, R.ROLLOUT_STATE_ABORTED].includes(last.state);
    },
    `rollout ${rolloutId} ends (last: ${last && R[last.state]} ${last?.stateReason})`,
    120_000,
  );
  return last!;
}

async function applyTo(hostId: string, patch: BuiltPatch): Promise<void> {
  const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
    patchId: patch.patchId,
    version: patch.version,
    selector: { kernelReleases: [], labels: {}, hostIds: [hostId] },
    strategy: strategy(),
    skipApproval: true,
  });
  const done = await untilDone(rollout!.rolloutId);
  expect([R[done.state], done.stateReason]).toEqual([R[R.ROLLOUT_STATE_COMPLETED], '']);
}

const label = (p: BuiltPatch) => `${p.patchId}@${p.version}`;

/** The live patches of a host's stack as the ledger tells it (now, or at an instant), oldest first. */
async function ledgerStack(hostId: string, at?: number): Promise<string[]> {
  const stack =
    at === undefined
      ? (await unary<ledger.GetHostResponse>(ledgerClient, 'getHost', { hostId })).host!.stack!
      : (
          await unary<ledger.GetHostStackAtResponse>(ledgerClient, 'getHostStackAt', {
            hostId,
            at: toTimestamp(new Date(at)),
          })
        ).stack!;
  return stack.entries
    .filter((e) => e.state === ledger.StackEntryState.STACK_ENTRY_STATE_ENABLED)
    .map((e) => `${e.patch?.patchId}@${e.patch?.version}`);
}

/** The undo's commands to the host and the agent's fact answering each, in order, from the log. */
async function stepsInLog(rolloutId: string, hostId: string) {
  const records = await readWholeTopic(kafka, topic);
  const commands: { step: number; kind: string; patch: string; commandId: string; downgrade: boolean }[] = [];
  const facts = new Map<string, { type: string; at: number }>();
  for (const r of records) {
    if (r.key !== `host/${hostId}`) continue;
    const { body } = decodeEvent(r.value!);
    const command = body.hostApplyRequested ?? body.hostRevertRequested;
    if (command && command.rolloutId === rolloutId) {
      commands.push({
        step: command.undoStep,
        kind: body.type,
        patch: `${command.patchId}@${command.version}`,
        commandId: command.commandId,
        downgrade: body.hostApplyRequested?.allowDowngrade ?? false,
      });
    }
    const fact = body.patchApplied ?? body.patchReverted ?? body.patchApplyFailed ?? body.patchRevertFailed;
    if (fact?.commandId) {
      const at = Number(body.occurredAt!.seconds) * 1000 + Math.floor(body.occurredAt!.nanos / 1_000_000);
      facts.set(fact.commandId, { type: body.type, at });
    }
  }
  return commands.map((c) => ({ ...c, fact: facts.get(c.commandId) }));
}

/** Asks for the undo, checks the ledger's plan, waits for the end, and checks each step in the log and the ledger. */
async function undoStepByStep(
  hostId: string,
  patch: BuiltPatch,
  expected: { plan: [ledger.UndoStepKind, string, 'automatic'?][]; stacksAfter: string[][] },
): Promise<string> {
  const plan = await unary<ledger.PlanUndoResponse>(ledgerClient, 'planUndo', { hostId, patchId: patch.patchId });
  expect(
    plan.steps.map((s) => [s.kind, `${s.patch?.patchId}@${s.patch?.version}`, ...(s.automatic ? ['automatic'] : [])]),
  ).toEqual(expected.plan);
  // An automatic step is the agent's part of the step before: no command of its own.
  const commanded = expected.plan.filter(([, , automatic]) => !automatic);

  const { rollout } = await unary<dispatcher.UndoResponse>(client, 'undo', {
    hostId,
    patchId: patch.patchId,
    reason: 'e2e multi-step undo',
    strategy: strategy(),
  });
  expect(rollout!.kind).toBe(dispatcher.RolloutKind.ROLLOUT_KIND_UNDO);
  const done = await untilDone(rollout!.rolloutId);
  expect([R[done.state], done.stateReason]).toEqual([R[R.ROLLOUT_STATE_COMPLETED], '']);

  // One command per step, in the plan's order, each confirmed by the agent's fact before the next went out.
  const steps = await stepsInLog(rollout!.rolloutId, hostId);
  expect(steps.map((s) => [s.step, s.kind, s.patch])).toEqual(
    commanded.map(([kind, p], i) => [
      i + 1,
      kind === STEP.UNDO_STEP_KIND_APPLY ? 'HostApplyRequested' : 'HostRevertRequested',
      p,
    ]),
  );
  expect(steps.map((s) => s.fact?.type)).toEqual(
    commanded.map(([kind]) => (kind === STEP.UNDO_STEP_KIND_APPLY ? 'PatchApplied' : 'PatchReverted')),
  );
  // After each step, the ledger's stack (as of that step's fact) is the one the plan leads to.
  await until(
    async () => (await ledgerStack(hostId)).join() === expected.stacksAfter.at(-1)!.join(),
    'the ledger shows the last step',
  );
  const stacks: string[][] = [];
  for (const s of steps) stacks.push(await ledgerStack(hostId, s.fact!.at));
  expect(stacks).toEqual(expected.stacksAfter);
  // And the kernel agrees with the ledger.
  expect((await fleet.liveModules(hostId)).length).toBe(expected.stacksAfter.at(-1)!.length);
  return rollout!.rolloutId;
}

describe('an undo that takes more than one step', () => {
  it('before 5.1: the patch above is reverted first, then the target, then the one above applied again', async () => {
    await applyTo('old-0', low);
    await applyTo('old-0', high);
    await until(async () => (await ledgerStack('old-0')).length === 2, 'the ledger shows both patches');
    expect(await ledgerStack('old-0')).toEqual([label(low), label(high)]);

    await undoStepByStep('old-0', low, {
      plan: [
        [STEP.UNDO_STEP_KIND_REVERT, label(high)],
        [STEP.UNDO_STEP_KIND_REVERT, label(low)],
        [STEP.UNDO_STEP_KIND_APPLY, label(high)],
      ],
      stacksAfter: [[label(low)], [], [label(high)]],
    });
  });

  it('a replace chain: undoing cumulative 2.0.0 loads 1.0.0 again, a downgrade', async () => {
    await applyTo('chain-0', cumulative1);
    await applyTo('chain-0', cumulative2);
    await until(
      async () => (await ledgerStack('chain-0')).join() === label(cumulative2),
      'the ledger shows only cumulative 2.0.0 (it replaced 1.0.0)',
    );
    const rollout = await undoStepByStep('chain-0', cumulative2, {
      plan: [
        [STEP.UNDO_STEP_KIND_APPLY, label(cumulative1)],
        [STEP.UNDO_STEP_KIND_REVERT, label(cumulative2), 'automatic'],
      ],
      stacksAfter: [[label(cumulative1)]],
    });
    // The agent loads an older version only when the command says "downgrade".
    expect((await stepsInLog(rollout, 'chain-0')).map((s) => s.downgrade)).toEqual([true]);
  });
});
