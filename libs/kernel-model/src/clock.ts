/** Milliseconds since an arbitrary origin; only differences matter. */
export interface KernelClock {
  now(): number;
}

export const systemClock: KernelClock = { now: () => Date.now() };

/** A clock tests drive by hand, so transitions end exactly when the test says. */
export class ManualClock implements KernelClock {
  constructor(private current = 0) {}

  now(): number {
    return this.current;
  }

  advance(ms: number): void {
    if (!(ms >= 0)) throw new Error(`ManualClock.advance: expected ms >= 0, got ${ms}`);
    this.current += ms;
  }
}
