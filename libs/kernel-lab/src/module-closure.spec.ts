import {
  canonicalModuleName,
  moduleLoadOrder,
  parseModinfoDepends,
  parseModulesBuiltin,
  type ModuleNode,
} from './module-closure';

const graph = (nodes: [string, string[]][]): Map<string, ModuleNode> =>
  new Map(nodes.map(([name, depends]) => [name, { name, file: `kernel/${name}.ko`, depends }]));

describe('moduleLoadOrder', () => {
  // The shape of Debian 6.1 cloud: virtio_net needs net_failover (needs failover) and virtio core.
  const debian = graph([
    ['virtio_net', ['net_failover', 'virtio', 'virtio_ring']],
    ['net_failover', ['failover']],
    ['failover', []],
    ['virtio', []],
    ['virtio_ring', ['virtio']],
    ['virtio_pci', ['virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio', 'virtio_ring']],
    ['virtio_pci_modern_dev', []],
    ['virtio_pci_legacy_dev', []],
  ]);

  it('puts every dependency before the module that needs it, each module once', () => {
    const order = moduleLoadOrder(debian, ['virtio_pci', 'virtio_net']).map((m) => m.name);
    expect(order).toEqual([
      'virtio_pci_modern_dev',
      'virtio_pci_legacy_dev',
      'virtio',
      'virtio_ring',
      'virtio_pci',
      'failover',
      'net_failover',
      'virtio_net',
    ]);
  });

  it('skips modules built into the kernel', () => {
    const order = moduleLoadOrder(debian, ['virtio_net'], new Set(['virtio', 'virtio_ring'])).map((m) => m.name);
    expect(order).toEqual(['failover', 'net_failover', 'virtio_net']);
  });

  it('names the missing module and who needs it', () => {
    const broken = graph([['virtio_net', ['net_failover']]]);
    expect(() => moduleLoadOrder(broken, ['virtio_net'])).toThrow(
      'module net_failover (needed by virtio_net) is neither in the image nor built into the kernel',
    );
  });

  it('refuses a dependency cycle instead of recursing forever', () => {
    const cyclic = graph([
      ['a', ['b']],
      ['b', ['a']],
    ]);
    expect(() => moduleLoadOrder(cyclic, ['a'])).toThrow('module dependency cycle: a -> b -> a');
  });
});

describe('modinfo and modules.builtin parsing', () => {
  it('reads depends= with dashes spelled as the kernel does', () => {
    expect(parseModinfoDepends('virtio,net-failover,')).toEqual(['virtio', 'net_failover']);
    expect(parseModinfoDepends('')).toEqual([]);
    expect(parseModinfoDepends(undefined)).toEqual([]);
    expect(canonicalModuleName('virtio-rng')).toBe('virtio_rng');
  });

  it('reads built-in module names from modules.builtin', () => {
    const builtin = parseModulesBuiltin('kernel/drivers/virtio/virtio_anchor.ko\nkernel/fs/ext4/ext4.ko\n\n');
    expect([...builtin]).toEqual(['virtio_anchor', 'ext4']);
  });
});
