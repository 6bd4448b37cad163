// How several dispatcher instances share the work (docs/adr/0025): which instance drives which
// rollout (a lease each; at most one holder), and where each host's agent is connected (so the
// instance driving a rollout knows a host is reachable through another instance, which delivers
// the command it finds in the log). One instance alone needs neither: it drives everything.

/** An agent's answer to a command, as one instance keeps it for another. */
export interface CommandAnswer {
  commandId: string;
  /** dispatcher.v1.CommandOutcome. */
  outcome: number;
  stage: string;
  error: string;
}

/** Where a host's agent is, as seen from the other instances. */
export interface PeerPresence {
  /** Connected now to another live instance. */
  online: boolean;
  /** Since when no instance holds it (its last instance closed the stream or died); undefined if online or never seen. */
  offlineSince?: number;
}

export interface Coordination {
  /** The instance name (producer id `dispatcher/<instance>`), or undefined when it runs alone. */
  readonly instance: string | undefined;
  /** Tries to take the rollout's lease; true if this instance holds it now (it may already have). */
  claim(rolloutId: string): Promise<boolean>;
  /** Lets the lease go (the rollout has nothing left to drive). */
  release(rolloutId: string): Promise<void>;
  /** The instance that holds the lease, when known (for the error an operator sees). */
  holderOf(rolloutId: string): Promise<string | undefined>;
  /** Told once each time the leases held so far are lost (the session that held them ended). */
  onLeasesLost(listener: () => void): void;
  /**
   * Whether the leases held are still this instance's, asked of the database before each write:
   * false (and every lease given up) when the session that holds them is gone or does not answer
   * in time, as when the network cut this instance off from the database but not from Kafka.
   */
  confirmLeases(): Promise<boolean>;
  /**
   * Keeps an agent's answer to a command another instance wrote (a ClearQuarantine whose host is
   * connected here), for that instance to tell its caller. Only answers that are no proof are
   * taken from here: a success counts when the agent's own sealed fact is read in the log.
   */
  recordAnswer(result: CommandAnswer): Promise<void>;
  /** The answer another instance kept for the command, if there is one yet. */
  answerOf(commandId: string): Promise<CommandAnswer | undefined>;
  agentAttached(hostId: string, at: number): void;
  agentDetached(hostId: string, at: number): void;
  /** Where the host's agent is on the other instances; undefined when they know nothing of it. */
  elsewhere(hostId: string): PeerPresence | undefined;
  /** Every host `elsewhere` may call offline (more is fine, none may be missing). */
  awayElsewhere(): Iterable<string>;
  close(): Promise<void>;
}

/** One dispatcher: it holds every lease, and no other instance holds any agent. */
export class SoleInstance implements Coordination {
  readonly instance = undefined;
  claim(): Promise<boolean> {
    return Promise.resolve(true);
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
  holderOf(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }
  onLeasesLost(): void {
    // Nothing holds its leases but the process itself.
  }
  confirmLeases(): Promise<boolean> {
    return Promise.resolve(true);
  }
  recordAnswer(): Promise<void> {
    // Alone, every command's agent answers here.
    return Promise.resolve();
  }
  answerOf(): Promise<CommandAnswer | undefined> {
    return Promise.resolve(undefined);
  }
  agentAttached(): void {
    // No other instance asks where agents are.
  }
  agentDetached(): void {
    // As above.
  }
  elsewhere(): PeerPresence | undefined {
    return undefined;
  }
  awayElsewhere(): Iterable<string> {
    return [];
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
