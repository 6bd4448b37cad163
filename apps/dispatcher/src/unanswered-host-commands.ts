// Commands to a host outside rollouts (a quarantine to clear) that its agent has not answered
// yet, whichever instance wrote them. An agent may move between instances while one is on its
// way: each instance sends the host's unanswered, unexpired commands whenever its agent connects
// there, as it does a rollout's. Sending one twice is safe: the agent answers a command id it has
// seen with the answer it gave (it carries nothing out twice).
import { fromTimestamp, type dispatcher } from '@rebootless/contracts';

export interface UnansweredHostCommand {
  readonly hostId: string;
  readonly clearQuarantine: dispatcher.ClearQuarantineCommand;
  /** Written by another instance: its refusal is kept for that instance when this one carries it. */
  readonly byPeer: boolean;
}

export class UnansweredHostCommands {
  private readonly byHost = new Map<string, Map<string, UnansweredHostCommand>>();
  private readonly hostOf = new Map<string, string>();

  add(command: UnansweredHostCommand, now: number): void {
    this.dropExpired(now);
    if (expiresAt(command) <= now) return;
    let commands = this.byHost.get(command.hostId);
    if (!commands) this.byHost.set(command.hostId, (commands = new Map()));
    commands.set(command.clearQuarantine.commandId, command);
    this.hostOf.set(command.clearQuarantine.commandId, command.hostId);
  }

  /** Answered (the agent's fact, or its refusal), or sent to a host that is not the command's: no longer sent. */
  settle(commandId: string): void {
    const hostId = this.hostOf.get(commandId);
    if (hostId === undefined) return;
    this.hostOf.delete(commandId);
    const commands = this.byHost.get(hostId)!;
    commands.delete(commandId);
    if (commands.size === 0) this.byHost.delete(hostId);
  }

  /** The host's commands still to answer, oldest first (as written). */
  of(hostId: string, now: number): UnansweredHostCommand[] {
    this.dropExpired(now);
    return [...(this.byHost.get(hostId)?.values() ?? [])];
  }

  get size(): number {
    return this.hostOf.size;
  }

  /** The agent refuses an expired command anyway; dropped, so a host that never comes back leaves nothing. */
  private dropExpired(now: number): void {
    for (const commands of this.byHost.values())
      for (const command of commands.values())
        if (expiresAt(command) <= now) this.settle(command.clearQuarantine.commandId);
  }
}

function expiresAt(command: UnansweredHostCommand): number {
  const at = command.clearQuarantine.expiresAt;
  // Every instance writes one; a command without is not kept (the agent would take it at any time).
  return at ? fromTimestamp(at).getTime() : Number.NEGATIVE_INFINITY;
}
