import { dispatcher, events } from '@rebootless/contracts';
import type { EventDraft } from '@rebootless/events';
import type { EventPublisher } from '@rebootless/kafka';
import { AgentConnections } from './agent-connections';
import { AgentNoAnswerError, HostPreconditionError, InvalidRequestError } from './dispatcher-errors';
import type { CommandAnswer } from './coordination';
import { QuarantineOperation, type PeerInstances } from './quarantine-operation';

const ALICE: events.Actor = { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '10.0.0.7' };
const REQUEST: dispatcher.ClearQuarantineRequest = {
  hostId: 'web-17',
  patchId: 'crashy',
  version: '1',
  reason: 'PSU fault, not the patch',
};

/** What happened, in order: events written, commands noted for the gateway, commands sent. */
type Step = { written: EventDraft[] } | { noted: [string, string] } | { sent: dispatcher.ConnectResponse };

function given(
  agentAnswers?: (command: dispatcher.ClearQuarantineCommand) => dispatcher.CommandResult | undefined,
  peers?: PeerInstances,
  answeringHost = 'web-17',
) {
  const steps: Step[] = [];
  const agents = new AgentConnections();
  const publisher = {
    publish: (drafts: EventDraft[]) => {
      steps.push({ written: drafts });
      return Promise.resolve();
    },
  } as unknown as EventPublisher;
  if (agentAnswers) {
    agents.attach('web-17', {
      send: (message) => {
        steps.push({ sent: message });
        const answer = message.clearQuarantine && agentAnswers(message.clearQuarantine);
        if (answer) setImmediate(() => agents.answered(answeringHost, answer));
      },
      replaced: () => undefined,
    });
  }
  const noteCommand = (commandId: string, hostId: string) => void steps.push({ noted: [commandId, hostId] });
  return {
    steps,
    agents,
    operation: new QuarantineOperation(agents, publisher, noteCommand, peers, 600, () =>
      Date.parse('2026-12-06T08:00:00Z'),
    ),
  };
}

const answer = (
  command: dispatcher.ClearQuarantineCommand,
  outcome: dispatcher.CommandOutcome,
  error = '',
): dispatcher.CommandResult => ({
  commandId: command.commandId,
  outcome,
  stage: 'clear-quarantine',
  error,
  forced: false,
  stack: [],
});

