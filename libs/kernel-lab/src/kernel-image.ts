// Debian's cloud kernel image for a release, fetched once and cached without installing it:
//
//   <cacheDir>/debs/linux-image-<release>_<version>_amd64.deb   as apt downloaded it (sha256-checked)
//   <cacheDir>/images/<release>/vmlinuz                         the bootable kernel
//   <cacheDir>/images/<release>/modules/<name>.ko               the modules the guest loads (uncompressed)
//   <cacheDir>/images/<release>/image.json                      written last: the image is complete
//
// The package is unpacked (dpkg-deb -x) into a staging directory, only what the guest needs is kept,
// and the result appears by one atomic rename.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  aptShow,
  assertKernelRelease,
  checkInterrupted,
  errorLines,
  readModinfo,
  runAptTool,
  ToolchainError,
} from '@rebootless/kernel-toolchain';
import { defaultKernelLabCacheDir } from './cache-dir';
import { KernelLabError } from './errors';
import {
  canonicalModuleName,
  moduleLoadOrder,
  parseModinfoDepends,
  parseModulesBuiltin,
  type ModuleNode,
} from './module-closure';

/**
 * virtio-net over virtio-pci for user-mode networking (-netdev user + virtio-net-pci), and
 * virtio-blk for the optional data disk that keeps a guest's state across reboots.
 */
export const GUEST_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk'] as const;

export interface KernelImage {
  release: string;
  /** The kernel to pass to qemu -kernel. */
  vmlinuz: string;
  /** The modules to insmod, dependencies first; `file` is an absolute path to an uncompressed .ko. */
  modules: ModuleNode[];
  /** The Debian package the image came from. */
  package: { name: string; version: string; sha256?: string; file: string };
  /**
   * QEMU's network device for the guest: virtio-net-pci (Debian's kernels, its driver a module
   * above) unless the kernel has another driver built in (the lab profile: e1000).
   */
  nic?: 'virtio-net-pci' | 'e1000';
}

export interface KernelImageCacheOptions {
  cacheDir?: string;
  log?: (line: string) => void;
  /** Bound on one fetch (default 10 minutes). */
  timeoutMs?: number;
}

interface ImageMarker {
  layout: 1;
  release: string;
  wanted: string[];
  modules: { name: string; file: string; depends: string[] }[];
  package: KernelImage['package'];
  fetchedAt: string;
}

const MARKER = 'image.json';

export class KernelImageCache {
  readonly cacheDir: string;
  private readonly log: (line: string) => void;
  private readonly timeoutMs: number;

  constructor(opts: KernelImageCacheOptions = {}) {
    this.cacheDir = path.resolve(opts.cacheDir ?? defaultKernelLabCacheDir());
    this.log = opts.log ?? (() => undefined);
    this.timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  }

  /**
   * vmlinuz and the closure of `wanted` modules of linux-image-<release>, from the cache or from
   * Debian. Errors: ToolchainError INVALID_ARGUMENT (malformed release), NOT_FOUND (Debian serves
   * no such image), FAILED_PRECONDITION (no apt); KernelLabError when the package lacks a module.
   */
  async ensure(release: string, wanted: readonly string[] = GUEST_MODULES): Promise<KernelImage> {
    assertKernelRelease(release, 'fetch-headers');
    const want = wanted.map(canonicalModuleName);
    const ready = this.readReady(release, want);
    if (ready) return ready;
    await this.fetch(release, want);
    const fetched = this.readReady(release, want);
    if (!fetched)
      throw new KernelLabError('kernel-image', `the cached image of ${release} vanished right after it was written`);
    return fetched;
  }

  private imageDir(release: string): string {
    return path.join(this.cacheDir, 'images', release);
  }

