import { demoPlan } from './demo-plan';

const RELEASES = ['6.1.0-57-cloud-amd64', '6.1.0-56-cloud-amd64'] as const;

describe('demoPlan', () => {
  it.each([5, 6, 50, 200])('%i hosts: both releases, a canary on each, the stall and the undo elsewhere', (count) => {
    const plan = demoPlan(count, RELEASES);
    expect(plan.hosts).toHaveLength(count);
    expect(new Set(plan.hosts.map((h) => h.hostId)).size).toBe(count);
    const releaseOf = new Map(plan.hosts.map((h) => [h.hostId, h.kernelRelease]));
    expect(plan.canaryHostIds.map((id) => releaseOf.get(id))).toEqual([...RELEASES]);
    expect(plan.canaryHostIds).not.toContain(plan.stallHostId);
    expect(plan.canaryHostIds).not.toContain(plan.undoHostId);
    expect(plan.stallHostId).not.toBe(plan.undoHostId);
    expect(releaseOf.has(plan.stallHostId) && releaseOf.has(plan.undoHostId)).toBe(true);
    expect(plan.hosts.every((h) => h.labels['fleet'] === 'demo')).toBe(true);
  });

  it('50 hosts: 30 on the current release, 20 on the previous one', () => {
    const plan = demoPlan(50, RELEASES);
    expect(plan.hosts.filter((h) => h.kernelRelease === RELEASES[0])).toHaveLength(30);
    expect(plan.hosts.filter((h) => h.kernelRelease === RELEASES[1])).toHaveLength(20);
  });

  it('refuses a fleet too small for a canary per release, a stall and an undo', () => {
    expect(() => demoPlan(4, RELEASES)).toThrow('the demo fleet needs 5 to 2000 hosts, not 4');
  });
});
