// One QEMU guest running Debian's real kernel from the lab's initramfs (TCG, one CPU, 512 MB, no
// disk). The guest's only way out is QEMU user-mode networking with restrict=on and explicit
// forwards: hostfwd (host 127.0.0.1:<free port> → guest port) for what the host drives in the
// guest, guestfwd (guest 10.0.2.100:<port> → host 127.0.0.1:<port>) for the host services the
// guest may reach. QEMU is a direct child (argument array, no shell), killed by pid on stop.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findExecutable } from '@rebootless/kernel-toolchain';
import { defaultKernelLabCacheDir } from './cache-dir';
import { KernelLabError } from './errors';
import { GuestProbe } from './guest-probe';
import { GUEST_ADDRESS, GUEST_FORWARD_ADDRESS, GUEST_PROBE_PORT, type Initramfs } from './initramfs';
import type { KernelImage } from './kernel-image';
import { freePort } from './ports';

export interface HostForward {
  /** A label: hostPort(name) finds it. */
  name: string;
  /** The port a guest program listens on (at 10.0.2.15). */
  guestPort: number;
}

export interface GuestForward {
  name: string;
  /** Where the guest connects: 10.0.2.100:<guestPort>. */
  guestPort: number;
  /** The host service on 127.0.0.1. */
  hostPort: number;
}

export interface GuestVmOptions {
  kernel: KernelImage;
  initramfs: Initramfs;
  /** Default 512 (Node in the guest; 256 MB panicked on unpacking the ~100 MB initramfs). */
  memoryMb?: number;
  /** Added to `console=ttyS0 panic=-1`. */
  kernelArgs?: string[];
  /** Default: the probe, as "probe" → guest port 7000. */
  hostForwards?: HostForward[];
  guestForwards?: GuestForward[];
  /**
   * A raw disk file attached as /dev/vda (virtio-blk) and mounted at /var/lib/rebootless: what a
   * guest program keeps there survives reboot(). Created sparse when missing (formatted by the
   * guest on first boot); the caller owns the file.
   */
  dataDisk?: { file: string; sizeMb?: number };
  /** The console line that means "booted and ready". Default: the probe's ready line. */
  ready?: RegExp;
  /** Per boot. Default 180 s (TCG on a loaded 2-core machine). */
  bootTimeoutMs?: number;
  /** Every console line, as it arrives (all boots). */
  onConsole?: (line: string) => void;
  /** Also append the console to this file. */
  consoleFile?: string;
  qemu?: string;
  cacheDir?: string;
}

export interface BootRecord {
  bootId?: string;
  /** From spawning QEMU to the ready line. */
  ms: number;
  pid: number;
}

// ESC [ ... letter: SeaBIOS and iPXE clear the screen on the serial console.
const TERMINAL_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g');

/** Every live QEMU of this process: killed if the process exits without stopping them. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

/** Relays one guestfwd connection: QEMU hands it over as this process's stdin/stdout. */
const RELAY_SOURCE = `'use strict';
// rebootless kernel lab: guestfwd relay (stdin/stdout <-> 127.0.0.1:port), one process per guest connection.
const net = require('node:net');
const socket = net.connect({ host: '127.0.0.1', port: Number(process.argv[2]), allowHalfOpen: true });
process.stdin.pipe(socket);
socket.pipe(process.stdout);
socket.on('error', () => process.exit(1));
socket.on('close', () => process.exit(0));
process.stdin.on('end', () => socket.end());
`;

export class GuestVm {
  readonly boots: BootRecord[] = [];
  /** Every console line of every boot, in order. */
  readonly console: string[] = [];
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly hostPorts = new Map<string, number>();
  private readonly options: Required<
    Pick<GuestVmOptions, 'memoryMb' | 'kernelArgs' | 'hostForwards' | 'guestForwards' | 'ready' | 'bootTimeoutMs'>
  > &
    GuestVmOptions;
  private readonly qemu: string;
  private relay = '';

