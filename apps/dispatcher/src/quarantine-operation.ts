// RolloutService.ClearQuarantine (issue 21): an operator takes a patch out of a host's
// quarantine. The request is written first (QuarantineClearRequested, the operator as actor,
// with the reason), then carried to the connected agent, which records PatchQuarantineCleared
// and answers; the caller gets the agent's answer. The agent is the one that knows what it
// quarantined, so the dispatcher does not guess: a patch not quarantined there is the agent's refusal.
import { dispatcher, events, toTimestamp } from '@rebootless/contracts';
import { uuidv7 } from '@rebootless/events';
import type { EventPublisher } from '@rebootless/kafka';
import { AgentNoAnswerError, HostPreconditionError, InvalidRequestError } from './dispatcher-errors';
import type { AgentConnections } from './agent-connections';

/** The agent refuses the command after this; it only has to cross one open stream. */
const COMMAND_TTL_MS = 5 * 60_000;
const DEFAULT_ANSWER_TIMEOUT_MS = 15_000;

export class QuarantineOperation {
  constructor(
    private readonly agents: AgentConnections,
    private readonly publisher: EventPublisher,
    /** Told each command sent, so the gateway relays the agent's answer to it (and only that host's). */
    private readonly noteCommand: (commandId: string, hostId: string) => void,
    private readonly answerTimeoutMs = DEFAULT_ANSWER_TIMEOUT_MS,
    private readonly now: () => number = Date.now,
  ) {}

  async clear(
    request: dispatcher.ClearQuarantineRequest,
    actor: events.Actor,
  ): Promise<dispatcher.ClearQuarantineResponse> {
    for (const field of ['hostId', 'patchId', 'version', 'reason'] as const) {
      if (!request[field].trim())
        throw new InvalidRequestError(
          field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
          field === 'reason' ? 'is required: say why the patch is safe to try again' : 'is required',
        );
    }
    const { hostId, patchId, version, reason } = request;
    if (!this.agents.isOnline(hostId)) {
      throw new HostPreconditionError(
        `the agent of ${hostId} is not connected to this dispatcher: only the agent can clear its quarantine; try again once it is`,
      );
    }
    const commandId = uuidv7();
    const at = this.now();
    const expiresAt = toTimestamp(new Date(at + COMMAND_TTL_MS));
    await this.publisher.publish([
      {
        // The host's stream: the agent's answer lands in the same partition, after it.
        stream: `host/${hostId}`,
        payload: {
          type: 'QuarantineClearRequested',
          data: { hostId, commandId, patchId, version, reason, expiresAt },
        },
        actor,
        correlationId: commandId,
        occurredAt: new Date(at),
      },
    ]);
    this.noteCommand(commandId, hostId);
    const answer = this.agents.answerTo(commandId, this.answerTimeoutMs);
    this.agents.send(hostId, { clearQuarantine: { commandId, expiresAt, patchId, version, reason } });
    const result = await answer;
    if (!result) {
      throw new AgentNoAnswerError(
        `the agent of ${hostId} did not answer command ${commandId} within ${this.answerTimeoutMs / 1000} s; ` +
          `rebootless audit --host ${hostId} shows whether it cleared the quarantine`,
      );
    }
    if (result.outcome !== dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED) {
      throw new HostPreconditionError(`the agent of ${hostId} refused: ${result.error}`);
    }
    return { commandId };
  }
}
