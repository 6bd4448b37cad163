// rollout create|watch|pause|resume|approve|abort|rollback|list|show and undo (RolloutService,
// with the ledger for the timeline and the undo plan).
import { dispatcher, ledger } from '@rebootless/contracts';
import { allPages } from './build-commands';
import type { CommandContext } from './context';
import { CliError } from './errors';
import { ExitCode } from './exit-codes';
import { bool, createRolloutRequest, enumLabel, list, optionalCount, parseStates, str } from './flags';
import { rolloutFrame, waveCounts } from './progress';
import { rolloutDetail, rolloutsTable, undoPlanDetail } from './views';

const ROLLOUT = 'rebootless.dispatcher.v1.Rollout';

const { ROLLOUT_STATE_COMPLETED, ROLLOUT_STATE_ABORTED, ROLLOUT_STATE_ROLLED_BACK } = dispatcher.RolloutState;
const FINAL = new Set([ROLLOUT_STATE_COMPLETED, ROLLOUT_STATE_ABORTED, ROLLOUT_STATE_ROLLED_BACK]);

/** Completed is success; aborted and rolled back are the rollout failing. */
export function rolloutExitCode(rollout: dispatcher.Rollout): ExitCode {
  return rollout.state === ROLLOUT_STATE_ABORTED || rollout.state === ROLLOUT_STATE_ROLLED_BACK
    ? ExitCode.OperationFailed
    : ExitCode.Ok;
}

function rolloutOf(response: { rollout?: dispatcher.Rollout | undefined }, rpc: string): dispatcher.Rollout {
  if (!response.rollout) throw new CliError(`the dispatcher answered ${rpc} without the rollout`, ExitCode.Internal);
  return response.rollout;
}

function stateLine(r: dispatcher.Rollout): string {
  return `rollout ${r.rolloutId} (${r.patchId} ${r.version || 'any version'}) is ${enumLabel(dispatcher.RolloutState, r.state, 'ROLLOUT_STATE_')}${r.stateReason ? `: ${r.stateReason}` : ''}`;
}

async function followRollout(ctx: CommandContext, rolloutId: string): Promise<ExitCode> {
  ctx.followWith = `rebootless rollout watch ${rolloutId}`;
  let last: dispatcher.Rollout | undefined;
  const seen = new Map<number, string>();
  // Counts while it runs (a 100,000-host rollout's full view is 2 MB an update), every host at the end.
  const summary = { rolloutId, view: dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY };
  await ctx.calls.stream<dispatcher.WatchRolloutResponse>('dispatcher', 'WatchRollout', summary, (update) => {
    if (!update.rollout) return;
    last = update.rollout;
    if (ctx.live) ctx.live.draw(rolloutFrame(update.rollout));
    else {
      // Without a terminal: one line per wave whose progress changed, and the event behind it.
      for (const wave of update.rollout.waves) {
        const c = waveCounts(wave);
        const line = `${wave.name}: ${c.done}/${c.total} hosts${c.failed ? `, ${c.failed} failed` : ''} ${enumLabel(dispatcher.WaveState, wave.state, 'WAVE_STATE_')}`;
        if (seen.get(wave.index) !== line) ctx.note(`${update.eventType || 'now'}: ${line}`);
        seen.set(wave.index, line);
      }
    }
  });
  if (!last) throw new CliError(`the dispatcher sent nothing about rollout ${rolloutId}`, ExitCode.Internal);
  const ended: dispatcher.Rollout = last;
  if (!FINAL.has(ended.state)) {
    throw new CliError(
      `the dispatcher ended the watch of ${rolloutId} while it is ${enumLabel(dispatcher.RolloutState, ended.state, 'ROLLOUT_STATE_')}; watch it again`,
      ExitCode.Unreachable,
    );
  }
  const rollout = rolloutOf(
    await ctx.calls.unary<dispatcher.GetRolloutResponse>('dispatcher', 'GetRollout', { rolloutId }),
    'GetRollout',
  );
  ctx.answer(rolloutDetail(rollout), () => ctx.view(ROLLOUT, rollout));
  return rolloutExitCode(rollout);
}

async function answerRollout(ctx: CommandContext, rollout: dispatcher.Rollout, prefix = ''): Promise<ExitCode> {
  if (bool(ctx.flags, 'watch') && !bool(ctx.flags, 'dry-run')) {
    ctx.note(`${prefix}${stateLine(rollout)}`);
    return followRollout(ctx, rollout.rolloutId);
  }
  ctx.answer(`${prefix}${rolloutDetail(rollout)}`, () => ctx.view(ROLLOUT, rollout));
  return ExitCode.Ok;
}

export async function rolloutCreate(ctx: CommandContext): Promise<ExitCode> {
  const request = createRolloutRequest(ctx.flags);
  const rollout = rolloutOf(
    await ctx.calls.unary<dispatcher.CreateRolloutResponse>('dispatcher', 'CreateRollout', request),
    'CreateRollout',
  );
  return answerRollout(ctx, rollout, request.dryRun && !rollout.stateReason ? 'dry run: nothing was created\n' : '');
}

export function rolloutWatch(ctx: CommandContext): Promise<ExitCode> {
  return followRollout(ctx, ctx.positionals['ROLLOUT_ID']!);
}

async function simpleWrite(ctx: CommandContext, rpc: string, request: object): Promise<ExitCode> {
  const response = await ctx.calls.unary<{ rollout?: dispatcher.Rollout }>('dispatcher', rpc, request);
  const rollout = rolloutOf(response, rpc);
  if (bool(ctx.flags, 'watch')) return answerRollout(ctx, rollout);
  ctx.answer(stateLine(rollout), () => ctx.view(ROLLOUT, rollout));
  return ExitCode.Ok;
}

