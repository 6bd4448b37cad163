// The builder's core: takes submissions, keeps each build's record and progress, runs the
// bounded queue with its workers, writes the builder's events, serves artifacts and retracts
// patches. No framework here: the gRPC controller is a thin edge over it.
import * as path from 'node:path';
import { builder, events, toTimestamp } from '@rebootless/contracts';
import { uuidv7, type EventDraft, type SigningKey } from '@rebootless/events';
import type { ArtifactStore, StoredArtifact } from '@rebootless/artifacts';
import { ATTR, SPAN, captureTraceContext, withSpan, type Context as TraceContext } from '@rebootless/telemetry';
import { pageOf } from './build-listing';
import {
  BuildAlreadyFinishedError,
  BuildNotFoundError,
  BuilderPreconditionError,
  EventLogUnavailableError,
  PatchNotFoundError,
  PatchVersionRetractedError,
} from './build-errors';
import { buildFailed, buildRequested, buildSucceeded, patchPublished, patchRetracted } from './build-events';
import { BuildFiles, type ProgressEntry } from './build-files';
import { BuildQueue } from './build-queue';
import {
  allKernelsFinal,
  evolve,
  isFinalKernel,
  newBuildRecord,
  overallState,
  stateCode,
  toBuildMessage,
  type BuildChange,
  type BuildRecord,
} from './build-record';
import { BuildCancelledError, stageFailureOf } from './failures';
import { buildForKernel, type BuildToolchain, type KernelBuildInput } from './kernel-build';
import {
  PATCH_NAME_PATTERN,
  VERSION_PATTERN,
  InvalidSubmissionError,
  validateSubmission,
  type FieldProblem,
  type Submission,
} from './submission';

/** What the diff analysis reports, as the builder uses it (libs/diff-analysis behind it). */
export interface DiffAnalysis {
  readonly verdict: 'ok' | 'warnings' | 'refused';
  readonly summary: string;
  readonly functions: readonly { file: string; name: string }[];
  readonly findings: readonly {
    severity: 'refuse' | 'warn';
    rule: string;
    file: string;
    line?: number;
    explanation: string;
  }[];
}

/** The diff could not be read at all (empty, malformed, a path outside the tree). */
export interface DiffUnreadable {
  readonly unreadable: string;
}

export interface CoordinatorLog {
  log(message: string): void;
  warn(message: string): void;
  error(message: string, stack?: string): void;
}

export interface BuildCoordinatorOptions {
  readonly dataDir: string;
  readonly store: ArtifactStore;
  readonly toolchain: BuildToolchain;
  readonly analyseDiff: (text: string) => DiffAnalysis | DiffUnreadable;
  readonly isKernelRelease: (release: string) => boolean;
  readonly publisher: {
    publish(drafts: EventDraft | readonly EventDraft[]): Promise<unknown>;
    readonly key: SigningKey;
  };
  /** Who the builder's own events are attributed to. */
  readonly actor: events.Actor;
  readonly queueSize: number;
  readonly workers: number;
  readonly compileTimeoutMs: number;
  readonly maxFixBytes: number;
  readonly maxKernelReleases?: number;
  readonly builderVersion: string;
  readonly log: CoordinatorLog;
  readonly now?: () => number;
  /** Where compile work directories go; default the OS temp dir. */
  readonly workRoot?: string;
}

/** Log lines kept per build for WatchBuild's replay; stage changes are always kept. */
export const MAX_LOG_LINES_PER_BUILD = 2000;

export interface BuildWatcher {
  next(update: builder.WatchBuildResponse): void;
  complete(): void;
}

interface LiveBuild {
  record: BuildRecord;
  progress: ProgressEntry[];
  logLines: number;
  watchers: Set<BuildWatcher>;
  controller: AbortController;
  /** Only while it may still run: the fix and what the analysis said. */
  work?: { submission: Submission; analysis?: KernelBuildInput['analysis']; trace: TraceContext };
  finishing: boolean;
}

/** The builder stopped (shutdown, restart) while a release was building. */
class BuilderStoppingError extends Error {}

