// Which agents hold a stream to this dispatcher now, and since when the others are away.
import { dispatcher } from '@rebootless/contracts';

export interface AgentStream {
  send(message: dispatcher.ConnectResponse): void;
  /** Ends the stream (a newer one of the same host replaced it). */
  replaced(): void;
  /** Ends the stream UNAUTHENTICATED: the key it speaks with is no longer trusted (docs/adr/0028). */
  untrusted(why: string): void;
  /** The key the agent said at hello it signs with (raw Ed25519; empty if it said none). */
  agentKey?: Uint8Array;
}

export class AgentConnections {
  private readonly streams = new Map<string, AgentStream>();
  private readonly away = new Map<string, number>();
  /** Commands outside rollouts whose caller waits for the agent's answer: by command id, with the host asked. */
  private readonly waiting = new Map<string, { hostId: string; resolve: (result: dispatcher.CommandResult) => void }>();

  get connected(): number {
    return this.streams.size;
  }

  attach(hostId: string, stream: AgentStream): void {
    const previous = this.streams.get(hostId);
    this.streams.set(hostId, stream);
    this.away.delete(hostId);
    // One stream per agent: an agent that reconnects before its old stream timed out wins.
    if (previous && previous !== stream) previous.replaced();
  }

  detach(hostId: string, stream: AgentStream, at: number): void {
    if (this.streams.get(hostId) !== stream) return;
    this.streams.delete(hostId);
    this.away.set(hostId, at);
  }

  /**
   * An operator revoked keys of the host's agent: its stream here ends unless the key it said at
   * hello is one still bound (`trusted`), e.g. a rebuilt host's new key. Returns whether one ended.
   */
  revoked(hostId: string, trusted: (key: Uint8Array) => boolean, why: string): boolean {
    const stream = this.streams.get(hostId);
    if (!stream || (stream.agentKey && stream.agentKey.length > 0 && trusted(stream.agentKey))) return false;
    stream.untrusted(why);
    return true;
  }

  isOnline(hostId: string): boolean {
    return this.streams.has(hostId);
  }

  offlineSince(hostId: string): number | undefined {
    return this.away.get(hostId);
  }

  /** The hosts that were connected here and are not now. */
  awayHosts(): Iterable<string> {
    return this.away.keys();
  }

  /** False when the host is not connected: the command waits for its next connection. */
  send(hostId: string, message: dispatcher.ConnectResponse): boolean {
    const stream = this.streams.get(hostId);
    if (!stream) return false;
    stream.send(message);
    return true;
  }

  /**
   * The final answer (ACCEPTED is not one) of `hostId`'s agent to `commandId`, or undefined after
   * `timeoutMs`. Call before sending the command, so a quick answer is not missed.
   */
  answerTo(hostId: string, commandId: string, timeoutMs: number): Promise<dispatcher.CommandResult | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(commandId);
        resolve(undefined);
      }, timeoutMs);
      this.waiting.set(commandId, {
        hostId,
        resolve: (result) => {
          clearTimeout(timer);
          this.waiting.delete(commandId);
          resolve(result);
        },
      });
    });
  }

  /**
   * `hostId`'s agent answered (over its stream, or by its fact in the log); rollout commands are
   * judged by their events instead. Another host's answer to the command counts for nothing.
   */
  answered(hostId: string, result: dispatcher.CommandResult): void {
    if (result.outcome === dispatcher.CommandOutcome.COMMAND_OUTCOME_ACCEPTED) return;
    const waiter = this.waiting.get(result.commandId);
    if (waiter?.hostId === hostId) waiter.resolve(result);
  }
}
