// Issue 18's whole path on the lab profile's own kernel: a diff to fs/proc/cmdline.c goes to the
// real builder (SubmitBuild), which runs the analyser, klp-build in its sandbox, signs the module
// the kernel's way, smoke-tests it in a guest of that kernel and publishes it; the real dispatcher
// rolls it out to the agent daemon in a QEMU guest of the same kernel (MODULE_SIG_FORCE), which
// loads it; the guest shows the fix; an undo takes it away. The ledger records each step. A
// module that oopses when it runs is stopped by the smoke stage; one changed byte or a foreign
// signing key gets past a stolen manifest key but not past the kernel.
// Needs: `npm run build`, the lab profile (`npm run kernel:profile`), qemu-system-x86, busybox-static.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { signManifest, type PatchManifest, ArtifactStore, sha256Hex } from '@rebootless/artifacts';
import { builder, dispatcher, grpcServices, ledger } from '@rebootless/contracts';
import { ChainStateFile } from '@rebootless/kafka';
import { profileKernelImage, type GuestVm, type ProbeState } from '@rebootless/kernel-lab';
import {
  defaultProfileCacheDir,
  KernelProfileCache,
  labProfile,
  makeModuleSigningKey,
  signModule,
  stripModuleSignature,
  type ProfileBuild,
} from '@rebootless/kernel-toolchain';
import { freshEventsTopic } from '../kafka';
import { agentGuestForwards, allAtOnce, GUEST_BUILDER_PORT, GuestHost, prepareAgentLab, until } from './guest-rollout';
import {
  buildPatch,
  hostStates,
  readStream,
  rolloutClient,
  serviceClient,
  startFleetServices,
  stopKeepingLogs,
  submitBuild,
  unary,
  type BuiltPatch,
  type Client,
  type FleetServices,
} from './rig';

jest.setTimeout(30 * 60_000); // klp-build, a smoke boot and the guest under TCG on a shared 2-core machine

const HOST_ID = 'lab-guest';
const CORPUS = path.join(__dirname, '..', '..', '..', 'kernel-toolchain', 'testdata');
const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;
const TAINT_LIVEPATCH = 32768;

