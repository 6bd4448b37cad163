// Apply: a command checked (expiry, replay, signature, kernel, retraction, downgrade) before
// the kernel is touched, the module loaded and its transition seen through, reversed when it
// stalls (forced only when the command allows it), superseded modules removed, and the outcome
// recorded as a fact before it is answered. Re-applies at boot and the recovery of an apply a
// crash interrupted come through the same steps.
import type { Client } from '@grpc/grpc-js';
import type { PatchManifest } from '@rebootless/artifacts';
import { dispatcher, events, fromTimestamp } from '@rebootless/contracts';
import { isKernelError } from '@rebootless/kernel-model';
import { SPAN, withSpanFrom, type TraceFields } from '@rebootless/telemetry';
import { MODULE_ATTR, Outcome, applyFailedFact, settle, spanAttributes, type AgentContext } from './agent-context';
import { desiredAfterApply, liveVersionOf, rememberAnswer, supersededBy, wasSeen } from './rules/host-rules';
import type { DesiredPatch } from './state/agent-state';
import { ArtifactFetchError, fetchArtifact } from './talk/artifact-fetch';
import type { ArtifactSourceKind } from './talk/grpc-clients';
import { CommandRefused, ModuleReceipt, checkCommand, checkManifest, type RefusalReason } from './verification';

/** Refusals of the module's bytes themselves, as opposed to what the builder signed. */
const CACHE_DAMAGE = new Set<RefusalReason>(['digest-mismatch', 'truncated', 'oversized']);

export class ApplyFlow {
  constructor(private readonly ctx: AgentContext) {}

  async apply(cmd: dispatcher.ApplyCommand, trace: TraceFields = {}): Promise<dispatcher.CommandResult> {
    // Sent again (its answer had not reached the log when the agent reconnected): answered as before.
    const again = await this.ctx.answerAgain(cmd.commandId);
    if (again) return again;
    const attributes = spanAttributes(this.ctx.hostId, cmd);
    const verified = await withSpanFrom(trace, SPAN.agentVerify, attributes, async (span) => {
      const checked = await this.verifyApply(cmd);
      if ('result' in checked) settle(span, checked.result);
      return checked;
    });
    if ('result' in verified) return verified.result;
    const { manifest, modulePath } = verified;
    const live = (await this.ctx.kernel.listPatches()).find((p) => p.moduleName === manifest.moduleName);
    if (live?.enabled && !live.transition) {
      // Already live (sent again under a new id, e.g. by the dispatcher after a reboot the agent
      // re-applied from): nothing to load, but recorded as applied, so the command has its outcome
      // in the log as every other command has (the dispatcher follows only signed facts).
      return this.finishApplied(cmd, manifest, 0, false);
    }
    return withSpanFrom(
      trace,
      SPAN.agentTransition,
      { ...attributes, [MODULE_ATTR]: manifest.moduleName },
      async (span) => settle(span, await this.load(cmd, manifest, modulePath, cmd.allowForce)),
    );
  }

  /** The command and its artifact checked before the kernel is touched: the module, or the refusal answered. */
  private async verifyApply(
    cmd: dispatcher.ApplyCommand,
  ): Promise<{ manifest: PatchManifest; modulePath: string } | { result: dispatcher.CommandResult }> {
    const refuse = (error: CommandRefused, stage = 'verify') => {
      this.ctx.record(
        [
          {
            type: 'PatchApplyFailed',
            data: applyFailedFact(this.ctx.hostId, cmd, stage, error.message, [], false),
          },
        ],
        cmd,
      );
      return {
        result: this.ctx.answer(cmd.commandId, {
          outcome: Outcome.COMMAND_OUTCOME_REJECTED,
          stage,
          error: error.message,
        }),
      };
    };
    // Expired and replayed commands: refused before anything is fetched.
    try {
      checkCommand(
        { commandId: cmd.commandId, ...(cmd.expiresAt ? { expiresAt: fromTimestamp(cmd.expiresAt) } : {}) },
        new Date(this.ctx.now()),
        (id) => wasSeen(this.ctx.state.data.seenCommands, id),
      );
    } catch (error) {
      if (error instanceof CommandRefused) return refuse(error);
      throw error;
    }
    // Written with the next state change, before the kernel is touched or anything is answered.
    this.ctx.rememberCommand(cmd.commandId, cmd.expiresAt);

    try {
      return await this.obtainArtifact(cmd);
    } catch (error) {
      if (error instanceof CommandRefused) {
        if (error.reason === 'retracted') this.learnRetraction(cmd.patchId, cmd.version, error.message);
        return refuse(error);
      }
      const message = error instanceof Error ? error.message : String(error);
      this.ctx.record(
        [{ type: 'PatchApplyFailed', data: applyFailedFact(this.ctx.hostId, cmd, 'fetch', message, [], false) }],
        cmd,
      );
      return {
        result: this.ctx.answer(cmd.commandId, {
          outcome: Outcome.COMMAND_OUTCOME_FAILED,
          stage: 'fetch',
          error: message,
        }),
      };
    }
  }