  private readReady(release: string, wanted: string[]): KernelImage | undefined {
    const dir = this.imageDir(release);
    let marker: ImageMarker;
    try {
      marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), 'utf8')) as ImageMarker;
    } catch {
      return undefined;
    }
    if (marker.layout !== 1 || marker.release !== release) return undefined;
    if (!wanted.every((w) => marker.wanted.includes(w))) return undefined;
    const vmlinuz = path.join(dir, 'vmlinuz');
    if (!fs.existsSync(vmlinuz)) return undefined;
    const modules = marker.modules.map((m) => ({ ...m, file: path.join(dir, m.file) }));
    if (!modules.every((m) => fs.existsSync(m.file))) return undefined;
    return { release, vmlinuz, modules, package: marker.package };
  }

  private async fetch(release: string, wanted: string[]): Promise<void> {
    const started = Date.now();
    const deadline = started + this.timeoutMs;
    const budget = () => ({ timeoutMs: Math.max(1, deadline - Date.now()) });
    const log = (line: string) => this.log(`kernel-image ${release}: ${line}`);
    const debs = path.join(this.cacheDir, 'debs');
    const staging = path.join(this.cacheDir, 'staging');
    for (const dir of [debs, staging, path.join(this.cacheDir, 'images')]) fs.mkdirSync(dir, { recursive: true });

    const name = `linux-image-${release}`;
    const [stanza] = await aptShow([name], budget());
    if (!stanza) {
      throw new ToolchainError(
        'NOT_FOUND',
        'fetch-headers',
        `Debian has no kernel image package ${name} in this machine's apt sources (run apt-get update?)`,
      );
    }
    const version = stanza['Version']!;
    const file = path.posix.basename(stanza['Filename'] ?? '');
    if (!/^[A-Za-z0-9][A-Za-z0-9.+~%_-]*\.deb$/.test(file)) {
      throw new KernelLabError(
        'kernel-image',
        `apt gives ${name} ${version} an unexpected file name ${stanza['Filename']}`,
      );
    }
    const sha256 = stanza['SHA256'];
    const deb = path.join(debs, file);
    if (fs.existsSync(deb) && (!sha256 || sha256File(deb) === sha256)) {
      log(`cached ${file}`);
    } else {
      const dir = fs.mkdtempSync(path.join(staging, 'download-'));
      try {
        const result = checkInterrupted(
          await runAptTool('apt-get', ['download', '-q', '--', `${name}=${version}`], { ...budget(), cwd: dir }),
          `apt-get download ${name}=${version}`,
          'fetch-headers',
        );
        const got = path.join(dir, file);
        if (result.code !== 0 || !fs.existsSync(got)) {
          throw new ToolchainError(
            'INTERNAL',
            'fetch-headers',
            `apt-get download ${name}=${version} failed (exit ${result.code})`,
            errorLines(result),
          );
        }
        if (sha256 && sha256File(got) !== sha256) {
          throw new KernelLabError('kernel-image', `${file} does not match the sha256 of Debian's index (${sha256})`);
        }
        fs.renameSync(got, deb);
        log(`downloaded ${file} (${(fs.statSync(deb).size / 1e6).toFixed(1)} MB) in ${Date.now() - started} ms`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }

    const unpacked = fs.mkdtempSync(path.join(staging, `unpack-${release}-`));
    const stage = fs.mkdtempSync(path.join(staging, `image-${release}-`));
    try {
      const x = checkInterrupted(
        await runAptTool('dpkg-deb', ['-x', deb, unpacked], budget()),
        `dpkg-deb -x ${file}`,
        'fetch-headers',
      );
      if (x.code !== 0) {
        throw new ToolchainError(
          'INTERNAL',
          'fetch-headers',
          `dpkg-deb -x ${file} failed (exit ${x.code})`,
          errorLines(x),
        );
      }
      const vmlinuz = path.join(unpacked, 'boot', `vmlinuz-${release}`);
      if (!fs.existsSync(vmlinuz)) throw new KernelLabError('kernel-image', `${file} holds no boot/vmlinuz-${release}`);
      fs.copyFileSync(vmlinuz, path.join(stage, 'vmlinuz'));

      const modulesRoot = path.join(unpacked, 'lib', 'modules', release);
      const index = indexModules(modulesRoot);
      let builtin = new Set<string>();
      try {
        builtin = parseModulesBuiltin(fs.readFileSync(path.join(modulesRoot, 'modules.builtin'), 'utf8'));
      } catch {
        // no modules.builtin: then every wanted module must be a file
      }
      let order: ModuleNode[];
      try {
        order = moduleLoadOrder(index, wanted, builtin);
      } catch (error) {
        throw new KernelLabError('kernel-image', `${file}: ${(error as Error).message}`);
      }
      fs.mkdirSync(path.join(stage, 'modules'));
      const kept: ImageMarker['modules'] = [];
      for (const m of order) {
        const rel = path.join('modules', `${m.name}.ko`);
        fs.writeFileSync(path.join(stage, rel), moduleBytes(path.join(modulesRoot, m.file)));
        kept.push({ name: m.name, file: rel, depends: m.depends });
      }
      log(
        `modules ${kept.map((m) => m.name).join(' ')} (built in: ${wanted.filter((w) => builtin.has(w)).join(' ') || 'none'})`,
      );
      const marker: ImageMarker = {
        layout: 1,
        release,
        wanted,
        modules: kept,
        package: sha256 ? { name, version, sha256, file } : { name, version, file },
        fetchedAt: new Date().toISOString(),
      };
      fs.writeFileSync(path.join(stage, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
      this.publish(stage, release, wanted);
      log(`ready in ${Date.now() - started} ms`);
    } finally {
      fs.rmSync(unpacked, { recursive: true, force: true });
      fs.rmSync(stage, { recursive: true, force: true });
    }
  }

  /**
   * Atomic publish. A complete image another process published meanwhile is kept (ours is
   * discarded); one holding fewer modules than wanted is replaced.
   */
  private publish(stage: string, release: string, wanted: string[]): void {
    if (this.readReady(release, wanted)) return;
    const target = this.imageDir(release);
    const aside = `${target}.old-${randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(target, aside);
    } catch {
      // nothing there yet
    }
    fs.renameSync(stage, target);
    fs.rmSync(aside, { recursive: true, force: true });
  }
}

/**
 * Every module file under lib/modules/<release>/kernel, by kernel name; `depends` is read from the
 * module's modinfo only when the closure asks for it (a few modules, not thousands).
 */
function indexModules(modulesRoot: string): Pick<ReadonlyMap<string, ModuleNode>, 'get'> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        const m = /^(.+)\.ko(?:\.xz|\.zst|\.gz)?$/.exec(entry.name);
        if (m) files.set(canonicalModuleName(m[1]!), path.relative(modulesRoot, full));
      }
    }
  };
  walk(path.join(modulesRoot, 'kernel'));
  const nodes = new Map<string, ModuleNode>();
  return {
    get(name: string) {
      const cached = nodes.get(name);
      if (cached) return cached;
      const file = files.get(name);
      if (!file) return undefined;
      const depends = parseModinfoDepends(readModinfo(moduleBytes(path.join(modulesRoot, file)))['depends']);
      const node = { name, file, depends };
      nodes.set(name, node);
      return node;
    },
  };
}

/** A module's ELF bytes, decompressing .ko.xz / .ko.zst / .ko.gz (newer Debian kernels compress them) with the host's tool. */
function moduleBytes(file: string): Buffer {
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : undefined;
  if (!tool) return fs.readFileSync(file);
  const result = spawnSync(tool, ['-d', '-c', '-q', '--', file], { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 });
  if (result.error || result.status !== 0) {
    throw new KernelLabError(
      'kernel-image',
      `${tool} -d ${path.basename(file)} failed: ${result.error?.message ?? result.stderr.toString().trim()}`,
    );
  }
  return result.stdout;
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * A kernel profile's original build as the lab boots it: its vmlinux straight through QEMU's PVH
 * loader, every driver the guest needs built in (no modules to load), e1000 for the network.
 */
export function profileKernelImage(build: {
  profile: string;
  key: string;
  release: string;
  vmlinux: string;
}): KernelImage {
  return {
    release: build.release,
    vmlinuz: build.vmlinux,
    modules: [],
    package: { name: `profile ${build.profile}`, version: build.key, file: build.vmlinux },
    nic: 'e1000',
  };
}
