import { promises as fs } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { events } from '@rebootless/contracts';
import { KernelPort, taintFlagNames } from '@rebootless/kernel-model';

export interface HostFactsInput {
  hostId: string;
  labels: Record<string, string>;
  agentVersion: string;
  /** Kernel release, version, arch, boot id and taint come from the kernel port (real or simulated). */
  kernel: KernelPort;
  /** Prefix for /etc and /proc (tests lay out a tree there). Default "/". */
  root?: string;
  /** Given values win over files: simulated hosts in one process have no /etc of their own. */
  hostname?: string;
  machineId?: string;
  distro?: string;
}

/** What the agent reports about its host (HostEnrolled, HostInventoryReported). */
export async function readHostFacts(input: HostFactsInput): Promise<events.HostFacts> {
  const root = input.root ?? '/';
  const { kernel } = input;
  const [kernelRelease, kernelVersion, arch, bootId, tainted, hostname, machineId, distro] = await Promise.all([
    kernel.kernelRelease(),
    kernel.kernelVersion(),
    kernel.arch(),
    kernel.bootId(),
    kernel.tainted(),
    input.hostname ?? readHostname(root),
    input.machineId ?? readMachineId(root),
    input.distro ?? readDistro(root),
  ]);
  return {
    hostId: input.hostId,
    hostname,
    machineId,
    kernelRelease,
    kernelVersion,
    arch,
    distro,
    bootId,
    labels: { ...input.labels },
    agentVersion: input.agentVersion,
    tainted: String(tainted),
    taintFlags: taintFlagNames(tainted),
  };
}

async function readFirst(paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      return await fs.readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EACCES') throw error;
    }
  }
  return undefined;
}

async function readHostname(root: string): Promise<string> {
  const text = await readFirst([join(root, 'proc/sys/kernel/hostname')]);
  // Outside a test tree, the kernel's own answer is the same file.
  return text?.trim() || (root === '/' ? osHostname() : '');
}

/** systemd's /etc/machine-id, or D-Bus's copy on older systems; empty when neither exists (containers). */
async function readMachineId(root: string): Promise<string> {
  const text = await readFirst([join(root, 'etc/machine-id'), join(root, 'var/lib/dbus/machine-id')]);
  return text?.trim() ?? '';
}

/** PRETTY_NAME of os-release(5), falling back to NAME VERSION_ID. */
async function readDistro(root: string): Promise<string> {
  const text = await readFirst([join(root, 'etc/os-release'), join(root, 'usr/lib/os-release')]);
  if (text === undefined) return '';
  const fields = parseOsRelease(text);
  return fields.PRETTY_NAME ?? [fields.NAME, fields.VERSION_ID].filter(Boolean).join(' ');
}

/** os-release(5): KEY=value lines, values optionally quoted with shell escapes. */
export function parseOsRelease(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    let value = line.slice(eq + 1);
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\(["\\`$])/g, '$1');
    }
    fields[key] = value;
  }
  return fields;
}
