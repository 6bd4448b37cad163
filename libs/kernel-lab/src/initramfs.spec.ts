import { initScript, parseLdd, shellQuote } from './initramfs';

describe('the guest /init', () => {
  it('quotes every argument so the shell runs exactly the argv it was given', () => {
    expect(shellQuote("it's $HOME `x`")).toBe(`'it'\\''s $HOME \`x\`'`);
    expect(() => shellQuote('a\nb')).toThrow('NUL or newline');
  });

  it('starts each service in the background with its environment, then powers off when all have exited', () => {
    const script = initScript([
      { name: 'probe', argv: ['/bin/node', '/guest/probe.js', '7000'] },
      { name: 'agent', argv: ['/bin/node', '/guest/agent.js'], env: { DISPATCHER_ADDRESS: '10.0.2.100:7452' } },
    ]);
    expect(script.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(script).toContain(`'/bin/node' '/guest/probe.js' '7000' &`);
    expect(script).toContain(`env 'DISPATCHER_ADDRESS=10.0.2.100:7452' '/bin/node' '/guest/agent.js' &`);
    expect(script).toContain('ip addr add 10.0.2.15/24 dev eth0');
    expect(script).toContain('ip route add default via 10.0.2.2');
    expect(script.indexOf('mount -t proc')).toBeLessThan(script.indexOf('insmod'));
    expect(
      script.trimEnd().endsWith('wait\necho "rebootless-lab: every service exited; powering off"\nsync\npoweroff -f'),
    ).toBe(true);
  });

  it('refuses service names and variables that would need quoting in the script itself', () => {
    expect(() => initScript([{ name: 'a b', argv: ['x'] }])).toThrow('bad service name');
    expect(() => initScript([{ name: 'a', argv: ['x'], env: { 'A=B': 'c' } }])).toThrow(
      'bad environment variable name',
    );
    expect(() => initScript([{ name: 'a', argv: [] }])).toThrow('empty argv');
  });
});

describe('parseLdd', () => {
  it('lists each library ldd resolves and the ELF interpreter, not the vDSO', () => {
    const output = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f31)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f31)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f31)',
    ].join('\n');
    expect(parseLdd(output)).toEqual([
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
  });
});