  private constructor(options: GuestVmOptions) {
    this.options = {
      memoryMb: 512,
      kernelArgs: [],
      hostForwards: [{ name: 'probe', guestPort: GUEST_PROBE_PORT }],
      guestForwards: [],
      ready: /rebootless-lab: probe ready/,
      bootTimeoutMs: 180_000,
      ...options,
    };
    const qemu = options.qemu ?? findExecutable('qemu-system-x86_64');
    if (!qemu) {
      throw new KernelLabError(
        'boot',
        'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; scripts/setup-debian.sh does it)',
      );
    }
    this.qemu = qemu;
  }

  /** Chooses free host ports, boots, and resolves once the ready line is on the console. */
  static async start(options: GuestVmOptions): Promise<GuestVm> {
    const vm = new GuestVm(options);
    if (options.dataDisk && !fs.existsSync(options.dataDisk.file)) {
      const fd = fs.openSync(options.dataDisk.file, 'wx', 0o600);
      try {
        fs.ftruncateSync(fd, (options.dataDisk.sizeMb ?? 64) * 1024 * 1024);
      } finally {
        fs.closeSync(fd);
      }
    }
    vm.writeRelay();
    for (let attempt = 1; ; attempt++) {
      for (const f of vm.options.hostForwards) vm.hostPorts.set(f.name, await freePort());
      const from = vm.console.length;
      try {
        await vm.boot();
        return vm;
      } catch (error) {
        // A free port can be taken by someone else before QEMU binds it: pick new ones, once more.
        const raced = vm.console.slice(from).some((l) => /Could not set up host forwarding rule/.test(l));
        if (!raced || attempt >= 3) throw error;
      }
    }
  }

  /** The host port (on 127.0.0.1) forwarded to the named guest port. */
  hostPort(name: string): number {
    const port = this.hostPorts.get(name);
    if (port === undefined) throw new KernelLabError('boot', `no host forward named ${name}`);
    return port;
  }

