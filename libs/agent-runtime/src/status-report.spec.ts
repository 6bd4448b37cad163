import type { agent } from '@rebootless/contracts';
import { STATUS_EXIT, statusExitCode, statusText } from './status-report';

function status(over: Partial<agent.GetStatusResponse> = {}): agent.GetStatusResponse {
  return {
    facts: {
      hostId: 'web-1',
      hostname: 'web-1',
      machineId: 'm',
      kernelRelease: '6.1.0-56-cloud-amd64',
      kernelVersion: '#1 SMP',
      arch: 'x86_64',
      distro: 'Debian',
      bootId: 'b1',
      labels: {},
      agentVersion: '0.1.0',
      tainted: '45056',
      taintFlags: ['O', 'E', 'K'],
    },
    stack: [],
    desired: [],
    quarantined: [],
    forcedModules: [],
    desiredModules: [],
    stalledTasks: [],
    ...over,
  };
}

const live = (name: string) => ({
  moduleName: name,
  enabled: true,
  transition: false,
  functions: [],
  objectsPatched: {},
});
const want = (name: string, isLive: boolean) => ({
  patch: { patchId: name, version: '1' },
  moduleName: name,
  cveIds: ['CVE-2024-1086'],
  live: isLive,
});

describe('rebootless-agent status exit codes (as kcarectl --status)', () => {
  it('Given every desired patch live, Then 0', () => {
    expect(statusExitCode(status({ stack: [live('a')], desiredModules: [want('a', true)] }))).toBe(STATUS_EXIT.allLive);
  });
  it('Given desired patches and none live, Then 1', () => {
    expect(statusExitCode(status({ desiredModules: [want('a', false)] }))).toBe(STATUS_EXIT.noneApplied);
  });
  it('Given some desired patches missing, Then 2', () => {
    expect(statusExitCode(status({ stack: [live('a')], desiredModules: [want('a', true), want('b', false)] }))).toBe(
      STATUS_EXIT.someMissing,
    );
  });
  it('Given nothing desired and nothing live, Then 3 (kernel not covered)', () => {
    expect(statusExitCode(status())).toBe(STATUS_EXIT.notCovered);
  });
});

describe('rebootless-agent status text', () => {
  it('lists the stack oldest first with state and CVE ids, then what is missing and the taint', () => {
    const lines = statusText(
      status({
        stack: [live('a'), { ...live('b'), transition: true }],
        desiredModules: [want('a', true), want('b', false), want('c', false)],
        quarantined: [{ patch: { patchId: 'c', version: '1' }, reason: 'host went down after it' }],
        stalledTasks: [{ pid: 42, comm: 'nft', patchState: 0, stack: ['[<0>] nft_verdict_init+0x1c/0x90'] }],
      }),
      new Date(),
    );
    expect(lines).toContain('  1. a [enabled] a 1 [CVE-2024-1086]');
    expect(lines).toContain('  2. b [patching] b 1 [CVE-2024-1086]');
    expect(lines).toContain('  c 1 (c) QUARANTINED: host went down after it');
    expect(lines).toContain('  pid 42 nft (patch_state 0)');
    expect(lines).toContain('taint:   45056 (O, E, K)');
  });
});