describe('a diff, built with klp-build, rolled out live to the lab kernel and undone', () => {
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
  let profile: ProfileBuild;
  let services: FleetServices;
  let patch: BuiltPatch;
  let vm: GuestVm;
  let rollouts: Client;
  let ledgerClient: Client;
  let host: GuestHost;
  let bootCmdline: string;
  let consoleFile: string;

  const state = () => vm.probe.state();
  const settled = (what: string, done: (s: ProbeState) => boolean) =>
    vm.probe.waitFor((s) => s.livepatch.every((p) => p.transition === '0') && done(s), what, 120_000);
  const audit = (request: Partial<ledger.QueryAuditRequest>) =>
    readStream<ledger.QueryAuditResponse>(ledgerClient, 'queryAudit', request).then((rs) => rs.map((r) => r.record!));
  const diff = (file: string) => fs.readFileSync(path.join(CORPUS, file), 'utf8');

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-lab-rollout-'));
    profile = await timed('profile', () =>
      new KernelProfileCache({
        cacheDir: defaultProfileCacheDir(),
        onProgress: (line) => process.stdout.write(`${line}\n`),
      }).ensure(labProfile()),
    );
    const topic = await freshEventsTopic('kernel-lab-rollout', 3);
    services = await timed('startServices', () =>
      startFleetServices({
        topic,
        brokers: process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092',
        root,
        builderExtra: {
          BUILDER_KERNEL_PROFILES: 'lab',
          BUILDER_KERNEL_PROFILE_CACHE_DIR: defaultProfileCacheDir(),
          BUILDER_COMPILE_TIMEOUT_MS: String(15 * 60_000),
        },
      }),
    );
    rollouts = rolloutClient(services.dispatcherAddress);
    ledgerClient = serviceClient(grpcServices.ledger, services.ledgerAddress);
    host = new GuestHost(HOST_ID, rollouts, ledgerClient);

    patch = await timed('buildFromDiff', () =>
      buildPatch(services.builderAddress, {
        patchName: 'lab-cmdline-diff',
        kernelReleases: [profile.release],
        unifiedDiff: diff('klp-corpus/01-function-body.patch'),
        timeoutMs: 20 * 60_000,
      }),
    );

    const lab = await timed('prepare', () =>
      prepareAgentLab({
        hostId: HOST_ID,
        builderKey: services.builderKey,
        dataDir: '/var/lib/rebootless/agent',
        kernel: profileKernelImage(profile),
      }),
    );
    consoleFile = path.join(lab.cacheDir, 'console', 'lab-rollout.kernel.spec.log');
    fs.mkdirSync(path.dirname(consoleFile), { recursive: true });
    fs.writeFileSync(consoleFile, '');
    vm = await timed('boot', () =>
      lab.boot({ memoryMb: 768, guestForwards: agentGuestForwards(services), consoleFile }),
    );
    bootCmdline = (await state()).cmdline;
  });

  afterAll(async () => {
    await vm?.stop();
    rollouts?.close();
    ledgerClient?.close();
    await stopKeepingLogs(services, 'lab-rollout');
    if (root) fs.rmSync(root, { recursive: true, force: true });
    console.log(
      `lab rollout: ${profile?.release}, console ${consoleFile}\n  ${Object.entries(timings)
        .map(([k, v]) => `${k}: ${v} ms`)
        .join('\n  ')}`,
    );
  });

  it('the builder built the diff for the lab kernel, signed it the kernel’s way and smoke-tested it in a guest before publishing', async () => {
    const part = patch.build!.kernels[0]!;
    expect(part.kernelRelease).toBe('7.3.4-rebootless-lab');
    expect(part.manifest).toMatchObject({
      kernelRelease: '7.3.4-rebootless-lab',
      functions: [expect.objectContaining({ name: 'cmdline_proc_show' })],
    });
    expect(part.manifest!.toolchain['profile']).toMatch(/^lab-[0-9a-f]+$/);
    // The kernel's signature is in the module the agent gets (sign-file's trailer).
    const fetched = await new ArtifactStore({
      dir: path.join(services.dataDirs.builder, 'artifacts'),
      builderKey: services.builderKey,
    }).open(part.artifactDigest);
    expect(fs.readFileSync(fetched.modulePath).subarray(-28).toString()).toBe('~Module signature appended~\n');
    // The smoke test: in a guest of that very kernel, the patch live while /proc and /sys were read.
    expect(part.smoke).toMatchObject({ kernelRelease: '7.3.4-rebootless-lab', bootId: expect.stringMatching(/-/) });
    expect(part.smoke!.exercisedFiles).toBeGreaterThan(50);
    expect(part.smoke!.kernelLog.join('\n')).toMatch(/livepatch: enabling patch '.*lp_lab_cmdline_diff/);

    // The ledger has the build's events in order, the smoke test inside BuildSucceeded.
    const records = await until(async () => {
      const rs = await audit({ correlationId: patch.buildId });
      return rs.some((r) => r.body!.type === 'PatchPublished') ? rs : undefined;
    }, 'the ledger has the build published');
    expect(records.map((r) => r.body!.type)).toEqual(['BuildRequested', 'BuildSucceeded', 'PatchPublished']);
    expect(records[0]!.body!.buildRequested!.sourceKind).toBe(2); // FIX_SOURCE_KIND_UNIFIED_DIFF
    expect(records[1]!.body!.buildSucceeded!.smoke).toMatchObject({ kernelRelease: '7.3.4-rebootless-lab' });
  });

  it('the agent enrolls from the lab kernel, which enforces module signatures', async () => {
    const s = await state();
    expect(s.release).toBe('7.3.4-rebootless-lab');
    expect((await vm.probe.readKernelFile('/sys/module/module/parameters/sig_enforce')).content?.trim()).toBe('Y');
    const enrolled = await timed('enrolled', () =>
      until(async () => {
        const h = await host.ledgerHost();
        return h.stack?.bootId === s.bootId ? h : undefined;
      }, 'the ledger knows the guest'),
    );
    expect(enrolled.facts!.kernelRelease).toBe('7.3.4-rebootless-lab');
    expect(enrolled.stack!.entries).toEqual([]);
  });

  it('a rollout: the agent loads the diff-built module, /proc/cmdline shows the fix, the ledger shows each step', async () => {
    const rollout = await host.createRollout(patch);
    const done = await timed('rollout', () =>
      host.rolloutDone(rollout.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(done.stateReason).toBe('');
    expect(hostStates(done).get(HOST_ID)).toBe(H.HOST_ROLLOUT_STATE_SUCCEEDED);

    const s = await settled('the patch live', (x) => x.livepatch.length === 1);
    expect(s.cmdline).toBe(`rebootless-livepatched ${bootCmdline}`);
    expect(s.livepatch).toEqual([
      { name: patch.moduleName, enabled: '1', transition: '0', functions: ['vmlinux/cmdline_proc_show,1'] },
    ]);
    expect(s.tainted & TAINT_LIVEPATCH).toBe(TAINT_LIVEPATCH);

    const stack = await host.ledgerStackIs([patch.moduleName], 'the patch in the stack');
    expect(stack.entries[0]).toMatchObject({
      patch: { patchId: patch.patchId, version: patch.version },
      state: ledger.StackEntryState.STACK_ENTRY_STATE_ENABLED,
      rolloutId: rollout.rolloutId,
    });
    // The dispatcher's command and the agent's answer to it (history is ordered by each producer's
    // clock, the guest's and the host's: causation, not position, ties them).
    const items = (await host.history()).filter((h) => h.patchId === patch.patchId);
    const requested = items.find((h) => h.type === 'HostApplyRequested');
    const applied = items.find((h) => h.type === 'PatchApplied');
    expect((requested?.body['hostApplyRequested'] as { commandId?: string } | undefined)?.commandId).toBe(
      applied?.causationId,
    );
  });

  it('Undo: the agent disables and unloads it, the original /proc/cmdline is back, the ledger shows the revert', async () => {
    const { rollout } = await unary<dispatcher.UndoResponse>(rollouts, 'undo', {
      hostId: HOST_ID,
      patchId: patch.patchId,
      reason: 'kernel tier: undo the diff-built patch',
      strategy: allAtOnce(),
    });
    const done = await timed('undo', () =>
      host.rolloutDone(rollout!.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]),
    );
    expect(done.stateReason).toBe('');
    const s = await settled('nothing live', (x) => x.livepatch.length === 0 && !x.modules.includes(patch.moduleName));
    expect(s.cmdline).toBe(bootCmdline);
    await host.ledgerStackIs([], 'an empty stack');
    const items = (await host.history()).filter((h) => h.patchId === patch.patchId);
    const requested = items.find((h) => h.type === 'HostRevertRequested');
    const reverted = items.find((h) => h.type === 'PatchReverted');
    expect((requested?.body['hostRevertRequested'] as { commandId?: string } | undefined)?.commandId).toBe(
      reverted?.causationId,
    );
    // Each step once: one command each way, one answer each.
    const count = (type: string) => items.filter((h) => h.type === type).length;
    expect(['HostApplyRequested', 'PatchApplied', 'HostRevertRequested', 'PatchReverted'].map(count)).toEqual([
      1, 1, 1, 1,
    ]);
  });

  it('a diff that builds but oopses the kernel when its code runs is stopped by the smoke stage: nothing is published', async () => {
    const { submitted, finished } = await timed('oopsBuild', () =>
      submitBuild(services.builderAddress, {
        patchName: 'lab-oops-on-read',
        kernelReleases: [profile.release],
        unifiedDiff: diff('smoke/oops-on-read.patch'),
        timeoutMs: 20 * 60_000,
      }),
    );
    const part = finished.kernels[0]!;
    expect(part).toMatchObject({ state: builder.BuildState.BUILD_STATE_FAILED, stage: 'smoke', artifactDigest: '' });
    expect(part.diagnostics[0]).toMatch(/^smoke test \((exercise|transition)\) in a guest of the target kernel/);
    // The kernel's own account of the crash, for the patch's author.
    expect(part.diagnostics.join('\n')).toMatch(/BUG: kernel NULL pointer dereference|Oops|page fault/);
    expect(part.diagnostics.join('\n')).toMatch(/version_proc_show/);

    const records = await until(async () => {
      const rs = await audit({ correlationId: submitted.buildId });
      return rs.some((r) => r.body!.type === 'BuildFailed') ? rs : undefined;
    }, 'the ledger has the failed build');
    expect(records.map((r) => r.body!.type)).toEqual(['BuildRequested', 'BuildFailed']);
    expect(records[1]!.body!.buildFailed).toMatchObject({ stage: 'smoke', code: 'FAILED_PRECONDITION' });
    const { patches } = await unary<ledger.ListPatchesResponse>(ledgerClient, 'listPatches', {});
    expect(patches.map((p) => p.patchId)).not.toContain(submitted.patchId);
    // The host never saw it.
    expect((await state()).livepatch).toEqual([]);
  });

  it('with the builder’s manifest key stolen, one changed byte or another signing key still meets the kernel’s refusal, which the agent reports', async () => {
    const builderKey = new ChainStateFile(path.join(services.dataDirs.builder, 'chain'), 'builder').readKey();
    const store = new ArtifactStore({
      dir: path.join(services.dataDirs.builder, 'artifacts'),
      builderKey: services.builderKey,
    });
    const genuine = await store.open(patch.artifacts[profile.release]!);
    const good = fs.readFileSync(genuine.modulePath);

    const tampered = Buffer.from(good);
    tampered[Math.floor(tampered.length / 3)]! ^= 0x01;
    const other = await makeModuleSigningKey(path.join(root, 'other-key'), 'not the builder');
    const foreignFile = path.join(root, 'foreign.ko');
    fs.writeFileSync(foreignFile, stripModuleSignature(good));
    await signModule({ tree: profile.tree, signingKey: other.key, signingCert: other.cert }, foreignFile);

    for (const [label, bytes] of [
      ['one byte changed', tampered],
      ['signed by another key', fs.readFileSync(foreignFile)],
    ] as const) {
      // The attacker signs a manifest for the bytes with the stolen key: the agent's own checks pass.
      const manifest: PatchManifest = {
        ...genuine.manifest,
        version: label === 'one byte changed' ? '1.0.1' : '1.0.2',
        sha256: sha256Hex(bytes),
        sizeBytes: String(bytes.length),
      };
      const { artifact } = await store.put({ module: bytes, signed: signManifest(manifest, builderKey) });
      const before = await state();
      const run = await vm.probe.run('agent-command', [
        JSON.stringify({
          hostId: HOST_ID,
          builderAddress: `10.0.2.100:${GUEST_BUILDER_PORT}`,
          builderPublicKey: services.builderKey.toString('hex'),
          dataDir: `/tmp/agent-command-${manifest.version}`,
          apply: {
            commandId: `kernel-tier-${manifest.version}`,
            patchId: manifest.patchId,
            version: manifest.version,
            kernelRelease: profile.release,
            artifactDigest: artifact.digest,
          },
        }),
      ]);
      expect({ label, code: run.code, stderr: run.stderr }).toMatchObject({ label, code: 0 });
      const { result, reported } = JSON.parse(run.stdout) as {
        result: dispatcher.CommandResult;
        reported: { type: string; patchApplyFailed?: { stage: string; error: string } }[];
      };
      // Past the agent's verification; the kernel said no, in its own words, and the agent says so.
      expect({ label, outcome: dispatcher.CommandOutcome[result.outcome], stage: result.stage }).toEqual({
        label,
        outcome: 'COMMAND_OUTCOME_FAILED',
        stage: 'load',
      });
      expect(result.error).toMatch(/Required key not available|Key was rejected by service|Bad message/);
      // The fact it signed for the dispatcher and the ledger says the same.
      const failed = reported.find((e) => e.type === 'PatchApplyFailed')?.patchApplyFailed;
      expect({ label, stage: failed?.stage }).toEqual({ label, stage: 'load' });
      expect(failed?.error).toMatch(/Required key not available|Key was rejected by service|Bad message/);
      const after = await state();
      expect(after.livepatch).toEqual([]);
      expect(after.modules).toEqual(before.modules);
      expect(after.cmdline).toBe(bootCmdline);
    }
  });
});
