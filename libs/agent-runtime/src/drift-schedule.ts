// One timer per process for every agent's periodic drift check (a transition stuck for long, a
// module loaded or removed by hand between commands), however many agents run here. An agent
// costs nothing while idle; the timer does not keep the process alive.

export interface DriftWatched {
  checkDrift(): Promise<void>;
}

const schedules = new Map<number, { timer: NodeJS.Timeout; agents: Set<DriftWatched>; running: boolean }>();

/** Adds the agent to the check every `everyMs`; returns the function that removes it. */
export function watchDrift(agent: DriftWatched, everyMs: number): () => void {
  let schedule = schedules.get(everyMs);
  if (!schedule) {
    const agents = new Set<DriftWatched>();
    const entry = {
      agents,
      running: false,
      timer: setInterval(() => {
        // A round still under way (thousands of agents, a slow kernel) is not doubled.
        if (entry.running) return;
        entry.running = true;
        void (async () => {
          for (const a of [...agents]) await a.checkDrift().catch(() => undefined);
        })().finally(() => (entry.running = false));
      }, everyMs),
    };
    entry.timer.unref();
    schedules.set(everyMs, entry);
    schedule = entry;
  }
  const held = schedule;
  held.agents.add(agent);
  return () => {
    held.agents.delete(agent);
    if (held.agents.size === 0) {
      clearInterval(held.timer);
      schedules.delete(everyMs);
    }
  };
}
