// What the agent remembers across restarts, in one small JSON file replaced atomically on every
// change. Kept apart from the outbox: the outbox is the record of facts, this is the agent's
// working memory (what it wants live, what it refuses, what it owes).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { events } from '@rebootless/contracts';
import { writeSmallFile } from './event-outbox';

const STATE_FILE = 'agent-state.json';

/** A patch the dispatcher asked this host to carry, with what re-applying it needs. */
export interface DesiredPatch {
  patchId: string;
  version: string;
  moduleName: string;
  artifactDigest: string;
  replace: boolean;
  cves: string[];
}

export interface ApplyInProgress {
  commandId: string;
  patchId: string;
  version: string;
  moduleName: string;
  artifactDigest: string;
  bootId: string;
  /** ms since the epoch. */
  startedAt: number;
}

export interface SeenCommand {
  id: string;
  until: number;
  /** The final answer sent (dispatcher.v1.CommandOutcome and its stage, error, forced). */
  answer?: { outcome: number; stage: string; error: string; forced: boolean };
}

export interface AgentStateData {
  version: 1;
  /** HostEnrolled written. */
  enrolled: boolean;
  lastBootId?: string;
  desired: DesiredPatch[];
  /**
   * Command ids seen, with the instant after which remembering them is useless (they expired),
   * and the answer given (a command sent again gets the same answer, nothing is done again).
   */
  seenCommands: SeenCommand[];
  /** Modules whose transition was forced: they pin the kernel until the next boot. */
  forced: { moduleName: string; bootId: string; at: number }[];
  quarantined: { patchId: string; version: string; reason: string; since: number }[];
  retracted: { patchId: string; version: string; reason: string }[];
  /** Set while an apply runs: found on start, it says the agent or the host died in the middle. */
  applying?: ApplyInProgress;
  /** The last patch applied, for the crash-loop guard. */
  lastApplied?: { patchId: string; version: string; bootId: string; at: number };
  /** The agent stopped cleanly after its last apply (a planned shutdown, not a crash). */
  cleanStop: boolean;
  /** The stack as last reported in an event (drift is measured against it). */
  reported?: events.LivePatchState[];
}

function empty(): AgentStateData {
  return {
    version: 1,
    enrolled: false,
    desired: [],
    seenCommands: [],
    forced: [],
    quarantined: [],
    retracted: [],
    cleanStop: false,
  };
}

export class AgentStateFile {
  readonly path: string;
  private current: AgentStateData;
  private dirty = false;

  constructor(
    dir: string,
    private readonly syncWrites = true,
  ) {
    this.path = path.join(dir, STATE_FILE);
    this.current = this.load();
  }

  get data(): Readonly<AgentStateData> {
    return this.current;
  }

  /** Applies a change and writes the file (with any staged change) before returning. */
  update(change: (state: AgentStateData) => void): void {
    this.stage(change);
    this.flush();
  }

  /**
   * Applies a change in memory only: it is written with the next update or flush. For a change
   * that must be durable before the agent acts or answers, not the moment it is made (one write
   * per apply step instead of one per field).
   */
  stage(change: (state: AgentStateData) => void): void {
    // Changed in place (a copy per change cost more than the write itself with thousands of
    // agents); a write that fails puts back what the disk holds.
    change(this.current);
    this.dirty = true;
  }

  /** Writes staged changes, if any. */
  flush(): void {
    if (!this.dirty) return;
    try {
      writeSmallFile(this.path, JSON.stringify(this.current), this.syncWrites);
    } catch (error) {
      this.current = this.load();
      throw error;
    } finally {
      this.dirty = false;
    }
  }

  private load(): AgentStateData {
    let raw: string;
    try {
      raw = fs.readFileSync(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return empty();
      throw error;
    }
    // An unreadable state must stop the agent: without it, replay protection and quarantine are gone.
    const parsed = JSON.parse(raw) as AgentStateData;
    if (parsed.version !== 1) throw new Error(`agent state ${this.path} has an unknown format`);
    return { ...empty(), ...parsed };
  }
}
