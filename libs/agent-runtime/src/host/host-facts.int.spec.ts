import { SimulatedKernel } from '@rebootless/kernel-model';
import { FakeHostTree } from './fake-host-tree';
import { readHostFacts } from './host-facts';
import { LivepatchSysfs } from './livepatch-sysfs';

let tree: FakeHostTree;

beforeEach(async () => {
  tree = await FakeHostTree.create();
});

afterEach(async () => {
  await tree.remove();
});

describe('host facts', () => {
  it('a Debian host as the agent reports it: identity files, kernel from procfs, taint decoded', async () => {
    await tree.write('proc/sys/kernel/hostname', 'farm-node-0042\n');
    await tree.write('etc/machine-id', '5c1f0a2e9d8b4f7c8e3a6b2d1c0f9e8a\n');
    await tree.write(
      'etc/os-release',
      'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
    );
    await tree.write('proc/sys/kernel/osrelease', '6.1.0-56-cloud-amd64\n');
    await tree.write('proc/sys/kernel/version', '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)\n');
    await tree.write('proc/sys/kernel/random/boot_id', 'a3c9d2b0-1f44-4e0e-9d4b-6c1f2e3d4a5b\n');
    await tree.write('proc/sys/kernel/tainted', '45056\n');

    const facts = await readHostFacts({
      hostId: 'host-42',
      labels: { rack: 'b7', role: 'batch' },
      agentVersion: '0.1.0',
      kernel: new LivepatchSysfs({ root: tree.root, arch: 'x86_64' }),
      root: tree.root,
    });

    expect(facts).toEqual({
      hostId: 'host-42',
      hostname: 'farm-node-0042',
      machineId: '5c1f0a2e9d8b4f7c8e3a6b2d1c0f9e8a',
      kernelRelease: '6.1.0-56-cloud-amd64',
      kernelVersion: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)',
      arch: 'x86_64',
      distro: 'Debian GNU/Linux 12 (bookworm)',
      bootId: 'a3c9d2b0-1f44-4e0e-9d4b-6c1f2e3d4a5b',
      labels: { rack: 'b7', role: 'batch' },
      agentVersion: '0.1.0',
      tainted: '45056',
      taintFlags: ['oot_module', 'unsigned_module', 'livepatch'],
    });
  });

  it('older systems: machine-id from D-Bus, os-release from /usr/lib without PRETTY_NAME', async () => {
    await tree.write('var/lib/dbus/machine-id', 'dbus0000000000000000000000000001\n');
    await tree.write('usr/lib/os-release', 'NAME=\'CentOS Linux\'\nVERSION_ID="7"\n');
    const facts = await readHostFacts({
      hostId: 'h',
      labels: {},
      agentVersion: '0.1.0',
      kernel: new SimulatedKernel({ release: '3.10.0-1160.el7.x86_64', bootId: 'b' }),
      root: tree.root,
    });
    expect(facts.machineId).toBe('dbus0000000000000000000000000001');
    expect(facts.distro).toBe('CentOS Linux 7');
    expect(facts.hostname).toBe('');
  });

  it('a container without machine-id or os-release reports them empty instead of failing', async () => {
    const facts = await readHostFacts({
      hostId: 'h',
      labels: {},
      agentVersion: '0.1.0',
      kernel: new SimulatedKernel({ bootId: 'b' }),
      root: tree.root,
    });
    expect([facts.machineId, facts.distro]).toEqual(['', '']);
  });

  it('a simulated host takes its identity as given and its kernel facts from the simulated kernel', async () => {
    const kernel = new SimulatedKernel({ release: '6.13.4-1-amd64', arch: 'aarch64', bootId: 'boot-1' });
    await kernel.loadModule({
      path: '/lp.ko',
      moduleName: 'lp',
      functions: [{ object: 'vmlinux', name: 'f', sympos: 0 }],
      replace: false,
    });
    const facts = await readHostFacts({
      hostId: 'sim-7',
      labels: { wave: '1' },
      agentVersion: '0.1.0',
      kernel,
      root: tree.root,
      hostname: 'sim-7.example',
      machineId: 'm-7',
      distro: 'Simulated Linux',
    });
    expect(facts).toMatchObject({
      hostname: 'sim-7.example',
      machineId: 'm-7',
      distro: 'Simulated Linux',
      kernelRelease: '6.13.4-1-amd64',
      arch: 'aarch64',
      bootId: 'boot-1',
      tainted: '45056',
      taintFlags: ['oot_module', 'unsigned_module', 'livepatch'],
    });
  });
});
