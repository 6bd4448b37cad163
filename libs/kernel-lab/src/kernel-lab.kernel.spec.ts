// The real thing: Debian's current cloud kernel (resolved now, never hard-coded) booted in QEMU
// from the lab's initramfs, livepatch modules built for it by kernel-toolchain, and every check
// made inside the guest by the probe, i.e. by reading what the kernel itself shows.
// Needs: apt lists, qemu-system-x86, busybox-static, gcc-12, make (scripts/setup-debian.sh).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  compileLivepatchModule,
  debianCloudReleases,
  KernelHeadersCache,
  livepatchSample,
  releaseMajorMinor,
  type CompiledModule,
} from '@rebootless/kernel-toolchain';
import { KernelLabError } from './errors';
import type { ProbeState } from './guest-probe';
import type { GuestVm } from './guest-vm';
import { KernelLab } from './kernel-lab';

jest.setTimeout(15 * 60_000); // a first run downloads the kernel image and two headers trees

const TAINT_OOT_MODULE = 4096; // O: built outside the kernel tree
const TAINT_UNSIGNED_MODULE = 8192; // E: not signed with Debian's key
const TAINT_LIVEPATCH = 32768; // K: a livepatch was loaded
const KERNEL_ARGS = ['rebootless.lab=1'];

/** Live processes (not zombies) whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (cmdline.includes(text) && stat[stat.lastIndexOf(')') + 2] !== 'Z') out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

describe("Debian's cloud kernel in QEMU, patched live", () => {
  const timings: Record<string, number> = {};
  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      timings[step] = Date.now() - started;
    }
  };
  const workDirs: string[] = [];
  const servers: net.Server[] = [];
  let lab: KernelLab;
  let vm: GuestVm;
  let foreignRelease: string;
  const modules: Record<'a' | 'b' | 'c' | 'foreign', CompiledModule> = {} as never;
  let echoPort: number;
  let unforwardedPort: number;
  let bootCmdline: string;
  let consoleFile: string;

  const build = async (
    release: string,
    moduleName: string,
    text: string,
    headers: KernelHeadersCache,
    replace = false,
  ) => {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-lab-'));
    workDirs.push(workDir);
    return compileLivepatchModule({
      source: livepatchSample({ moduleName, replacementText: text, replace }),
      moduleName,
      headers: await headers.ensure(release),
      workDir,
      timeoutMs: 180_000,
    });
  };
  const echoServer = async (): Promise<number> => {
    const server = net.createServer((c) => c.on('data', (d) => c.write(`echo:${d.toString()}`)));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  };
  const state = () => vm.probe.state();
  const settled = (what: string, done: (s: ProbeState) => boolean = () => true) =>
    vm.probe.waitFor((s) => s.livepatch.every((p) => p.transition === '0') && done(s), what);
  const patch = (s: ProbeState, name: string) => s.livepatch.find((p) => p.name === name);
  /** rmmod right after a disable may still find the module referenced for a moment. */
  const rmmod = async (name: string) => {
    for (let attempt = 0; ; attempt++) {
      const result = await vm.probe.rmmod(name);
      if (result.code === 0 || attempt >= 20) return result;
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  beforeAll(async () => {
    const log: string[] = [];
    lab = await timed('prepare', () => KernelLab.prepare({ withSysfsPort: true, log: (l) => log.push(l) }));
    Object.assign(timings, Object.fromEntries(Object.entries(lab.timings).map(([k, v]) => [`prepare.${k}`, v])));

    // The second release: another kernel line Debian serves (6.12 next to 6.1 on bookworm), else another ABI.
    const served = await debianCloudReleases();
    const others = served.filter((r) => r !== lab.release);
    const otherLine = others.filter((r) => releaseMajorMinor(r) !== releaseMajorMinor(lab.release));
    foreignRelease = (otherLine.length > 0 ? otherLine : others).at(-1)!;

    const headers = new KernelHeadersCache({ log: (l) => log.push(l) });
    modules.a = await timed('buildModuleA', () => build(lab.release, 'rbl_cmdline_a', 'rebootless patch A', headers));
    modules.b = await timed('buildModuleB', () => build(lab.release, 'rbl_cmdline_b', 'rebootless patch B', headers));
    modules.c = await timed('buildModuleC', () =>
      build(lab.release, 'rbl_cmdline_c', 'rebootless cumulative C', headers, true),
    );
    modules.foreign = await timed('buildForeignModule', () =>
      build(foreignRelease, 'rbl_foreign', `built for ${foreignRelease}`, headers),
    );

    workDirs.unshift(fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-lab-disk-')));
    // The last run's guest console, kept for whoever debugs a failure.
    consoleFile = path.join(lab.cacheDir, 'console', 'kernel-lab.kernel.spec.log');
    fs.mkdirSync(path.dirname(consoleFile), { recursive: true });
    fs.writeFileSync(consoleFile, '');
    echoPort = await echoServer();
    unforwardedPort = await echoServer();
    vm = await timed('firstBoot', () =>
      lab.boot({
        kernelArgs: KERNEL_ARGS,
        guestForwards: [{ name: 'echo', guestPort: 9000, hostPort: echoPort }],
        dataDisk: { file: path.join(workDirs[0]!, 'data.img') },
        consoleFile,
      }),
    );
    bootCmdline = (await state()).cmdline;
  });

  afterAll(async () => {
    await vm?.stop();
    for (const s of servers) s.close();
    for (const dir of workDirs) fs.rmSync(dir, { recursive: true, force: true });
    console.log(
      `kernel lab: release ${lab?.release}, foreign ${foreignRelease}, initramfs ` +
        `${((lab?.initramfs.sizeBytes ?? 0) / 1e6).toFixed(1)} MB (${lab?.initramfs.built ? 'built' : 'cached'}), ` +
        `boots ${JSON.stringify(vm?.boots.map((b) => b.ms))} ms, console ${consoleFile}\n` +
        `  ${Object.entries(timings)
          .map(([k, v]) => `${k}: ${v} ms`)
          .join('\n  ')}`,
    );
  });

  it('boots the current cloud release, untainted, reachable only through explicit forwards', async () => {
    const s = await state();
    expect(s.release).toBe(lab.release);
    expect(s.cmdline).toBe(['console=ttyS0', 'panic=-1', ...KERNEL_ARGS].join(' '));
    expect(s.tainted).toBe(0);
    expect(s.livepatch).toEqual([]);
    expect(s.modules).toEqual(expect.arrayContaining(['virtio_net', 'virtio_pci']));

    // guestfwd: 10.0.2.100:9000 in the guest is the host's 127.0.0.1:<echoPort>...
    await expect(vm.probe.connect('10.0.2.100', 9000, 'hello')).resolves.toEqual({
      connected: true,
      reply: 'echo:hello',
    });
    // ...and restrict=on: neither the host's other ports nor the outside world are reachable.
    const direct = await vm.probe.connect('10.0.2.2', unforwardedPort, 'x', 3000);
    expect(direct.connected).toBe(false);
    const outside = await vm.probe.connect('1.1.1.1', 80, 'x', 3000);
    expect(outside.connected).toBe(false);
  });

  it('insmod of the cmdline livepatch: /proc/cmdline shows the patched text, sysfs the patch, tainted K, O and E', async () => {
    const put = await vm.probe.putModule('rbl_cmdline_a', fs.readFileSync(modules.a.modulePath));
    expect(put.sha256).toBe(modules.a.sha256);
    const insmod = await timed('insmodA', () => vm.probe.insmod('rbl_cmdline_a'));
    expect(insmod).toMatchObject({ code: 0 });

    const s = await timed('transitionA', () => settled('patch A to finish its transition'));
    expect(s.cmdline).toBe('rebootless patch A');
    expect(patch(s, 'rbl_cmdline_a')).toEqual({
      name: 'rbl_cmdline_a',
      enabled: '1',
      transition: '0',
      functions: ['vmlinux/cmdline_proc_show,1'],
    });
    expect(s.tainted & TAINT_LIVEPATCH).toBe(TAINT_LIVEPATCH);
    expect(s.tainted & TAINT_OOT_MODULE).toBe(TAINT_OOT_MODULE);
    expect(s.tainted & TAINT_UNSIGNED_MODULE).toBe(TAINT_UNSIGNED_MODULE);
    expect(s.modules[0]).toBe('rbl_cmdline_a');
  });

  it("the agent runtime's LivepatchSysfs, run inside the guest, reads what the probe reads", async () => {
    const probeState = await state();
    const run = await timed('sysfsPortSnapshot', () => vm.probe.run('sysfs-port', ['snapshot']));
    expect(run).toMatchObject({ code: 0 });
    const seen = JSON.parse(run.stdout) as {
      release: string;
      bootId: string;
      tainted: number;
      patches: {
        moduleName: string;
        enabled: boolean;
        transition: boolean;
        functions: { object: string; name: string; sympos: number }[];
      }[];
    };
    expect(
      seen.patches.map((p) => ({
        name: p.moduleName,
        enabled: p.enabled ? '1' : '0',
        transition: p.transition ? '1' : '0',
        functions: p.functions.map((f) => `${f.object}/${f.name},${f.sympos}`),
      })),
    ).toEqual(probeState.livepatch);
    expect(seen.patches).toHaveLength(1);
    expect(seen.tainted).toBe(probeState.tainted);
    expect(seen.bootId).toBe(probeState.bootId);
    expect(seen.release).toBe(lab.release);
  });

  it('a second patch of the same function stacks on top; disabling it falls back to the first', async () => {
    await vm.probe.putModule('rbl_cmdline_b', fs.readFileSync(modules.b.modulePath));
    expect(await vm.probe.insmod('rbl_cmdline_b')).toMatchObject({ code: 0 });
    let s = await settled('patch B to finish its transition');
    expect(s.cmdline).toBe('rebootless patch B');
    expect(s.livepatch.map((p) => [p.name, p.enabled])).toEqual([
      ['rbl_cmdline_a', '1'],
      ['rbl_cmdline_b', '1'],
    ]);

    expect(await vm.probe.writeEnabled('rbl_cmdline_b', 0)).toEqual({ ok: true });
    s = await settled('patch B to leave sysfs', (x) => !patch(x, 'rbl_cmdline_b'));
    expect(s.cmdline).toBe('rebootless patch A');
    expect(await rmmod('rbl_cmdline_b')).toMatchObject({ code: 0 });
    expect((await state()).modules).not.toContain('rbl_cmdline_b');
  });

  it('disable and rmmod give the original function back; the taint stays', async () => {
    expect(await vm.probe.writeEnabled('rbl_cmdline_a', 0)).toEqual({ ok: true });
    const s = await settled('patch A to leave sysfs', (x) => x.livepatch.length === 0);
    expect(s.cmdline).toBe(bootCmdline);
    // A disabled patch cannot be enabled again: its directory is gone.
    expect(await vm.probe.writeEnabled('rbl_cmdline_a', 1)).toMatchObject({ ok: false, code: 'ENOENT' });
    expect(await rmmod('rbl_cmdline_a')).toMatchObject({ code: 0 });
    const after = await state();
    expect(after.modules).not.toContain('rbl_cmdline_a');
    expect(after.tainted & TAINT_LIVEPATCH).toBe(TAINT_LIVEPATCH);
  });

  it('a cumulative patch with replace takes over and disables every older patch when its transition ends', async () => {
    for (const m of ['a', 'b'] as const) {
      const name = `rbl_cmdline_${m}`;
      await vm.probe.putModule(name, fs.readFileSync(modules[m].modulePath));
      expect(await vm.probe.insmod(name)).toMatchObject({ code: 0 });
      await settled(`patch ${m.toUpperCase()} to finish its transition`);
    }
    await vm.probe.putModule('rbl_cmdline_c', fs.readFileSync(modules.c.modulePath));
    expect(await vm.probe.insmod('rbl_cmdline_c')).toMatchObject({ code: 0 });
    const s = await settled('the replace patch to take over', (x) => x.livepatch.length === 1);
    expect(s.livepatch.map((p) => [p.name, p.enabled])).toEqual([['rbl_cmdline_c', '1']]);
    expect(s.cmdline).toBe('rebootless cumulative C');
    // The replaced patches are gone from sysfs; their modules are still loaded until removed.
    expect(s.modules).toEqual(expect.arrayContaining(['rbl_cmdline_a', 'rbl_cmdline_b']));
    expect(await rmmod('rbl_cmdline_a')).toMatchObject({ code: 0 });
    expect(await rmmod('rbl_cmdline_b')).toMatchObject({ code: 0 });

    expect(await vm.probe.writeEnabled('rbl_cmdline_c', 0)).toEqual({ ok: true });
    const after = await settled('patch C to leave sysfs', (x) => x.livepatch.length === 0);
    expect(after.cmdline).toBe(bootCmdline);
    expect(await rmmod('rbl_cmdline_c')).toMatchObject({ code: 0 });
  });

  // With CONFIG_MODVERSIONS the kernel compares symbol CRCs (module_layout) before the vermagic string.
  it('a module built for another kernel release is refused by insmod (modversions / vermagic)', async () => {
    expect(modules.foreign.vermagic.startsWith(`${foreignRelease} `)).toBe(true);
    await vm.probe.putModule('rbl_foreign', fs.readFileSync(modules.foreign.modulePath));
    const insmod = await vm.probe.insmod('rbl_foreign');
    expect(insmod.code).not.toBe(0);
    expect(insmod.stderr).toMatch(/can't insert '.*rbl_foreign\.ko': invalid module format/i);
    const dmesg = await vm.probe.dmesg();
    expect(dmesg.stdout).toMatch(/rbl_foreign: (version magic|disagrees about version)/);
    const s = await state();
    expect(s.modules).not.toContain('rbl_foreign');
    expect(s.livepatch).toEqual([]);
    expect(s.cmdline).toBe(bootCmdline);
  });

  it('a reboot (power off, boot the same initramfs) is a new boot: new boot id, no patch, no taint, the data disk kept', async () => {
    const before = await state();
    await expect(vm.probe.dataFile('marker', `written in boot ${before.bootId}`)).resolves.toEqual({
      exists: true,
      content: `written in boot ${before.bootId}`,
    });
    await vm.probe.putModule('rbl_cmdline_a', fs.readFileSync(modules.a.modulePath));
    expect(await vm.probe.insmod('rbl_cmdline_a')).toMatchObject({ code: 0 });
    await settled('patch A before the reboot', (x) => x.cmdline === 'rebootless patch A');

    const boot = await timed('reboot', () => vm.reboot());
    const after = await state();
    expect(boot.bootId).toBe(after.bootId);
    expect(after.bootId).not.toBe(before.bootId);
    expect(after.livepatch).toEqual([]);
    expect(after.cmdline).toBe(bootCmdline);
    expect(after.tainted).toBe(0);
    expect(after.modules).not.toContain('rbl_cmdline_a');
    await expect(vm.probe.dataFile('marker')).resolves.toEqual({
      exists: true,
      content: `written in boot ${before.bootId}`,
    });
  });

  it('a guest that never gets ready fails with its console tail and leaves no QEMU behind', async () => {
    const marker = `rebootless.lab=never-ready-${process.pid}`;
    const error = await lab
      .boot({ kernelArgs: [marker], ready: /this line is never printed/, bootTimeoutMs: 4000 })
      .then(
        () => undefined,
        (e: unknown) => e as KernelLabError,
      );
    expect(error).toBeInstanceOf(KernelLabError);
    expect(error!.stage).toBe('boot');
    expect(error!.message).toMatch(/no console line .* within 4000 ms/);
    expect(error!.log.length).toBeGreaterThan(0);
    expect(processesMentioning(marker)).toEqual([]);
  });

  it('stop leaves no QEMU behind', async () => {
    const pid = vm.pid!;
    expect(pid).toBeGreaterThan(0);
    await timed('stop', () => vm.stop());
    expect(vm.isRunning).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
