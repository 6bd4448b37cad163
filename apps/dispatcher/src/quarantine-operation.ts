// RolloutService.ClearQuarantine (issue 21): an operator takes a patch out of a host's
// quarantine. The request is written first (QuarantineClearRequested, the operator as actor,
// with the reason), then carried to the agent, which records PatchQuarantineCleared and answers;
// the caller gets the agent's answer. The agent is the one that knows what it quarantined, so the
// dispatcher does not guess: a patch not quarantined there is the agent's refusal.
//
// With several instances (ADR 0025) the agent may be connected to another one: that instance
// carries the command from the log to it, the agent's sealed PatchQuarantineCleared comes back
// through the log as the answer, and a refusal (which leaves no event) is kept for this instance
// in the coordination database. Only a refusal is taken from there: whoever can write that table
// can make a clear look refused, never make one look done.
import { dispatcher, events, toTimestamp } from '@rebootless/contracts';
import { uuidv7 } from '@rebootless/events';
import type { EventPublisher } from '@rebootless/kafka';
import { AgentNoAnswerError, HostPreconditionError, InvalidRequestError } from './dispatcher-errors';
import type { AgentConnections } from './agent-connections';
import type { CommandAnswer } from './coordination';

/** The agent refuses the command after this; it only has to cross one open stream. */
const COMMAND_TTL_MS = 5 * 60_000;
const DEFAULT_ANSWER_TIMEOUT_MS = 15_000;
/** How often a refusal kept by the instance the agent is connected to is looked for. */
const KEPT_ANSWER_POLL_MS = 200;

/** The other dispatcher instances, as far as a host command needs them. */
export interface PeerInstances {
  /** The host's agent is connected to another live instance. */
  holds(hostId: string): boolean;
  /** The answer the instance that carried the command kept for this one, if any yet. */
  answerOf(commandId: string): Promise<CommandAnswer | undefined>;
}

const ALONE: PeerInstances = { holds: () => false, answerOf: () => Promise.resolve(undefined) };

export class QuarantineOperation {
  constructor(
    private readonly agents: AgentConnections,
    private readonly publisher: EventPublisher,
    /**
     * Told each command written, so the gateway relays the agent's answer to it (and only that
     * host's); `sentHere`: this operation sends it (else the instance holding the agent does).
     */
    private readonly noteCommand: (commandId: string, hostId: string, sentHere: boolean) => void,
    private readonly peers: PeerInstances = ALONE,
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
    const here = this.agents.isOnline(hostId);
    if (!here && !this.peers.holds(hostId)) {
      throw new HostPreconditionError(
        `the agent of ${hostId} is not connected to any dispatcher instance: only the agent can clear its quarantine; try again once it is`,
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
    this.noteCommand(commandId, hostId, here);
    // Here: the agent answers over its stream. Elsewhere: its fact in the log answers, or the
    // refusal its instance kept.
    const answer = this.agents.answerTo(hostId, commandId, this.answerTimeoutMs);
    if (here) this.agents.send(hostId, { clearQuarantine: { commandId, expiresAt, patchId, version, reason } });
    const result = here ? await answer : await this.answerOrKeptRefusal(commandId, answer);
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

  private async answerOrKeptRefusal(
    commandId: string,
    answer: Promise<dispatcher.CommandResult | undefined>,
  ): Promise<dispatcher.CommandResult | undefined> {
    let settled = false;
    const kept = async (): Promise<dispatcher.CommandResult | undefined> => {
      while (!settled) {
        await new Promise((r) => setTimeout(r, KEPT_ANSWER_POLL_MS));
        const found = await this.peers.answerOf(commandId).catch(() => undefined);
        // A kept success proves nothing: the agent's fact in the log does (see the top).
        if (found && found.outcome !== dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED)
          return { ...found, forced: false, stack: [] };
      }
      return answer;
    };
    try {
      return await Promise.race([answer, kept()]);
    } finally {
      settled = true;
    }
  }
}
