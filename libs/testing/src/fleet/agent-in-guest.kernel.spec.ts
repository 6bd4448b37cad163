// The agent on a real kernel, driven by the real dispatcher: the built builder, dispatcher and
// ledger run as processes on the host (one fresh topic of the broker the Jest global setup
// started); the agent daemon (apps/agent, bundled) runs inside a QEMU guest booted from Debian's
// current cloud kernel and reaches the dispatcher's AgentGateway and the builder's artifact
// service only through two guestfwd forwards (restrict=on). Its events go through the gateway
// relay: Kafka's advertised address would be the guest itself. Every step is checked twice: in
// the guest by the lab's probe (what the kernel shows), on the host by the ledger.
// Needs: `npm run build`, apt lists, qemu-system-x86, busybox-static, gcc-12, make.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { dispatcher, grpcServices, ledger } from '@rebootless/contracts';
import { KernelLab, type GuestVm, type ProbeState } from '@rebootless/kernel-lab';
import { currentDebianCloudRelease, debianCloudReleases, releaseMajorMinor } from '@rebootless/kernel-toolchain';
import { freshEventsTopic } from '../kafka';
import { agentGuestForwards, allAtOnce, GUEST_BUILDER_PORT, GuestHost, prepareAgentLab, until } from './guest-rollout';
import {
  buildPatch,
  hostStates,
  rolloutClient,
  serviceClient,
  startFleetServices,
  stopKeepingLogs,
  unary,
  type BuiltPatch,
  type Client,
  type FleetServices,
} from './rig';

jest.setTimeout(20 * 60_000); // TCG on a shared 2-core machine; a first run also downloads headers

const HOST_ID = 'kernel-guest';
const TAINT_LIVEPATCH = 32768;
const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;

