// hosts clear-quarantine (RolloutService.ClearQuarantine, issue 21).
import type { dispatcher } from '@rebootless/contracts';
import type { CommandContext } from './context';
import { ExitCode } from './exit-codes';
import { str } from './flags';

export async function hostsClearQuarantine(ctx: CommandContext): Promise<ExitCode> {
  const request: dispatcher.ClearQuarantineRequest = {
    hostId: ctx.positionals['HOST']!,
    patchId: str(ctx.flags, 'patch')!,
    version: str(ctx.flags, 'version')!,
    reason: str(ctx.flags, 'reason')!,
  };
  const answer = await ctx.calls.unary<dispatcher.ClearQuarantineResponse>('dispatcher', 'ClearQuarantine', request);
  ctx.answer(
    `cleared the quarantine of ${request.patchId} ${request.version} on ${request.hostId} (command ${answer.commandId}); a rollout may apply it again`,
    () => ({ ...request, commandId: answer.commandId, cleared: true }),
  );
  return ExitCode.Ok;
}
