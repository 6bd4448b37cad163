// Revert: a command checked (expiry, replay, which module, not forced this boot), the module
// disabled and its transition seen through (re-enabled when it stalls), then removed, and the
// outcome recorded as a fact before it is answered.
import { dispatcher, events, fromTimestamp } from '@rebootless/contracts';
import { SPAN, withSpanFrom, type TraceFields } from '@rebootless/telemetry';
import { MODULE_ATTR, Outcome, settle, spanAttributes, type AgentContext } from './agent-context';
import { forcedThisBoot, moduleToRevert, wasSeen } from './rules/host-rules';
import { CommandRefused, checkCommand } from './verification';

type RevertFailed = (stage: string, error: string, stalledTasks?: events.StalledTask[]) => void;

export class RevertFlow {
  constructor(private readonly ctx: AgentContext) {}

  async revert(cmd: dispatcher.RevertCommand, trace: TraceFields = {}): Promise<dispatcher.CommandResult> {
    // Sent again (its answer had not reached the log when the agent reconnected): answered as before.
    const again = await this.ctx.answerAgain(cmd.commandId);
    if (again) return again;
    const attributes = spanAttributes(this.ctx.hostId, cmd);
    const failed: RevertFailed = (stage: string, error: string, stalledTasks: events.StalledTask[] = []) =>
      this.ctx.record(
        [
          {
            type: 'PatchRevertFailed',
            data: {
              hostId: this.ctx.hostId,
              commandId: cmd.commandId,
              patchId: cmd.patchId,
              version: cmd.version,
              stage,
              error,
              stalledTasks,
            },
          },
        ],
        cmd,
      );
    const checked = await withSpanFrom(trace, SPAN.agentVerify, attributes, async (span) => {
      const outcome = this.verifyRevert(cmd, failed);
      if ('result' in outcome) settle(span, outcome.result);
      return outcome;
    });
    if ('result' in checked) return checked.result;
    const { moduleName } = checked;
    return withSpanFrom(trace, SPAN.agentTransition, { ...attributes, [MODULE_ATTR]: moduleName }, async (span) =>
      settle(span, await this.disableAndRemove(cmd, moduleName, failed)),
    );
  }

  /** A revert checked (replay, expiry, which module, not forced): the module, or the refusal answered. */
  private verifyRevert(
    cmd: dispatcher.RevertCommand,
    failed: RevertFailed,
  ): { moduleName: string } | { result: dispatcher.CommandResult } {
    try {
      checkCommand(
        { commandId: cmd.commandId, ...(cmd.expiresAt ? { expiresAt: fromTimestamp(cmd.expiresAt) } : {}) },
        new Date(this.ctx.now()),
        (id) => wasSeen(this.ctx.state.data.seenCommands, id),
      );
    } catch (error) {
      if (!(error instanceof CommandRefused)) throw error;
      failed('verify', error.message);
      return {
        result: this.ctx.answer(cmd.commandId, {
          outcome: Outcome.COMMAND_OUTCOME_REJECTED,
          stage: 'verify',
          error: error.message,
        }),
      };
    }
    // Written with the next state change, before the kernel is touched or anything is answered.
    this.ctx.rememberCommand(cmd.commandId, cmd.expiresAt);
    const moduleName = moduleToRevert(this.ctx.state.data.desired, cmd);
    if (moduleName === undefined) {
      const error = `patch ${cmd.patchId} ${cmd.version} is unknown here and the command names no module`;
      failed('verify', error);
      return {
        result: this.ctx.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error }),
      };
    }
    if (forcedThisBoot(this.ctx.state.data.forced, moduleName, this.ctx.bootId())) {
      const error = `${moduleName} was forced this boot: it can never be removed, only rebooted away`;
      failed('verify', error);
      return {
        result: this.ctx.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error }),
      };
    }
    return { moduleName };
  }

  /** Disables a verified revert's module, waits for the transition and removes it. */
  private async disableAndRemove(
    cmd: dispatcher.RevertCommand,
    moduleName: string,
    failed: RevertFailed,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.ctx.kernel;
    this.ctx.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_ACCEPTED, stage: 'disable', error: '' }, []);
    const startedAt = Date.now();
    const live = (await kernel.listPatches()).find((p) => p.moduleName === moduleName);
    if (live?.enabled) {
      try {
        await kernel.setEnabled(moduleName, false);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failed('disable', message);
        return this.ctx.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'disable', error: message },
          await kernel.listPatches(),
        );
      }
      if (!(await this.ctx.waitForTransition(moduleName))) {
        const stalled = await kernel.stalledTasks().catch(() => []);
        // Reverse the disable: the patch stays as it was, and the failure is reported.
        await kernel.setEnabled(moduleName, true).catch(() => undefined);
        const back = await this.ctx.waitForTransition(moduleName);
        const error =
          `the disable transition did not complete within ${this.ctx.timeouts.transitionMs} ms; ` +
          (back ? 'reversed, the patch stays live' : 'the reversal is stalled too');
        failed('transition', error, stalled);
        const stack = await kernel.listPatches();
        this.ctx.state.update((s) => void (s.reported = stack));
        return this.ctx.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'transition', error },
          stack,
        );
      }
    }
    if (await kernel.moduleLoaded(moduleName)) {
      try {
        await kernel.removeModule(moduleName);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failed('remove', message);
        return this.ctx.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'remove', error: message },
          await kernel.listPatches(),
        );
      }
    }
    const stack = await kernel.listPatches();
    this.ctx.state.update((s) => {
      s.desired = s.desired.filter((d) => d.moduleName !== moduleName);
      s.reported = stack;
    });
    this.ctx.record(
      [
        {
          type: 'PatchReverted',
          data: {
            hostId: this.ctx.hostId,
            commandId: cmd.commandId,
            patchId: cmd.patchId,
            version: cmd.version,
            moduleName,
            transitionMs: String(Date.now() - startedAt),
            stack,
          },
        },
      ],
      cmd,
    );
    return this.ctx.answer(
      cmd.commandId,
      { outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '' },
      stack,
    );
  }
}