describe('the agent in a QEMU guest, driven by the real dispatcher', () => {
  const timings: Record<string, number> = {};
  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      timings[step] = Date.now() - started;
    }
  };
  let root: string;
  let services: FleetServices;
  let release: string;
  let foreignRelease: string;
  const patches: Record<'a' | 'b' | 'c' | 'foreign', BuiltPatch> = {} as never;
  let lab: KernelLab;
  let vm: GuestVm;
  let rollouts: Client;
  let ledgerClient: Client;
  let bootCmdline: string;
  let consoleFile: string;
  let cRolloutId: string;

  const state = () => vm.probe.state();
  const settled = (what: string, done: (s: ProbeState) => boolean) =>
    vm.probe.waitFor((s) => s.livepatch.every((p) => p.transition === '0') && done(s), what, 120_000);

  let host: GuestHost;
  const createRollout = (patch: BuiltPatch) => host.createRollout(patch);
  const rolloutDone = (rolloutId: string, states: dispatcher.RolloutState[]) => host.rolloutDone(rolloutId, states);
  const ledgerHost = () => host.ledgerHost();
  const history = () => host.history();
  const ledgerStackIs = (modules: string[], what: string) => host.ledgerStackIs(modules, what);

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-agent-guest-'));
    const topic = await freshEventsTopic('kernel-agent', 3);
    release = await timed('resolveRelease', () => currentDebianCloudRelease());
    const served = await debianCloudReleases();
    const others = served.filter((r) => r !== release);
    const otherLine = others.filter((r) => releaseMajorMinor(r) !== releaseMajorMinor(release));
    foreignRelease = (otherLine.length > 0 ? otherLine : others).at(-1)!;

    // The builder first: its key is what the agent pins, and it goes into the initramfs.
    services = await timed('startServices', () =>
      startFleetServices({ topic, brokers: process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092', root }),
    );
    rollouts = rolloutClient(services.dispatcherAddress);
    ledgerClient = serviceClient(grpcServices.ledger, services.ledgerAddress);
    host = new GuestHost(HOST_ID, rollouts, ledgerClient);

    const build = (name: string, text: string, releases: string[], replace = false) =>
      buildPatch(services.builderAddress, {
        patchName: name,
        replacementText: text,
        kernelReleases: releases,
        replace,
      });
    await timed('buildPatches', async () => {
      // One at a time: the builder runs one build worker here.
      patches.a = await build('kl-cmdline-a', 'rebootless patch A', [release]);
      patches.b = await build('kl-cmdline-b', 'rebootless patch B', [release]);
      patches.c = await build('kl-cmdline-c', 'rebootless cumulative C', [release], true);
      patches.foreign = await build('kl-foreign', `built for ${foreignRelease}`, [foreignRelease]);
    });
    lab = await timed('prepare', () =>
      prepareAgentLab({
        hostId: HOST_ID,
        builderKey: services.builderKey,
        dataDir: '/var/lib/rebootless/agent', // on the data disk: survives reboot()
        release,
      }),
    );
    consoleFile = path.join(lab.cacheDir, 'console', 'agent-in-guest.kernel.spec.log');
    fs.mkdirSync(path.dirname(consoleFile), { recursive: true });
    fs.writeFileSync(consoleFile, '');
    vm = await timed('firstBoot', () =>
      lab.boot({
        memoryMb: 768, // probe, agent and a second Node program at once
        dataDisk: { file: path.join(root, 'data.img') },
        guestForwards: agentGuestForwards(services),
        consoleFile,
      }),
    );
    bootCmdline = (await state()).cmdline;
  });

  afterAll(async () => {
    await vm?.stop();
    rollouts?.close();
    ledgerClient?.close();
    await stopKeepingLogs(services, 'agent-guest');
    if (root) fs.rmSync(root, { recursive: true, force: true });
    console.log(
      `agent in guest: release ${release}, foreign ${foreignRelease}, boots ${JSON.stringify(vm?.boots.map((b) => b.ms))} ms, ` +
        `console ${consoleFile}\n  ${Object.entries(timings)
          .map(([k, v]) => `${k}: ${v} ms`)
          .join('\n  ')}`,
    );
  });

  it('the agent enrolls through the gateway: the ledger knows the host, its kernel and its boot', async () => {
    const s = await state();
    expect(s.release).toBe(release);
    expect(s.tainted).toBe(0);
    const host = await timed('enrolled', () =>
      until(async () => {
        const h = await ledgerHost();
        return h.stack?.bootId === s.bootId ? h : undefined;
      }, 'the ledger knows the guest'),
    );
    expect(host.facts!.kernelRelease).toBe(release);
    expect(host.stack!.entries).toEqual([]);
    const types = (await history()).map((h) => h.type);
    expect(types).toEqual(expect.arrayContaining(['HostEnrolled', 'HostBooted']));
  });

  it('a rollout of A: the agent fetches, verifies and loads it; /proc/cmdline, sysfs, tainted and the ledger agree', async () => {
    const rollout = await createRollout(patches.a);
    const done = await timed('rolloutA', () =>
      rolloutDone(rollout.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(done.stateReason).toBe('');
    expect(hostStates(done).get(HOST_ID)).toBe(H.HOST_ROLLOUT_STATE_SUCCEEDED);

    const s = await settled('A live', (x) => x.livepatch.length === 1);
    expect(s.cmdline).toBe('rebootless patch A');
    expect(s.livepatch).toEqual([
      { name: patches.a.moduleName, enabled: '1', transition: '0', functions: ['vmlinux/cmdline_proc_show,1'] },
    ]);
    expect(s.tainted & TAINT_LIVEPATCH).toBe(TAINT_LIVEPATCH);

    const stack = await ledgerStackIs([patches.a.moduleName], 'A in the stack');
    expect(stack.entries[0]).toMatchObject({
      patch: { patchId: patches.a.patchId, version: patches.a.version },
      state: ledger.StackEntryState.STACK_ENTRY_STATE_ENABLED,
      rolloutId: rollout.rolloutId,
    });
    expect(stack.bootId).toBe(s.bootId);
    const applied = (await history()).filter((h) => h.type === 'PatchApplied');
    expect(applied.map((h) => h.patchId)).toEqual([patches.a.patchId]);
  });

  it('a rollout of B stacks on the same function: B runs, A stays under it', async () => {
    const rollout = await createRollout(patches.b);
    const done = await timed('rolloutB', () =>
      rolloutDone(rollout.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(hostStates(done).get(HOST_ID)).toBe(H.HOST_ROLLOUT_STATE_SUCCEEDED);

    const s = await settled('A and B live', (x) => x.livepatch.length === 2);
    expect(s.cmdline).toBe('rebootless patch B');
    expect(s.livepatch.map((p) => [p.name, p.enabled])).toEqual([
      [patches.a.moduleName, '1'],
      [patches.b.moduleName, '1'],
    ]);
    const stack = await ledgerStackIs([patches.a.moduleName, patches.b.moduleName], 'A then B');
    // Whose code cmdline_proc_show runs now: B's, as in the guest.
    const fn = stack.functions.find((f) => f.function?.name === 'cmdline_proc_show');
    expect(fn?.runs?.moduleName).toBe(patches.b.moduleName);
  });

  it('Undo of B, planned by the ledger and carried out by the dispatcher: A runs again', async () => {
    const { rollout } = await unary<dispatcher.UndoResponse>(rollouts, 'undo', {
      hostId: HOST_ID,
      patchId: patches.b.patchId,
      reason: 'kernel tier: undo the stacked patch',
      strategy: allAtOnce(),
    });
    expect(rollout!.kind).toBe(dispatcher.RolloutKind.ROLLOUT_KIND_UNDO);
    const done = await timed('undoB', () =>
      rolloutDone(rollout!.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(done.stateReason).toBe('');

    const s = await settled('B gone', (x) => x.livepatch.length === 1 && !x.modules.includes(patches.b.moduleName));
    expect(s.cmdline).toBe('rebootless patch A');
    expect(s.livepatch.map((p) => p.name)).toEqual([patches.a.moduleName]);
    await ledgerStackIs([patches.a.moduleName], 'only A after the undo');
    const reverted = (await history()).filter((h) => h.type === 'PatchReverted');
    expect(reverted.map((h) => h.moduleName)).toEqual([patches.b.moduleName]);
  });

  it('a rollout of the cumulative C (replace) takes over: only C in sysfs, A removed by the agent', async () => {
    const rollout = await createRollout(patches.c);
    cRolloutId = rollout.rolloutId;
    const done = await timed('rolloutC', () =>
      rolloutDone(rollout.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(hostStates(done).get(HOST_ID)).toBe(H.HOST_ROLLOUT_STATE_SUCCEEDED);

    const s = await settled(
      'C alone',
      (x) => x.livepatch.length === 1 && x.livepatch[0]!.name === patches.c.moduleName,
    );
    expect(s.cmdline).toBe('rebootless cumulative C');
    // The replaced module is unloaded too (the agent removes what C superseded).
    await vm.probe.waitFor((x) => !x.modules.includes(patches.a.moduleName), 'A unloaded', 60_000);
    const stack = await ledgerStackIs([patches.c.moduleName], 'only C');
    expect(stack.entries[0]).toMatchObject({ replace: true, patch: { patchId: patches.c.patchId } });
  });

  it('a reboot: HostBooted, the ledger stack empties, then the agent applies C again', async () => {
    const before = await state();
    const boot = await timed('reboot', () => vm.reboot());
    expect(boot.bootId).toBeDefined();
    expect(boot.bootId).not.toBe(before.bootId);

    // The agent re-applies what it was told to keep (AGENT_REAPPLY=at-start), from its kept copy.
    const s = await timed('reapplied', () =>
      settled('C applied again', (x) => x.livepatch.length === 1 && x.cmdline === 'rebootless cumulative C'),
    );
    expect(s.bootId).toBe(boot.bootId);
    expect(s.livepatch.map((p) => [p.name, p.enabled])).toEqual([[patches.c.moduleName, '1']]);

    const stack = await until(async () => {
      const st = (await ledgerHost()).stack!;
      return st.bootId === s.bootId && st.entries.length === 1 ? st : undefined;
    }, 'the ledger shows C on the new boot');
    expect(stack.entries[0]!.moduleName).toBe(patches.c.moduleName);

    // What the ledger recorded from the new boot on.
    const sinceBoot = async () => {
      const items = await history();
      const at = items.findIndex(
        (h) => h.type === 'HostBooted' && (h.body['hostBooted'] as { bootId: string }).bootId === s.bootId,
      );
      return at < 0 ? undefined : items.slice(at);
    };
    const after = await until(sinceBoot, 'the ledger has the HostBooted of the new boot');
    const booted = after[0]!;
    expect(booted!.body['hostBooted']).toMatchObject({ bootId: s.bootId, previousBootId: before.bootId });
    const reapplied = after.find((h) => h.type === 'PatchApplied' && h.patchId === patches.c.patchId);
    expect(reapplied?.causationId).toMatch(/^at-start\//);
    // The dispatcher sends C again too (its rollout's desired state); the agent answers that it is
    // live already. A (replaced by C) and B (undone) are not sent again.
    const resent = await until(async () => {
      const items = (await sinceBoot()) ?? [];
      return items.some((h) => h.type === 'PatchApplied' && !h.causationId.startsWith('at-start/')) ? items : undefined;
    }, "the dispatcher's re-apply of C answered");
    expect([...new Set(resent.filter((h) => h.type === 'PatchApplied').map((h) => h.patchId))]).toEqual([
      patches.c.patchId,
    ]);
    expect(resent.filter((h) => h.type === 'HostApplyRequested').map((h) => h.patchId)).toEqual([patches.c.patchId]);
    expect((await state()).livepatch.map((p) => p.name)).toEqual([patches.c.moduleName]);
    // Between the boot and the re-apply the ledger's stack was empty: a reboot removes every patch.
    const { stack: atBoot } = await unary<ledger.GetHostStackAtResponse>(ledgerClient, 'getHostStackAt', {
      hostId: HOST_ID,
      at: booted!.occurredAt,
    });
    expect(atBoot!.entries).toEqual([]);
    expect(atBoot!.bootId).toBe(s.bootId);
  });

  it('RollbackRollout of C reverts it: the original /proc/cmdline, nothing in sysfs, an empty stack', async () => {
    await unary<dispatcher.RollbackRolloutResponse>(rollouts, 'rollbackRollout', {
      rolloutId: cRolloutId,
      reason: 'kernel tier: revert',
    });
    const done = await timed('rollbackC', () => rolloutDone(cRolloutId, [R.ROLLOUT_STATE_ROLLED_BACK]));
    expect(done.state).toBe(R.ROLLOUT_STATE_ROLLED_BACK);

    const s = await settled(
      'nothing live',
      (x) => x.livepatch.length === 0 && !x.modules.includes(patches.c.moduleName),
    );
    expect(s.cmdline).toBe(bootCmdline);
    expect(s.tainted & TAINT_LIVEPATCH).toBe(TAINT_LIVEPATCH); // K stays once set
    await ledgerStackIs([], 'an empty stack');
    const last = (await history()).filter((h) => h.type.startsWith('Patch')).at(-1);
    expect(last).toMatchObject({ type: 'PatchReverted', patchId: patches.c.patchId });
  });

  it("a module built for another release is refused by the agent's verification before any insmod", async () => {
    const before = await state();
    const run = await timed('foreignRefused', () =>
      vm.probe.run('agent-command', [
        JSON.stringify({
          hostId: HOST_ID,
          builderAddress: `10.0.2.100:${GUEST_BUILDER_PORT}`,
          builderPublicKey: services.builderKey.toString('hex'),
          dataDir: '/tmp/agent-command',
          apply: {
            commandId: `kernel-tier-foreign-${Date.now()}`,
            patchId: patches.foreign.patchId,
            version: patches.foreign.version,
            // The command claims this host's release; the signed manifest says otherwise.
            kernelRelease: release,
            artifactDigest: patches.foreign.artifacts[foreignRelease]!,
          },
        }),
      ]),
    );
    expect(run).toMatchObject({ code: 0 });
    const { result } = JSON.parse(run.stdout) as { result: dispatcher.CommandResult };
    expect(result.outcome).toBe(dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED);
    expect(result.stage).toBe('verify');
    expect(result.error).toContain(`wrong-kernel-release: the module is built for kernel ${foreignRelease}`);

    const after = await state();
    expect(after.tainted).toBe(before.tainted);
    expect(after.modules).toEqual(before.modules);
    expect(after.livepatch).toEqual([]);
    expect(after.cmdline).toBe(bootCmdline);
    // The kernel never saw it: no load attempt in its log either.
    expect((await vm.probe.dmesg()).stdout).not.toMatch(/kl_foreign|disagrees about version|version magic/);
  });

  it('the dispatcher never offers the foreign patch to this host', async () => {
    const error = await unary(rollouts, 'createRollout', {
      patchId: patches.foreign.patchId,
      version: patches.foreign.version,
      selector: { kernelReleases: [], labels: {}, hostIds: [HOST_ID] },
      strategy: allAtOnce(),
    }).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect(error?.code).toBe(status.FAILED_PRECONDITION);
    expect(error?.details).toContain("was not built for the selected hosts' kernels");
  });
});