describe('QuarantineOperation.clear', () => {
  it('Given a connected agent that clears it, Then the request is written with the operator and reason, and the gateway told whose answer to relay, before the command goes out', async () => {
    const { steps, operation } = given((c) => answer(c, dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED));
    const { commandId } = await operation.clear(REQUEST, ALICE);
    expect(steps.map((s) => Object.keys(s)[0])).toEqual(['written', 'noted', 'sent']);
    expect(steps[1]).toEqual({ noted: [commandId, 'web-17'] });
    const [written] = (steps[0] as { written: EventDraft[] }).written;
    expect(written).toMatchObject({
      stream: 'host/web-17',
      actor: ALICE,
      payload: {
        type: 'QuarantineClearRequested',
        data: { hostId: 'web-17', commandId, patchId: 'crashy', version: '1', reason: 'PSU fault, not the patch' },
      },
    });
    expect((steps[2] as { sent: dispatcher.ConnectResponse }).sent.clearQuarantine).toMatchObject({
      commandId,
      patchId: 'crashy',
      version: '1',
      reason: 'PSU fault, not the patch',
      expiresAt: { seconds: String(Date.parse('2026-12-06T08:05:00Z') / 1000), nanos: 0 },
    });
  });

  it.each([
    ['hostId', 'host_id'],
    ['patchId', 'patch_id'],
    ['version', 'version'],
    ['reason', 'reason'],
  ] as const)('Given no %s, Then it is refused naming %s, and nothing is written or sent', async (field, wire) => {
    const { steps, operation } = given((c) => answer(c, dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED));
    const refusal = operation.clear({ ...REQUEST, [field]: ' ' }, ALICE);
    await expect(refusal).rejects.toThrow(InvalidRequestError);
    await expect(refusal).rejects.toThrow(new RegExp(`^${wire}: is required`));
    expect(steps).toEqual([]);
  });

  it('Given the host’s agent is connected to no instance, Then it is refused at once and nothing is written', async () => {
    const { steps, operation } = given(undefined, { holds: () => false, answerOf: () => Promise.resolve(undefined) });
    await expect(operation.clear(REQUEST, ALICE)).rejects.toThrow(
      new HostPreconditionError(
        'the agent of web-17 is not connected to any dispatcher instance: only the agent can clear its quarantine; try again once it is',
      ),
    );
    expect(steps).toEqual([]);
  });

  it('Given the agent refuses (not quarantined there), Then the caller gets the agent’s words', async () => {
    const { operation } = given((c) =>
      answer(c, dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED, 'patch crashy 1 is not quarantined on this host'),
    );
    await expect(operation.clear(REQUEST, ALICE)).rejects.toThrow(
      new HostPreconditionError('the agent of web-17 refused: patch crashy 1 is not quarantined on this host'),
    );
  });

  it('Given another host answers the command, Then that answer counts for nothing', async () => {
    const { operation } = given(
      (c) => answer(c, dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED),
      undefined,
      'db-3',
    );
    await expect(operation.clear(REQUEST, ALICE)).rejects.toThrow(AgentNoAnswerError);
  });

  it('Given the agent does not answer, Then the caller is told to look at the audit log', async () => {
    const { operation } = given(() => undefined);
    const refusal = operation.clear(REQUEST, ALICE);
    await expect(refusal).rejects.toThrow(AgentNoAnswerError);
    await expect(refusal).rejects.toThrow(/rebootless audit --host web-17 shows whether it cleared the quarantine$/);
  });

  describe('Given the agent is connected to another instance', () => {
    const elsewhere = (kept?: (commandId: string) => CommandAnswer | undefined): PeerInstances => ({
      holds: (hostId) => hostId === 'web-17',
      answerOf: (commandId) => Promise.resolve(kept?.(commandId)),
    });

    it('Then the request is written for that instance to carry, none is sent from here, and the agent’s fact in the log answers', async () => {
      const { steps, agents, operation } = given(undefined, elsewhere());
      const cleared = operation.clear(REQUEST, ALICE);
      await new Promise((r) => setTimeout(r, 50));
      const [noted] = steps.filter((s): s is { noted: [string, string] } => 'noted' in s);
      // Its PatchQuarantineCleared, read in the log, is the host's answer.
      agents.answered('web-17', {
        commandId: noted!.noted[0],
        outcome: dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED,
        stage: 'done',
        error: '',
        forced: false,
        stack: [],
      });
      await expect(cleared).resolves.toEqual({ commandId: noted!.noted[0] });
      expect(steps.map((s) => Object.keys(s)[0])).toEqual(['written', 'noted']);
    });

    it('Then a refusal kept by that instance reaches the caller in the agent’s words', async () => {
      const { operation } = given(
        undefined,
        elsewhere((commandId) => ({
          commandId,
          outcome: dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED,
          stage: 'verify',
          error: 'patch crashy 1 is not quarantined on this host',
        })),
      );
      await expect(operation.clear(REQUEST, ALICE)).rejects.toThrow(
        new HostPreconditionError('the agent of web-17 refused: patch crashy 1 is not quarantined on this host'),
      );
    });

    it('Then a success kept in the database is no answer: only the agent’s fact is', async () => {
      const { operation } = given(
        undefined,
        elsewhere((commandId) => ({
          commandId,
          outcome: dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED,
          stage: 'done',
          error: '',
        })),
      );
      await expect(operation.clear(REQUEST, ALICE)).rejects.toThrow(AgentNoAnswerError);
    });
  });
});
