// build submit|watch|list|show and patch retract (BuildService), patch list (LedgerService).
import { builder, ledger } from '@rebootless/contracts';
import type { CommandContext } from './context';
import { CliError, UsageError } from './errors';
import { ExitCode } from './exit-codes';
import { bool, fixFile, list, optionalCount, parseStates, str, submitBuildRequest } from './flags';
import { applyStageChange, buildFrame, kernelsOf, stageText, type KernelProgress } from './progress';
import { buildDetail, buildsTable, patchesTable } from './views';

const BUILD = 'rebootless.builder.v1.Build';

const FILE_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory, not a file',
};

function readFix(ctx: CommandContext): { kind: 'source' | 'diff'; bytes: Buffer } {
  const fix = fixFile(ctx.flags);
  try {
    const bytes = ctx.readFile(fix.path);
    if (bytes.length === 0) throw new UsageError(`--${fix.kind} ${fix.path} is empty`);
    return { kind: fix.kind, bytes };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why = code ? (FILE_ERRORS[code] ?? code) : (error as Error).message;
    throw new UsageError(`cannot read --${fix.kind} ${fix.path}: ${why}`);
  }
}

export async function buildSubmit(ctx: CommandContext): Promise<ExitCode> {
  const request = submitBuildRequest(ctx.flags, readFix(ctx));
  const submitted = await ctx.calls.unary<builder.SubmitBuildResponse>('builder', 'SubmitBuild', request);
  if (bool(ctx.flags, 'watch')) {
    ctx.note(`submitted build ${submitted.buildId} (patch ${submitted.patchId})`);
    return followBuild(ctx, submitted.buildId, (build) => ({
      buildId: submitted.buildId,
      patchId: submitted.patchId,
      build: ctx.view(BUILD, build),
    }));
  }
  ctx.answer(
    `submitted build ${submitted.buildId} (patch ${submitted.patchId})\nfollow it: rebootless build watch ${submitted.buildId}`,
    () => ctx.view('rebootless.builder.v1.SubmitBuildResponse', submitted),
  );
  return ExitCode.Ok;
}

export function buildWatch(ctx: CommandContext): Promise<ExitCode> {
  return followBuild(ctx, ctx.positionals['BUILD_ID']!, (build) => ctx.view(BUILD, build));
}

async function followBuild(
  ctx: CommandContext,
  buildId: string,
  json: (build: builder.Build) => unknown,
): Promise<ExitCode> {
  ctx.followWith = `rebootless build watch ${buildId}`;
  let kernels: KernelProgress[] = [];
  let finished: builder.Build | undefined;
  const logs = bool(ctx.flags, 'logs');
  await ctx.calls.stream<builder.WatchBuildResponse>('builder', 'WatchBuild', { buildId }, (update) => {
    if (update.stageChanged) {
      kernels = applyStageChange(kernels, update.stageChanged);
      const c = update.stageChanged;
      if (ctx.live) ctx.live.draw(buildFrame(buildId, kernels));
      else ctx.note(`${c.kernelRelease}: ${stageText(c.stage, c.state)}`);
    } else if (update.logLine && logs) {
      const line = `${update.logLine.kernelRelease} ${update.logLine.stage}: ${update.logLine.line}`;
      if (ctx.live) ctx.live.note(line, buildFrame(buildId, kernels));
      else ctx.note(line);
    } else if (update.finished) {
      finished = update.finished;
      ctx.live?.draw(buildFrame(buildId, kernelsOf(update.finished)));
    }
  });
  if (!finished) {
    throw new CliError(
      `the builder ended the watch of ${buildId} without its final state; run rebootless build show ${buildId}`,
      ExitCode.Internal,
    );
  }
  const build = finished;
  ctx.answer(buildDetail(build), () => json(build));
  return build.state === builder.BuildState.BUILD_STATE_SUCCEEDED ? ExitCode.Ok : ExitCode.OperationFailed;
}

/** Every page, up to `limit` items. */
export async function allPages<T>(
  limit: number | undefined,
  page: (pageToken: string, pageSize: number) => Promise<{ items: T[]; next: string }>,
): Promise<T[]> {
  const items: T[] = [];
  let token = '';
  do {
    const want = limit === undefined ? 100 : Math.min(100, limit - items.length);
    const result = await page(token, want);
    items.push(...result.items);
    token = result.next;
  } while (token && (limit === undefined || items.length < limit));
  return limit === undefined ? items : items.slice(0, limit);
}

export async function buildList(ctx: CommandContext): Promise<ExitCode> {
  const states = parseStates<builder.BuildState>(
    list(ctx.flags, 'state'),
    '--state',
    'BUILD_STATE_',
    builder.BuildState,
  );
  const builds = await allPages(optionalCount(ctx.flags, 'limit', 1), async (pageToken, pageSize) => {
    const page = await ctx.calls.unary<builder.ListBuildsResponse>('builder', 'ListBuilds', {
      pageSize,
      pageToken,
      patchId: str(ctx.flags, 'patch') ?? '',
      states,
    });
    return { items: page.builds, next: page.nextPageToken };
  });
  ctx.answer(buildsTable(builds), () => ({ builds: builds.map((b) => ctx.view(BUILD, b)) }));
  return ExitCode.Ok;
}

export async function buildShow(ctx: CommandContext): Promise<ExitCode> {
  const { build } = await ctx.calls.unary<builder.GetBuildResponse>('builder', 'GetBuild', {
    buildId: ctx.positionals['BUILD_ID'],
  });
  if (!build) throw new UsageError('the builder answered GetBuild without a build');
  ctx.answer(buildDetail(build), () => ctx.view(BUILD, build));
  return ExitCode.Ok;
}

export async function patchRetract(ctx: CommandContext): Promise<ExitCode> {
  const request: builder.RetractPatchRequest = {
    patchId: ctx.positionals['PATCH_ID']!,
    version: str(ctx.flags, 'version')!,
    reason: str(ctx.flags, 'reason')!,
  };
  await ctx.calls.unary<builder.RetractPatchResponse>('builder', 'RetractPatch', request);
  ctx.answer(`retracted ${request.patchId} ${request.version}: agents refuse it and rollouts stop sending it`, () => ({
    patchId: request.patchId,
    version: request.version,
    reason: request.reason,
    retracted: true,
  }));
  return ExitCode.Ok;
}

export async function patchList(ctx: CommandContext): Promise<ExitCode> {
  const patches = await allPages(undefined, async (pageToken, pageSize) => {
    const page = await ctx.calls.unary<ledger.ListPatchesResponse>('ledger', 'ListPatches', {
      pageSize,
      pageToken,
      cveId: str(ctx.flags, 'cve') ?? '',
      kernelRelease: str(ctx.flags, 'kernel') ?? '',
      includeRetracted: bool(ctx.flags, 'include-retracted'),
    });
    return { items: page.patches, next: page.nextPageToken };
  });
  ctx.answer(patchesTable(patches), () => ({ patches: patches.map((p) => ctx.view('rebootless.ledger.v1.Patch', p)) }));
  return ExitCode.Ok;
}