  /** Loads a verified module and sees its transition through (or reverses it). */
  private async load(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string; artifactDigest: string },
    manifest: PatchManifest,
    modulePath: string,
    allowForce: boolean,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.ctx.kernel;
    this.ctx.record(
      [
        {
          type: 'PatchApplyStarted',
          data: {
            hostId: this.ctx.hostId,
            commandId: cmd.commandId,
            patchId: manifest.patchId,
            version: manifest.version,
            moduleName: manifest.moduleName,
            artifactDigest: cmd.artifactDigest,
          },
        },
      ],
      cmd,
      // Nobody acts on it: it waits for PatchApplied or PatchApplyFailed to share their seal.
      this.ctx.timeouts.startedHoldMs,
    );
    this.ctx.state.update((s) => {
      s.applying = {
        commandId: cmd.commandId,
        patchId: manifest.patchId,
        version: manifest.version,
        moduleName: manifest.moduleName,
        artifactDigest: cmd.artifactDigest,
        bootId: this.ctx.bootId(),
        startedAt: this.ctx.now(),
      };
    });
    this.ctx.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_ACCEPTED, stage: 'load', error: '' }, []);

    const startedAt = Date.now();
    try {
      await kernel.loadModule({
        path: modulePath,
        moduleName: manifest.moduleName,
        functions: manifest.functions,
        replace: manifest.replace,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // A module the kernel refused is not loaded; one that loaded but failed to enable may be.
      if (isKernelError(error) && (await kernel.moduleLoaded(manifest.moduleName).catch(() => false))) {
        await kernel.removeModule(manifest.moduleName).catch(() => undefined);
      }
      return this.finishApplyFailure(cmd, 'load', message, [], false);
    }

    const settled = await this.ctx.waitForTransition(manifest.moduleName);
    if (settled) return this.finishApplied(cmd, manifest, Date.now() - startedAt, false);

    const stalled = await kernel.stalledTasks().catch(() => []);
    if (allowForce) {
      await kernel.force(manifest.moduleName);
      this.ctx.state.update((s) => {
        s.forced.push({ moduleName: manifest.moduleName, bootId: this.ctx.bootId(), at: this.ctx.now() });
      });
      return this.finishApplied(cmd, manifest, Date.now() - startedAt, true);
    }
    // Reverse: write the opposite value during the transition, wait, then remove the module.
    const detail = `the transition did not complete within ${this.ctx.timeouts.transitionMs} ms; ${stalled.length} task(s) block it`;
    try {
      await kernel.setEnabled(manifest.moduleName, false);
    } catch (error) {
      return this.finishApplyFailure(
        cmd,
        'transition',
        `${detail}; reversing failed: ${String(error)}`,
        stalled,
        false,
      );
    }
    const reversed = await this.ctx.waitForTransition(manifest.moduleName);
    if (!reversed) {
      return this.finishApplyFailure(cmd, 'transition', `${detail}; the reversal is stalled too`, stalled, false);
    }
    await kernel.removeModule(manifest.moduleName).catch((error: unknown) => {
      this.ctx.log(`rmmod ${manifest.moduleName} after a reversed apply: ${String(error)}`);
    });
    return this.finishApplyFailure(cmd, 'transition', `${detail}; reversed`, stalled, true);
  }

  private async finishApplied(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string; artifactDigest: string },
    manifest: PatchManifest,
    transitionMs: number,
    forced: boolean,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.ctx.kernel;
    const before = this.ctx.state.data.desired;
    // Staged, and written with the answer after the fact is recorded: until then `applying` stays
    // on disk. A crash before the fact is finished on restart by coming through here again; one
    // after it, by catchUpRecordedEnd.
    this.rememberDesired(manifest, cmd.artifactDigest);
    // Modules the new patch superseded (replace, or an older version of the same patch) go away.
    const superseded = supersededBy(before, manifest);
    for (const old of superseded) {
      const stillThere = (await kernel.listPatches()).find((p) => p.moduleName === old.moduleName);
      if (stillThere?.enabled && !manifest.replace) {
        await kernel.setEnabled(old.moduleName, false).catch(() => undefined);
        await this.ctx.waitForTransition(old.moduleName);
      }
      if (await kernel.moduleLoaded(old.moduleName)) {
        await kernel.removeModule(old.moduleName).catch((error: unknown) => {
          this.ctx.log(`rmmod ${old.moduleName} (superseded): ${String(error)}`);
        });
      }
    }
    const stack = await kernel.listPatches();
    this.ctx.state.stage((s) => {
      s.applying = undefined;
      s.lastApplied = {
        patchId: manifest.patchId,
        version: manifest.version,
        bootId: this.ctx.bootId(),
        at: this.ctx.now(),
      };
      s.cleanStop = false;
      s.reported = stack;
    });
    this.ctx.record(
      [
        {
          type: 'PatchApplied',
          data: {
            hostId: this.ctx.hostId,
            commandId: cmd.commandId,
            patchId: manifest.patchId,
            version: manifest.version,
            moduleName: manifest.moduleName,
            transitionMs: String(transitionMs),
            forced,
            replace: manifest.replace,
            functions: manifest.functions,
            stack,
          },
        },
      ],
      cmd,
    );
    return this.ctx.answer(
      cmd.commandId,
      { outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '', forced },
      stack,
    );
  }

  private async finishApplyFailure(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string },
    stage: string,
    error: string,
    stalled: events.StalledTask[],
    reverted: boolean,
  ): Promise<dispatcher.CommandResult> {
    const stack = await this.ctx.kernel.listPatches();
    // Written with the answer, after the fact (as in finishApplied).
    this.ctx.state.stage((s) => {
      s.applying = undefined;
      s.reported = stack;
    });
    this.ctx.record(
      [{ type: 'PatchApplyFailed', data: applyFailedFact(this.ctx.hostId, cmd, stage, error, stalled, reverted) }],
      cmd,
    );
    return this.ctx.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage, error }, stack);
  }

  /**
   * An apply records its end (PatchApplied or PatchApplyFailed) first, then writes the state that
   * closes it and the answer in one write (one file write per apply fewer than a write before the
   * fact and one after). An agent that died between the two finds the fact in its outbox and
   * `applying` still set: the state catches up from the fact, and nothing is done or recorded
   * again (a second end of one command would be in the log). Before this order, a crash between
   * the state write and the fact lost the fact.
   */
  async catchUpRecordedEnd(): Promise<void> {
    const applying = this.ctx.state.data.applying;
    if (!applying) return;
    const end = this.ctx.recordedEnd(applying.commandId);
    if (!end) return;
    const applied = end.patchApplied;
    // What the end would have kept as reported: the fact's stack, or the kernel's (a failure's fact has none).
    const reported = applied ? applied.stack : await this.ctx.kernel.listPatches();
    if (applied) {
      const manifest = await this.ctx.store.open(applying.artifactDigest).then(
        (artifact) => artifact.manifest,
        () => undefined,
      );
      if (manifest) this.rememberDesired(manifest, applying.artifactDigest);
      else this.ctx.log(`the kept artifact of ${applying.moduleName} cannot be read: not re-applied at boot`);
      const at = end.occurredAt ? fromTimestamp(end.occurredAt).getTime() : applying.startedAt;
      this.ctx.state.stage((s) => {
        s.lastApplied = { patchId: applied.patchId, version: applied.version, bootId: applying.bootId, at };
        s.cleanStop = false;
      });
    }
    const answer = applied
      ? { outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '', forced: applied.forced }
      : {
          outcome: Outcome.COMMAND_OUTCOME_FAILED,
          stage: end.patchApplyFailed?.stage ?? '',
          error: end.patchApplyFailed?.error ?? '',
          forced: false,
        };
    this.ctx.state.update((s) => {
      s.applying = undefined;
      s.reported = reported;
      s.seenCommands = rememberAnswer(s.seenCommands, applying.commandId, answer);
    });
    this.ctx.log(`${end.type} of command ${applying.commandId} was recorded before the agent stopped: state caught up`);
  }

  async reapply(patch: DesiredPatch): Promise<void> {
    const cmd = {
      commandId: `at-start/${this.ctx.bootId()}/${patch.patchId}/${patch.version}`,
      rolloutId: '',
      patchId: patch.patchId,
      version: patch.version,
      artifactDigest: patch.artifactDigest,
    };
    let kept: { manifest: PatchManifest; modulePath: string };
    try {
      kept = await this.keptArtifact(patch);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.ctx.record([
        { type: 'PatchApplyFailed', data: applyFailedFact(this.ctx.hostId, cmd, 'verify', message, [], false) },
      ]);
      return;
    }
    await this.load(cmd, kept.manifest, kept.modulePath, false);
  }

  /**
   * The agent died between loading a module and reporting it (same boot): what the kernel shows
   * now is the truth, reported as the outcome of the interrupted command.
   */
  async recoverInterruptedApply(): Promise<void> {
    const applying = this.ctx.state.data.applying;
    if (!applying) return;
    const cmd = { ...applying, rolloutId: '' };
    const live = (await this.ctx.kernel.listPatches()).find((p) => p.moduleName === applying.moduleName);
    if (live?.enabled) {
      const settled = !live.transition || (await this.ctx.waitForTransition(applying.moduleName));
      if (settled) {
        let manifest: PatchManifest | undefined;
        try {
          manifest = (await this.ctx.store.open(applying.artifactDigest)).manifest;
        } catch {
          manifest = undefined;
        }
        if (manifest) {
          await this.finishApplied(cmd, manifest, Date.now() - applying.startedAt, false);
          return;
        }
      }
    }
    const loaded = await this.ctx.kernel.moduleLoaded(applying.moduleName);
    await this.finishApplyFailure(
      cmd,
      'interrupted',
      `the agent stopped during this apply; on restart the kernel shows ${applying.moduleName} ` +
        (live
          ? `enabled=${live.enabled} transition=${live.transition}`
          : loaded
            ? 'loaded but not patching'
            : 'absent'),
      [],
      !live,
    );
  }

  private async obtainArtifact(cmd: dispatcher.ApplyCommand): Promise<{ manifest: PatchManifest; modulePath: string }> {
    const check = (manifestBytes: Uint8Array, signature: Uint8Array | undefined) =>
      checkManifest({
        manifestBytes,
        signature,
        pinnedBuilderKey: this.ctx.options.builderPublicKey,
        request: cmd,
        kernel: { release: this.ctx.kernelRelease(), version: this.ctx.kernelVersion() },
        retracted: (p, v) => this.ctx.state.data.retracted.find((r) => r.patchId === p && r.version === v)?.reason,
        quarantined: (p, v) => this.ctx.state.data.quarantined.find((q) => q.patchId === p && q.version === v)?.reason,
        liveVersion: liveVersionOf(this.ctx.state.data.desired, cmd.patchId),
        maxArtifactBytes: this.ctx.options.maxArtifactBytes ?? 64 * 1024 * 1024,
      });
    const dispatcherClient = this.ctx.dispatcherClient();
    const hasBuilder = this.ctx.options.builderAddress !== '';
    if (this.ctx.options.builderPublicKey.length !== 32 || (!dispatcherClient && !hasBuilder)) {
      throw new CommandRefused(
        'bad-signature',
        'this agent has no pinned builder key, or neither a dispatcher nor a builder to fetch artifacts from',
      );
    }
    // Always asked for, even when a copy is kept: the answer carries retractions. The dispatcher's
    // site cache first (ADR 0026); the builder only when the dispatcher could not serve and a
    // builder is configured. A refusal (retracted, bad signature, digest) is never retried elsewhere.
    if (dispatcherClient) {
      try {
        return await this.fetchVerified(cmd, check, dispatcherClient, 'dispatcher');
      } catch (error) {
        // The operator reads where altered bytes came from: the site cache, not the builder.
        if (error instanceof CommandRefused && CACHE_DAMAGE.has(error.reason)) {
          throw new CommandRefused(
            error.reason,
            `${error.message.slice(error.reason.length + 2)} (as served by the dispatcher's artifact cache)`,
          );
        }
        if (!(error instanceof ArtifactFetchError) || !hasBuilder) throw error;
        this.ctx.log(`${error.message}; asking the builder instead`);
      }
    }
    return this.fetchVerified(cmd, check, this.ctx.builderClient(), 'builder');
  }

  /** One fetch from one source, checked by this agent (manifest before bytes, then every byte) and kept. */
  private async fetchVerified(
    cmd: dispatcher.ApplyCommand,
    check: (manifestBytes: Uint8Array, signature: Uint8Array | undefined) => PatchManifest,
    client: Client,
    from: ArtifactSourceKind,
  ): Promise<{ manifest: PatchManifest; modulePath: string }> {
    const shared = this.ctx.options.sharedDownloads;
    if (shared) {
      const download = await shared.fetch(client, cmd.artifactDigest, this.ctx.timeouts.fetchMs, from);
      // This agent's own checks, as if the bytes had just arrived for it alone.
      const manifest = check(download.manifestBytes, download.signature);
      const receipt = new ModuleReceipt(manifest);
      receipt.add(download.module);
      receipt.finish();
      const signed = { manifest, bytes: download.manifestBytes, signature: download.signature };
      const artifact = await download.keep(this.ctx.store, async () => {
        const { artifact } = await this.ctx.store.put({ module: download.module, signed });
        return artifact;
      });
      return { manifest, modulePath: artifact.modulePath };
    }
    const fetched = await fetchArtifact({
      client,
      from,
      digest: cmd.artifactDigest,
      timeoutMs: this.ctx.timeouts.fetchMs,
      checkHeader: check,
    });
    const { artifact } = await this.ctx.store.put({
      module: fetched.module,
      signed: { manifest: fetched.manifest, bytes: fetched.manifestBytes, signature: fetched.signature },
    });
    return { manifest: fetched.manifest, modulePath: artifact.modulePath };
  }

  /** A kept copy, re-verified against the pinned key and the running kernel (re-apply at boot). */
  private async keptArtifact(patch: DesiredPatch): Promise<{ manifest: PatchManifest; modulePath: string }> {
    const artifact = await this.ctx.store.open(patch.artifactDigest);
    const manifest = checkManifest({
      manifestBytes: artifact.manifestBytes,
      signature: artifact.signature,
      pinnedBuilderKey: this.ctx.options.builderPublicKey,
      request: { ...patch, kernelRelease: '', allowDowngrade: true },
      kernel: { release: this.ctx.kernelRelease(), version: this.ctx.kernelVersion() },
      retracted: (p, v) => this.ctx.state.data.retracted.find((r) => r.patchId === p && r.version === v)?.reason,
      quarantined: (p, v) => this.ctx.state.data.quarantined.find((q) => q.patchId === p && q.version === v)?.reason,
      liveVersion: undefined,
      maxArtifactBytes: this.ctx.options.maxArtifactBytes ?? 64 * 1024 * 1024,
    });
    return { manifest, modulePath: artifact.modulePath };
  }

  private learnRetraction(patchId: string, version: string, reason: string): void {
    if (this.ctx.state.data.retracted.some((r) => r.patchId === patchId && r.version === version)) return;
    this.ctx.state.update((s) => void s.retracted.push({ patchId, version, reason }));
  }

  /** Staged: the caller's next state update writes it. */
  private rememberDesired(manifest: PatchManifest, artifactDigest: string): void {
    this.ctx.state.stage((s) => void (s.desired = desiredAfterApply(s.desired, manifest, artifactDigest)));
  }
}
