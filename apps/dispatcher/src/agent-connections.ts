// Which agents hold a stream to this dispatcher now, and since when the others are away.
import type { dispatcher } from '@rebootless/contracts';

export interface AgentStream {
  send(message: dispatcher.ConnectResponse): void;
  /** Ends the stream (a newer one of the same host replaced it). */
  replaced(): void;
}

export class AgentConnections {
  private readonly streams = new Map<string, AgentStream>();
  private readonly away = new Map<string, number>();

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

  isOnline(hostId: string): boolean {
    return this.streams.has(hostId);
  }

  offlineSince(hostId: string): number | undefined {
    return this.away.get(hostId);
  }

  /** False when the host is not connected: the command waits for its next connection. */
  send(hostId: string, message: dispatcher.ConnectResponse): boolean {
    const stream = this.streams.get(hostId);
    if (!stream) return false;
    stream.send(message);
    return true;
  }
}
