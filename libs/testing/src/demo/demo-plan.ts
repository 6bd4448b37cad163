// Who is who in the demo fleet of `npm start`: pure, shared by the stack runner, the fleet process
// and the story, so that all three agree on which host stalls and which one gets the undo.

/** What the demo patch replaces (libs/kernel-toolchain livepatchSample), and where the stalled task sleeps. */
export const STALLED_FUNCTION = { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 };

export const DEMO_LABEL = { fleet: 'demo' } as const;

export interface DemoHost {
  hostId: string;
  kernelRelease: string;
  labels: Record<string, string>;
}

export interface DemoPlan {
  hosts: DemoHost[];
  /** One canary per kernel release: each module is proven on one host before its wave. */
  canaryHostIds: string[];
  /** A task sleeps in cmdline_proc_show here: its transition stalls and the rollout reports it. */
  stallHostId: string;
  /** Patched by the rollout, then the patch is undone on it. */
  undoHostId: string;
}

/**
 * `count` hosts: web-NN on the current kernel (three in five), db-NN on the previous one, as a
 * fleet halfway through a kernel upgrade looks.
 */
export function demoPlan(count: number, releases: readonly [string, string]): DemoPlan {
  if (!Number.isInteger(count) || count < 5 || count > 2000) {
    throw new Error(`the demo fleet needs 5 to 2000 hosts, not ${count}`);
  }
  const web = Math.max(3, Math.round((count * 3) / 5));
  const id = (role: string, n: number) => `${role}-${String(n).padStart(2, '0')}`;
  const hosts: DemoHost[] = [];
  for (let i = 1; i <= web; i++) {
    hosts.push({ hostId: id('web', i), kernelRelease: releases[0], labels: { ...DEMO_LABEL, role: 'web' } });
  }
  for (let i = 1; i <= count - web; i++) {
    hosts.push({ hostId: id('db', i), kernelRelease: releases[1], labels: { ...DEMO_LABEL, role: 'db' } });
  }
  return { hosts, canaryHostIds: [id('web', 1), id('db', 1)], stallHostId: id('web', web), undoHostId: id('web', 2) };
}
