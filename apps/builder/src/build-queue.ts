// Builds waiting for a worker, first come first served. Bounded: a submission that would make
// more than `capacity` builds wait is refused (RESOURCE_EXHAUSTED) rather than queued for hours.
// A build waits while any of its kernel releases has not been handed to a worker yet; workers
// take one (build, release) job at a time, so a build for many releases uses every free worker.
// Pure: the coordinator owns the workers and calls next() when one is free.

export interface BuildJob {
  readonly buildId: string;
  readonly release: string;
}

export class QueueFullError extends Error {
  constructor(readonly capacity: number) {
    super(
      `the build queue is full (${capacity} builds waiting, BUILDER_QUEUE_SIZE); submit again once some have started`,
    );
    this.name = 'QueueFullError';
  }
}

/** A place in the queue held while the build's BuildRequested event is being written. */
export interface QueueReservation {
  /** Queues the build in the place held. */
  admit(buildId: string, releases: readonly string[]): void;
  /** Gives the place back (the build was not accepted after all). */
  cancel(): void;
}

export class BuildQueue {
  private readonly waiting: { buildId: string; releases: string[] }[] = [];
  private reserved = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
  }

  /** Builds with at least one release not yet handed to a worker, and places held. */
  get length(): number {
    return this.waiting.length + this.reserved;
  }

  /** Throws QueueFullError when `capacity` builds already wait. */
  admit(buildId: string, releases: readonly string[]): void {
    this.reserve().admit(buildId, releases);
  }

  /**
   * Holds a place, or throws QueueFullError. Places held count as waiting builds, so the answer
   * "queued" cannot turn into "full" while the submission is being recorded.
   */
  reserve(): QueueReservation {
    if (this.length >= this.capacity) throw new QueueFullError(this.capacity);
    this.reserved += 1;
    let used = false;
    const give = () => {
      if (used) throw new Error('this queue reservation was already used');
      used = true;
      this.reserved -= 1;
    };
    return {
      admit: (buildId, releases) => {
        give();
        if (releases.length > 0) this.waiting.push({ buildId, releases: [...releases] });
      },
      cancel: give,
    };
  }

  /** The oldest build's next release, or undefined when nothing waits. */
  next(): BuildJob | undefined {
    const first = this.waiting[0];
    if (!first) return undefined;
    const release = first.releases.shift()!;
    if (first.releases.length === 0) this.waiting.shift();
    return { buildId: first.buildId, release };
  }

  /** Drops what of a build has not started (cancel); returns the releases dropped. */
  remove(buildId: string): string[] {
    const at = this.waiting.findIndex((w) => w.buildId === buildId);
    if (at < 0) return [];
    const [removed] = this.waiting.splice(at, 1);
    return removed!.releases;
  }

  /** Position of a build among those waiting, 0 for the next; -1 when it does not wait. */
  position(buildId: string): number {
    return this.waiting.findIndex((w) => w.buildId === buildId);
  }
}
