import { events } from '@rebootless/contracts';
import { describeStack, effectiveKernel, liveFunctions, ORIGINAL_CODE, severityName } from './live-functions';
import { StackInterval } from './stack';
import { applied, cve, fn, inventory, listed, PatchSpec, RELEASE, ScriptedHost } from './test-support';

const A: PatchSpec = {
  patchId: 'fix-a',
  version: '1',
  moduleName: 'lp_a',
  functions: [fn('tcp_v4_rcv'), fn('nft_verdict')],
};
const B: PatchSpec = {
  patchId: 'fix-b',
  version: '3',
  moduleName: 'lp_b',
  functions: [fn('nft_verdict'), fn('udp_rcv')],
};
const l = (p: PatchSpec, state: Partial<events.LivePatchState> = {}) => listed(p.moduleName, p.functions, state);

function stackOf(...listing: events.LivePatchState[]): StackInterval[] {
  const host = new ScriptedHost();
  host.fold(0, inventory('boot-1', listing));
  return host.stack.entries;
}

describe('live functions', () => {
  it('each function runs the most recently enabled patch that patches it', () => {
    const functions = liveFunctions(stackOf(l(A), l(B)));
    expect(functions.map((f) => [f.function.name, f.runs.moduleName])).toEqual([
      ['nft_verdict', 'lp_b'],
      ['tcp_v4_rcv', 'lp_a'],
      ['udp_rcv', 'lp_b'],
    ]);
    expect(functions[0]!.runs).toEqual({ moduleName: 'lp_b', patchId: '', version: '' });
  });

  it('names the published patch when known', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    expect(liveFunctions(host.stack.entries)[0]!.runs).toEqual({ moduleName: 'lp_a', patchId: 'fix-a', version: '1' });
  });

  it('a patch still being enabled does not run yet; the result of its transition is given apart', () => {
    const functions = liveFunctions(stackOf(l(A), l(B, { transition: true })));
    const nft = functions.find((f) => f.function.name === 'nft_verdict')!;
    expect(nft.runs.moduleName).toBe('lp_a');
    expect(nft.afterTransition?.moduleName).toBe('lp_b');
    const udp = functions.find((f) => f.function.name === 'udp_rcv')!;
    expect(udp.runs).toEqual(ORIGINAL_CODE);
    expect(udp.afterTransition?.moduleName).toBe('lp_b');
    expect(functions.find((f) => f.function.name === 'tcp_v4_rcv')!.afterTransition).toBeUndefined();
  });

  it('a patch being disabled still runs until its transition completes; a disabled one never does', () => {
    const disabling = liveFunctions(stackOf(l(A), l(B, { transition: true, enabled: false })));
    const nft = disabling.find((f) => f.function.name === 'nft_verdict')!;
    expect([nft.runs.moduleName, nft.afterTransition?.moduleName]).toEqual(['lp_b', 'lp_a']);
    const disabled = liveFunctions(stackOf(l(A), l(B, { enabled: false })));
    expect(disabled.map((f) => [f.function.name, f.runs.moduleName])).toEqual([
      ['nft_verdict', 'lp_a'],
      ['tcp_v4_rcv', 'lp_a'],
      ['udp_rcv', ''],
    ]);
  });

  it('sympos 0 and 1 are the same function, other positions are not', () => {
    const functions = liveFunctions(
      stackOf(
        listed('lp_x', [fn('dup', 'vmlinux', 0), fn('dup', 'vmlinux', 2)]),
        listed('lp_y', [fn('dup', 'vmlinux', 1)]),
      ),
    );
    expect(functions.map((f) => [f.function.sympos, f.runs.moduleName])).toEqual([
      [0, 'lp_y'],
      [2, 'lp_x'],
    ]);
  });
});

describe('the effective kernel', () => {
  it('is the release plus every running patch in stack order, with its flags', () => {
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []));
    host.fold(1, applied({ ...A, replace: true }, [l(A)]));
    host.fold(2, applied({ ...B, forced: true }, [l(A), l(B)]));
    host.fold(3, inventory('boot-1', [l(A), l(B), listed('by_hand', [], { transition: true })]));
    expect(effectiveKernel(RELEASE, host.stack.entries)).toBe(
      '6.1.0-18-cloud-amd64 + fix-a 1 (replace) + fix-b 3 (forced) + by_hand (enabling, not published by rebootless)',
    );
  });

  it('says so when nothing is patched, and leaves disabled patches out', () => {
    expect(effectiveKernel(RELEASE, [])).toBe('6.1.0-18-cloud-amd64 (no live patches)');
    expect(effectiveKernel(RELEASE, stackOf(l(A, { enabled: false })))).toBe('6.1.0-18-cloud-amd64 (no live patches)');
  });

  it('describes the stack like kpatch list, with CVEs and the code each function runs', () => {
    const host = new ScriptedHost();
    host.fold(1, applied(A, [l(A)]));
    const entries = host.stack.entries.map((e) => ({ ...e, cves: [cve('CVE-2024-1086')] }));
    expect(describeStack(RELEASE, entries)).toBe(
      [
        'Loaded patch modules:',
        '  1. lp_a [enabled] fix-a 1 CVE-2024-1086 (critical)',
        'Effective kernel: 6.1.0-18-cloud-amd64 + fix-a 1',
        'Live functions:',
        '  vmlinux:nft_verdict -> fix-a 1',
        '  vmlinux:tcp_v4_rcv -> fix-a 1',
      ].join('\n'),
    );
  });

  it('names severities', () => {
    expect(severityName(events.Severity.SEVERITY_HIGH)).toBe('high');
    expect(severityName(events.Severity.SEVERITY_CRITICAL)).toBe('critical');
  });
});