  /** The probe client (when the probe forward exists). */
  get probe(): GuestProbe {
    return new GuestProbe(this.hostPort('probe'));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get isRunning(): boolean {
    return this.child !== undefined;
  }

  /** The QEMU command line (for the README and for debugging by hand). */
  qemuArgs(): string[] {
    const { kernel, initramfs, memoryMb, kernelArgs, hostForwards, guestForwards } = this.options;
    const netdev = ['user', 'id=n0', 'restrict=on'];
    for (const f of hostForwards) {
      netdev.push(`hostfwd=tcp:127.0.0.1:${this.hostPort(f.name)}-${GUEST_ADDRESS}:${port(f.guestPort)}`);
    }
    for (const f of guestForwards) {
      // cmd: QEMU runs it with /bin/sh -c for each guest connection; every part is ours and quoted.
      const cmd = `${shq(process.execPath)} ${shq(this.relay)} ${port(f.hostPort)}`;
      netdev.push(`guestfwd=tcp:${GUEST_FORWARD_ADDRESS}:${port(f.guestPort)}-cmd:${cmd}`);
    }
    return [
      '-accel',
      'tcg',
      '-m',
      `${memoryMb}M`,
      '-smp',
      '1',
      '-nographic',
      '-no-reboot',
      '-kernel',
      kernel.vmlinuz,
      '-initrd',
      initramfs.file,
      '-append',
      ['console=ttyS0', 'panic=-1', ...kernelArgs].join(' '),
      // QEMU's option syntax escapes a comma by doubling it.
      '-netdev',
      netdev.map((part) => part.replace(/,/g, ',,')).join(','),
      '-device',
      `${kernel.nic ?? 'virtio-net-pci'},netdev=n0`,
      ...(this.options.dataDisk
        ? ['-drive', `file=${this.options.dataDisk.file.replace(/,/g, ',,')},if=virtio,format=raw`]
        : []),
    ];
  }

  /**
   * Power off and boot again from the same kernel and disk-less initramfs, with the same forwarded
   * ports. For what the tests need this is a reboot: the kernel starts afresh (new boot_id, no
   * module and no live patch left, tainted back to 0); nothing persists because there is no disk.
   */
  async reboot(): Promise<BootRecord> {
    await this.shutdown();
    return this.boot();
  }

  /** Powers the guest off (asking the probe first), kills QEMU if it lingers; never leaves it running. */
  async stop(): Promise<void> {
    await this.shutdown();
  }

  /** Resolves with the first console line (from now on) matching `pattern`. */
  waitForConsole(pattern: RegExp, timeoutMs: number, from = this.console.length): Promise<string> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        for (let i = from; i < this.console.length; i++) {
          if (pattern.test(this.console[i]!)) return resolve(this.console[i]!);
        }
        from = this.console.length;
        if (!this.child) return reject(this.failure(`QEMU exited before the console showed ${pattern}`));
        if (Date.now() - started > timeoutMs)
          return reject(this.failure(`no console line ${pattern} within ${timeoutMs} ms`));
        setTimeout(poll, 50);
      };
      poll();
    });
  }

  private async boot(): Promise<BootRecord> {
    if (this.child) throw new KernelLabError('boot', 'the guest is already running');
    const started = Date.now();
    const from = this.console.length;
    const child = spawn(this.qemu, this.qemuArgs(), { stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    installExitHook();
    running.add(child);
    this.child = child;
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        running.delete(child);
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once('error', (error) => {
        this.take(`rebootless-lab: cannot run ${this.qemu}: ${error.message}`);
        running.delete(child);
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    const partial = { out: '', err: '' };
    const feed = (which: 'out' | 'err') => (chunk: Buffer) => {
      const parts = (partial[which] + chunk.toString('utf8')).split('\n');
      partial[which] = parts.pop() ?? '';
      for (const line of parts) this.take(line);
    };
    child.stdout!.on('data', feed('out'));
    child.stderr!.on('data', feed('err'));

    let ready: string;
    try {
      ready = await this.waitForConsole(this.options.ready, this.options.bootTimeoutMs, from);
    } catch (error) {
      await this.kill();
      throw error;
    }
    const record: BootRecord = { ms: Date.now() - started, pid: child.pid! };
    const bootId = /boot_id=([0-9a-f-]{36})/.exec(ready)?.[1];
    if (bootId) record.bootId = bootId;
    this.boots.push(record);
    return record;
  }

  private async shutdown(): Promise<void> {
    if (!this.child) return;
    if (this.hostPorts.has('probe')) {
      try {
        await this.probe.poweroff();
      } catch {
        // the probe may be gone already: QEMU is killed below
      }
      if (await within(this.exited, 15_000)) return;
    }
    await this.kill();
  }

  private async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    if (await within(this.exited, 5000)) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  private take(raw: string): void {
    // The serial console ends lines with \r\n and starts with terminal escapes from SeaBIOS.
    const line = raw.replace(/\r/g, '').replace(TERMINAL_ESCAPE, '');
    this.console.push(line);
    this.options.onConsole?.(line);
    if (this.options.consoleFile) fs.appendFileSync(this.options.consoleFile, `${line}\n`);
  }

  private failure(message: string): KernelLabError {
    return new KernelLabError('boot', message, this.console.slice(-40));
  }

  private writeRelay(): void {
    if (this.options.guestForwards.length === 0) return;
    const dir = path.join(path.resolve(this.options.cacheDir ?? defaultKernelLabCacheDir()), 'bin');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'guestfwd-relay.js');
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== RELAY_SOURCE) {
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, RELAY_SOURCE);
      fs.renameSync(tmp, file);
    }
    this.relay = file;
  }
}

function port(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new KernelLabError('boot', `bad port ${n}`);
  return n;
}

function shq(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