export const rolloutPause = (ctx: CommandContext) =>
  simpleWrite(ctx, 'PauseRollout', {
    rolloutId: ctx.positionals['ROLLOUT_ID'],
    reason: str(ctx.flags, 'reason') ?? '',
  });
export const rolloutResume = (ctx: CommandContext) =>
  simpleWrite(ctx, 'ResumeRollout', { rolloutId: ctx.positionals['ROLLOUT_ID'] });
export const rolloutAbort = (ctx: CommandContext) =>
  simpleWrite(ctx, 'AbortRollout', { rolloutId: ctx.positionals['ROLLOUT_ID'], reason: str(ctx.flags, 'reason') });
export const rolloutRollback = (ctx: CommandContext) =>
  simpleWrite(ctx, 'RollbackRollout', { rolloutId: ctx.positionals['ROLLOUT_ID'], reason: str(ctx.flags, 'reason') });

export async function rolloutApprove(ctx: CommandContext): Promise<ExitCode> {
  const rolloutId = ctx.positionals['ROLLOUT_ID']!;
  let waveIndex = optionalCount(ctx.flags, 'wave');
  if (waveIndex === undefined) {
    // The wave waiting now; the dispatcher still refuses if it changed in between.
    const current = rolloutOf(
      await ctx.calls.unary<dispatcher.GetRolloutResponse>('dispatcher', 'GetRollout', { rolloutId }),
      'GetRollout',
    );
    const waiting = current.waves.find((w) => w.state === dispatcher.WaveState.WAVE_STATE_AWAITING_APPROVAL);
    if (!waiting) {
      throw new CliError(
        `${stateLine(current)}; no wave is waiting for approval, so there is nothing to approve`,
        ExitCode.Rejected,
      );
    }
    waveIndex = waiting.index;
  }
  return simpleWrite(ctx, 'ApproveRollout', { rolloutId, waveIndex, comment: str(ctx.flags, 'comment') ?? '' });
}

export async function rolloutList(ctx: CommandContext): Promise<ExitCode> {
  const states = parseStates<dispatcher.RolloutState>(
    list(ctx.flags, 'state'),
    '--state',
    'ROLLOUT_STATE_',
    dispatcher.RolloutState,
  );
  const rollouts = await allPages(optionalCount(ctx.flags, 'limit', 1), async (pageToken, pageSize) => {
    const page = await ctx.calls.unary<dispatcher.ListRolloutsResponse>('dispatcher', 'ListRollouts', {
      pageSize,
      pageToken,
      states,
      patchId: str(ctx.flags, 'patch') ?? '',
    });
    return { items: page.rollouts, next: page.nextPageToken };
  });
  ctx.answer(rolloutsTable(rollouts), () => ({ rollouts: rollouts.map((r) => ctx.view(ROLLOUT, r)) }));
  return ExitCode.Ok;
}

export async function rolloutShow(ctx: CommandContext): Promise<ExitCode> {
  const rolloutId = ctx.positionals['ROLLOUT_ID']!;
  const rollout = rolloutOf(
    await ctx.calls.unary<dispatcher.GetRolloutResponse>('dispatcher', 'GetRollout', { rolloutId }),
    'GetRollout',
  );
  let timeline: ledger.AuditRecord[] = [];
  if (bool(ctx.flags, 'timeline')) {
    try {
      timeline = (await ctx.calls.unary<ledger.GetRolloutResponse>('ledger', 'GetRollout', { rolloutId })).timeline;
    } catch (error) {
      // The ledger may not have projected a rollout the dispatcher just created: show what there is.
      if (!(error instanceof CliError && error.exitCode === ExitCode.NotFound)) throw error;
      ctx.note(`rebootless: no timeline yet: ${error.message}`);
    }
  }
  ctx.answer(rolloutDetail(rollout, timeline), () => ({
    ...(ctx.view(ROLLOUT, rollout) as object),
    ...(bool(ctx.flags, 'timeline')
      ? { timeline: timeline.map((r) => ctx.view('rebootless.ledger.v1.AuditRecord', r)) }
      : {}),
  }));
  return ExitCode.Ok;
}

export async function undo(ctx: CommandContext): Promise<ExitCode> {
  const hostId = ctx.positionals['HOST']!;
  const patchId = ctx.positionals['PATCH']!;
  if (bool(ctx.flags, 'plan')) {
    const plan = await ctx.calls.unary<ledger.PlanUndoResponse>('ledger', 'PlanUndo', { hostId, patchId });
    ctx.answer(undoPlanDetail(hostId, patchId, plan), () => ctx.view('rebootless.ledger.v1.PlanUndoResponse', plan));
    return ExitCode.Ok;
  }
  const request: dispatcher.UndoRequest = {
    hostId,
    patchId,
    version: str(ctx.flags, 'version') ?? '',
    reason: str(ctx.flags, 'reason') ?? '',
    allowDowngrade: bool(ctx.flags, 'allow-downgrade'),
    dryRun: bool(ctx.flags, 'dry-run'),
  };
  const rollout = rolloutOf(await ctx.calls.unary<dispatcher.UndoResponse>('dispatcher', 'Undo', request), 'Undo');
  return answerRollout(ctx, rollout, request.dryRun && !rollout.stateReason ? 'dry run: nothing was started\n' : '');
}