export class BuildCoordinator {
  private readonly builds = new Map<string, LiveBuild>();
  private readonly queue: BuildQueue;
  private readonly files: BuildFiles;
  private readonly now: () => number;
  private running = 0;
  private stopping = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: BuildCoordinatorOptions) {
    this.queue = new BuildQueue(options.queueSize);
    this.files = new BuildFiles(path.join(options.dataDir, 'builds'));
    this.now = options.now ?? Date.now;
  }

  /**
   * Loads the builds on disk. A build a crash interrupted ends now, each unfinished release as
   * failed (ABORTED) with its event; retractions whose event was not written are announced.
   */
  async start(): Promise<void> {
    for (const stored of this.files.loadAll((file, why) =>
      this.options.log.error(`build file ${file} is unreadable and skipped: ${why}`),
    )) {
      this.builds.set(stored.record.buildId, {
        record: stored.record,
        progress: stored.progress,
        logLines: stored.progress.filter((p) => p.logLine).length,
        watchers: new Set(),
        controller: new AbortController(),
        finishing: false,
      });
    }
    for (const live of this.builds.values()) {
      if (live.record.finishedAt !== undefined) continue;
      this.options.log.warn(
        `build ${live.record.buildId} was interrupted by a restart; its unfinished releases end as ABORTED`,
      );
      await this.abortUnfinished(live, 'the builder restarted while this release was building; submit the build again');
    }
    for (const retraction of this.options.store.retractions()) {
      if (!retraction.announced) {
        await this.announceRetraction(retraction).catch((error: unknown) =>
          this.options.log.error(
            `PatchRetracted for ${retraction.patchId} ${retraction.version} still not written: ${String(error)}`,
          ),
        );
      }
    }
  }

  /** Stops taking jobs, aborts what runs and ends every unfinished build (ABORTED), within `graceMs`. */
  async stop(graceMs = 4000): Promise<void> {
    this.stopping = true;
    const reason = new BuilderStoppingError(
      'the builder stopped while this release was building; submit the build again',
    );
    for (const live of this.builds.values()) {
      if (live.record.finishedAt === undefined) live.controller.abort(reason);
    }
    await Promise.race([this.whenIdle(), sleep(graceMs)]);
    for (const live of this.builds.values()) {
      if (live.record.finishedAt === undefined) await this.abortUnfinished(live, reason.message);
    }
  }

  // ---- SubmitBuild ----------------------------------------------------------------------------

  async submit(request: builder.SubmitBuildRequest, submittedBy: events.Actor): Promise<builder.SubmitBuildResponse> {
    const submission = validateSubmission(request, {
      maxFixBytes: this.options.maxFixBytes,
      maxKernelReleases: this.options.maxKernelReleases ?? 32,
      isKernelRelease: this.options.isKernelRelease,
    });
    const retraction = this.options.store.retraction(submission.patchId, submission.version);
    if (retraction) {
      throw new PatchVersionRetractedError(
        submission.patchId,
        submission.version,
        retraction.retractedAt,
        retraction.reason,
      );
    }
    const analysis =
      submission.fix.kind === 'unified-diff'
        ? await this.analyseDiff(submission.fix.text, submission.kernelReleases)
        : undefined;

    // The place in the queue is held while BuildRequested is written: the event is in the log
    // before the caller hears "queued", and a full queue is said before anything is written.
    const reservation = this.queue.reserve();
    const at = this.now();
    const record = newBuildRecord({
      buildId: uuidv7(at),
      patchId: submission.patchId,
      patchName: submission.patchName,
      version: submission.version,
      description: submission.description,
      cves: submission.cves,
      severity: submission.severity,
      replace: submission.replace,
      moduleName: submission.moduleName,
      sourceKind: submission.sourceKind,
      sourceSha256: submission.sourceSha256,
      submittedBy,
      submittedAt: at,
      releases: submission.kernelReleases,
    });
    try {
      await this.options.publisher.publish(buildRequested(record));
    } catch (error) {
      reservation.cancel();
      throw new EventLogUnavailableError(`BuildRequested for ${submission.patchId} ${submission.version}`, error);
    }
    const live: LiveBuild = {
      record,
      progress: [],
      logLines: 0,
      watchers: new Set(),
      controller: new AbortController(),
      // The releases build later, from the queue; their spans join the SubmitBuild call's trace.
      work: { submission, ...(analysis ? { analysis } : {}), trace: captureTraceContext() },
      finishing: false,
    };
    this.builds.set(record.buildId, live);
    for (const part of record.kernels) {
      this.addProgress(live, {
        at,
        stageChanged: { kernelRelease: part.release, stage: 'queued', state: 'queued', diagnostics: [] },
      });
    }
    this.files.save(live.record, live.progress);
    reservation.admit(record.buildId, submission.kernelReleases);
    this.options.log.log(
      `build ${record.buildId} queued: ${record.patchId} ${record.version} for ${submission.kernelReleases.join(', ')}`,
    );
    this.pump();
    return { buildId: record.buildId, patchId: record.patchId };
  }

  /** Runs the analysis at submit: a diff it refuses, or one no tool here can build, is never queued. */
  private async analyseDiff(text: string, releases: readonly string[]): Promise<KernelBuildInput['analysis']> {
    const report = this.options.analyseDiff(text);
    if ('unreadable' in report) throw new InvalidSubmissionError([{ field: 'unified_diff', why: report.unreadable }]);
    const where = (f: DiffAnalysis['findings'][number]) => `${f.file}${f.line !== undefined ? `:${f.line}` : ''}`;
    const refusals = report.findings.filter((f) => f.severity === 'refuse');
    if (report.verdict === 'refused' || refusals.length > 0) {
      const problems: FieldProblem[] = refusals.map((f) => ({
        field: 'unified_diff',
        why: `refused (${f.rule}) at ${where(f)}: ${f.explanation}`,
      }));
      throw new InvalidSubmissionError(
        problems.length > 0 ? problems : [{ field: 'unified_diff', why: `refused: ${report.summary}` }],
      );
    }
    try {
      for (const release of releases) this.options.toolchain.diffProfileFor(release);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new BuilderPreconditionError(`${message} (The diff analysis ran first and found: ${report.summary})`);
    }
    const warnings = report.findings
      .filter((f) => f.severity === 'warn')
      .map((f) => `warning (${f.rule}) at ${where(f)}: ${f.explanation}`);
    return {
      functions: report.functions.map((f) => ({ object: 'vmlinux', name: f.name, sympos: 0 })),
      lines: [report.summary, ...warnings],
      warnings,
    };
  }

  // ---- GetBuild, ListBuilds, WatchBuild, CancelBuild --------------------------------------

  get(buildId: string): builder.Build {
    return toBuildMessage(this.live(buildId).record);
  }

  list(request: builder.ListBuildsRequest): builder.ListBuildsResponse {
    const { records, nextPageToken } = pageOf(
      [...this.builds.values()].map((b) => b.record),
      request,
    );
    return { builds: records.map(toBuildMessage), nextPageToken };
  }

  /**
   * Replays the build's progress so far, then follows it; after `finished` the watcher is
   * completed. Returns the function that stops watching.
   */
  watch(buildId: string, watcher: BuildWatcher): () => void {
    const live = this.live(buildId);
    for (const entry of live.progress) watcher.next(progressMessage(entry));
    if (live.record.finishedAt !== undefined) {
      watcher.next(finishedMessage(live.record));
      watcher.complete();
      return () => undefined;
    }
    live.watchers.add(watcher);
    return () => live.watchers.delete(watcher);
  }

  async cancel(buildId: string, reason: string, actor: events.Actor): Promise<builder.Build> {
    const live = this.live(buildId);
    if (live.record.finishedAt !== undefined || allKernelsFinal(live.record)) {
      throw new BuildAlreadyFinishedError(buildId, overallState(live.record).toUpperCase());
    }
    const why = reason.trim() || `by ${actor.id || 'an operator'}${actor.origin ? ` from ${actor.origin}` : ''}`;
    const before = live.record;
    this.queue.remove(buildId);
    this.apply(live, { kind: 'cancel-requested', reason: why, at: this.now() });
    live.controller.abort(new BuildCancelledError(why));
    this.options.log.log(`build ${buildId} cancelled: ${why}`);
    // Releases that had not started end now; running ones end when their worker has stopped.
    for (const part of live.record.kernels) {
      const was = before.kernels.find((k) => k.release === part.release);
      if (was && !isFinalKernel(was.state) && isFinalKernel(part.state)) {
        this.addProgress(live, {
          at: this.now(),
          stageChanged: {
            kernelRelease: part.release,
            stage: part.stage,
            state: part.state,
            diagnostics: part.diagnostics,
          },
        });
        await this.publishLogged(buildFailed(live.record, part, this.options.actor));
      }
    }
    await this.finishIfDone(live);
    return toBuildMessage(live.record);
  }

  // ---- RetractPatch, FetchArtifact --------------------------------------------------------

  /** `actor` is who asked; a retraction re-announced at start is the builder's own. */
  async retract(request: builder.RetractPatchRequest, actor: events.Actor = this.options.actor): Promise<void> {
    const problems: FieldProblem[] = [];
    if (!PATCH_NAME_PATTERN.test(request.patchId))
      problems.push({ field: 'patch_id', why: `${JSON.stringify(request.patchId.slice(0, 80))} is not a patch id` });
    if (!VERSION_PATTERN.test(request.version))
      problems.push({
        field: 'version',
        why: `${JSON.stringify(request.version.slice(0, 40))} is not a version such as 1.0.2`,
      });
    if (request.reason.trim() === '')
      problems.push({ field: 'reason', why: 'is required: the audit trail must say why the patch is retracted' });
    else if (request.reason.length > 1024)
      problems.push({ field: 'reason', why: `has ${request.reason.length} characters; at most 1024` });
    if (problems.length > 0) throw new InvalidSubmissionError(problems);

    const { patchId, version } = request;
    if (!this.knowsArtifactOf(patchId, version)) throw new PatchNotFoundError(patchId, version);
    const { retraction, newly } = this.options.store.retract({ patchId, version, reason: request.reason.trim() });
    if (newly) this.options.log.warn(`patch ${patchId} ${version} retracted: ${retraction.reason}`);
    if (retraction.announced) return;
    try {
      await this.announceRetraction(retraction, actor);
    } catch (error) {
      throw new EventLogUnavailableError(
        `patch ${patchId} ${version} is retracted here and will not be served, but PatchRetracted`,
        error,
      );
    }
  }

  private knowsArtifactOf(patchId: string, version: string): boolean {
    for (const live of this.builds.values()) {
      const r = live.record;
      if (r.patchId === patchId && r.version === version && r.kernels.some((k) => k.artifact)) return true;
    }
    return this.options.store.list().some((digest) => {
      const m = this.options.store.readManifest(digest);
      return m?.patchId === patchId && m.version === version;
    });
  }

  private async announceRetraction(
    retraction: { patchId: string; version: string; reason: string },
    actor: events.Actor = this.options.actor,
  ): Promise<void> {
    await this.options.publisher.publish(patchRetracted(retraction, actor));
    this.options.store.markAnnounced(retraction.patchId, retraction.version);
  }

  /** The artifact after its module was re-hashed against its signed manifest (never retracted). */
  openArtifact(digest: string): Promise<StoredArtifact> {
    return this.options.store.open(digest);
  }

  artifactChunks(artifact: StoredArtifact): AsyncGenerator<Buffer> {
    return this.options.store.chunks(artifact);
  }

  /** Artifacts served in full, by digest and caller kind (a site cache fetches once per site: ADR 0026). */
  readonly artifactServes = new Map<string, { digest: string; caller: string; n: number }>();

  noteArtifactServed(digest: string, caller: string): void {
    const key = `${digest} ${caller}`;
    const known = this.artifactServes.get(key);
    if (known) known.n += 1;
    else this.artifactServes.set(key, { digest, caller, n: 1 });
  }

  // ---- workers ------------------------------------------------------------------------------

  private pump(): void {
    while (!this.stopping && this.running < this.options.workers) {
      const job = this.queue.next();
      if (!job) return;
      const live = this.builds.get(job.buildId);
      const part = live?.record.kernels.find((k) => k.release === job.release);
      if (!live || !part || part.state !== 'queued' || !live.work) continue;
      this.running += 1;
      void this.runJob(live, job.release)
        .catch((error: unknown) =>
          this.options.log.error(
            `build ${job.buildId} ${job.release}: ${String(error)}`,
            error instanceof Error ? error.stack : undefined,
          ),
        )
        .finally(() => {
          this.running -= 1;
          if (this.running === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
          this.pump();
        });
    }
  }

  private runJob(live: LiveBuild, release: string): Promise<void> {
    const record = live.record;
    return withSpan(
      SPAN.buildKernel,
      {
        [ATTR.buildId]: record.buildId,
        [ATTR.patchId]: record.patchId,
        [ATTR.patchVersion]: record.version,
        [ATTR.kernelRelease]: release,
      },
      () => this.buildRelease(live, release),
      { parent: live.work!.trace },
    );
  }

  private async buildRelease(live: LiveBuild, release: string): Promise<void> {
    const { submission, analysis } = live.work!;
    const record = live.record;
    const input: KernelBuildInput = {
      buildId: record.buildId,
      release,
      patchId: record.patchId,
      version: record.version,
      description: record.description,
      moduleName: record.moduleName,
      replace: record.replace,
      cves: record.cves,
      severity: record.severity,
      fix: submission.fix,
      ...(analysis ? { analysis } : {}),
    };
    const outcome = await buildForKernel(
      input,
      {
        toolchain: this.options.toolchain,
        store: this.options.store,
        key: this.options.publisher.key,
        compileTimeoutMs: this.options.compileTimeoutMs,
        builderVersion: this.options.builderVersion,
        now: this.now,
        ...(this.options.workRoot ? { workRoot: this.options.workRoot } : {}),
        failureOf: (error, stage, signal) => {
          const failure = stageFailureOf(error, stage, signal);
          if (signal.aborted && signal.reason instanceof BuilderStoppingError) {
            return { ...failure, code: 'ABORTED', diagnostics: [signal.reason.message] };
          }
          if (failure.code === 'INTERNAL') {
            this.options.log.error(
              `build ${record.buildId} ${release} ${stage}: ${failure.message}`,
              error instanceof Error ? error.stack : undefined,
            );
          }
          return failure;
        },
      },
      {
        stage: (stage) => {
          this.apply(live, { kind: 'stage-started', release, stage, at: this.now() });
          this.addProgress(live, {
            at: this.now(),
            stageChanged: { kernelRelease: release, stage, state: 'running', diagnostics: [] },
          });
        },
        log: (stage, line) =>
          this.addProgress(live, { at: this.now(), logLine: { kernelRelease: release, stage, line } }),
      },
      live.controller.signal,
    );

    const at = this.now();
    if (outcome.kind === 'succeeded') {
      this.apply(live, {
        kind: 'kernel-succeeded',
        release,
        artifact: outcome.artifact,
        functions: outcome.functions,
        diagnostics: outcome.diagnostics,
        ...(outcome.smoke ? { smoke: outcome.smoke } : {}),
        at,
      });
    } else {
      this.apply(live, { kind: 'kernel-failed', release, code: outcome.code, diagnostics: outcome.diagnostics, at });
    }
    const part = live.record.kernels.find((k) => k.release === release)!;
    this.addProgress(live, {
      at,
      stageChanged: { kernelRelease: release, stage: part.stage, state: part.state, diagnostics: part.diagnostics },
    });
    this.options.log.log(
      `build ${record.buildId} ${release}: ${part.state}${part.state === 'succeeded' ? ` ${part.artifact!.digest}` : ` at ${part.stage} (${part.code}): ${part.diagnostics.slice(0, 3).join(' | ')}`}`,
    );
    await this.publishLogged(
      part.state === 'succeeded'
        ? buildSucceeded(live.record, part, this.options.actor)
        : buildFailed(live.record, part, this.options.actor),
    );
    await this.finishIfDone(live);
  }

  private whenIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- records, progress, events ----------------------------------------------------------

  private live(buildId: string): LiveBuild {
    const live = this.builds.get(buildId);
    if (!live) throw new BuildNotFoundError(buildId);
    return live;
  }

  private apply(live: LiveBuild, change: BuildChange): void {
    live.record = evolve(live.record, change);
    this.files.save(live.record, live.progress);
  }

  private addProgress(live: LiveBuild, entry: ProgressEntry): void {
    if (entry.logLine) {
      live.logLines += 1;
      if (live.logLines > MAX_LOG_LINES_PER_BUILD) {
        if (live.logLines === MAX_LOG_LINES_PER_BUILD + 1) {
          entry = {
            ...entry,
            logLine: {
              ...entry.logLine,
              line: `(more than ${MAX_LOG_LINES_PER_BUILD} log lines: the rest are not kept)`,
            },
          };
        } else {
          return;
        }
      }
    }
    live.progress.push(entry);
    const message = progressMessage(entry);
    for (const watcher of live.watchers) watcher.next(message);
  }

  /** Once every release has ended: PatchPublished (when there are artifacts), then `finished`. */
  private async finishIfDone(live: LiveBuild): Promise<void> {
    if (live.finishing || live.record.finishedAt !== undefined || !allKernelsFinal(live.record)) return;
    live.finishing = true;
    const published = patchPublished(live.record, this.options.actor);
    if (published) await this.publishLogged(published);
    this.apply(live, { kind: 'finished', at: this.now() });
    delete live.work;
    const state = overallState(live.record);
    this.options.log.log(`build ${live.record.buildId} ${state}`);
    const finished = finishedMessage(live.record);
    for (const watcher of live.watchers) {
      watcher.next(finished);
      watcher.complete();
    }
    live.watchers.clear();
  }

  /** Ends every unfinished release of a build as ABORTED, with its BuildFailed event. */
  private async abortUnfinished(live: LiveBuild, why: string): Promise<void> {
    this.queue.remove(live.record.buildId);
    for (const part of live.record.kernels) {
      if (isFinalKernel(part.state)) continue;
      this.apply(live, {
        kind: 'kernel-failed',
        release: part.release,
        code: 'ABORTED',
        diagnostics: [why],
        at: this.now(),
      });
      const ended = live.record.kernels.find((k) => k.release === part.release)!;
      this.addProgress(live, {
        at: this.now(),
        stageChanged: {
          kernelRelease: part.release,
          stage: ended.stage,
          state: ended.state,
          diagnostics: ended.diagnostics,
        },
      });
      await this.publishLogged(buildFailed(live.record, ended, this.options.actor));
    }
    await this.finishIfDone(live);
  }

  /**
   * Events that report what already happened (a release built or failed): a Kafka outage must
   * not undo the build, so a failure is logged loudly; the publisher settles its chain on the
   * next publish.
   */
  private async publishLogged(draft: EventDraft): Promise<void> {
    try {
      await this.options.publisher.publish(draft);
    } catch (error) {
      this.options.log.error(
        `${draft.payload.type} on ${draft.stream} was not written: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}

function progressMessage(entry: ProgressEntry): builder.WatchBuildResponse {
  const at = toTimestamp(new Date(entry.at));
  if (entry.stageChanged) {
    const s = entry.stageChanged;
    return {
      at,
      stageChanged: {
        kernelRelease: s.kernelRelease,
        stage: s.stage,
        state: stateCode(s.state),
        diagnostics: s.diagnostics,
      },
    };
  }
  return { at, logLine: entry.logLine! };
}

function finishedMessage(record: BuildRecord): builder.WatchBuildResponse {
  return { at: toTimestamp(new Date(record.finishedAt ?? Date.now())), finished: toBuildMessage(record) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
