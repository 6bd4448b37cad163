// Debian's real kernel image package, fetched into a private cache (about 27 MB once per run of
// this file; the kernel tier shares the default cache instead). Needs apt lists.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { currentDebianCloudRelease, ToolchainError } from '@rebootless/kernel-toolchain';
import { KernelImageCache } from './kernel-image';

jest.setTimeout(10 * 60_000);

describe("KernelImageCache: Debian's cloud kernel image, unpacked without installing it", () => {
  let cacheDir: string;
  let release: string;

  beforeAll(async () => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-kernel-image-'));
    release = await currentDebianCloudRelease();
  });
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('keeps a bootable vmlinuz and the virtio modules in load order, and reuses them the second time', async () => {
    const cache = new KernelImageCache({ cacheDir });
    const image = await cache.ensure(release);
    expect(image.release).toBe(release);
    expect(image.package.name).toBe(`linux-image-${release}`);
    // An x86 bzImage: the boot protocol's "HdrS" signature at 0x202.
    expect(fs.readFileSync(image.vmlinuz).subarray(0x202, 0x206).toString('latin1')).toBe('HdrS');

    const names = image.modules.map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(['virtio_pci', 'virtio_net', 'virtio_blk']));
    for (const [i, m] of image.modules.entries()) {
      // Every dependency is loaded before the module that needs it.
      for (const dep of m.depends) expect(names.indexOf(dep)).toBeLessThan(i);
      expect(fs.readFileSync(m.file).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46])); // ELF
    }
    // Only what the guest needs is kept, not the package's thousands of modules.
    expect(fs.readdirSync(path.dirname(image.modules[0]!.file)).length).toBe(image.modules.length);

    const deb = path.join(cacheDir, 'debs', image.package.file);
    const downloadedAt = fs.statSync(deb).mtimeMs;
    const again = await new KernelImageCache({ cacheDir }).ensure(release);
    expect(again).toEqual(image);
    expect(fs.statSync(deb).mtimeMs).toBe(downloadedAt);
  });

  it('says precisely what is wrong with a release before and after asking Debian', async () => {
    const cache = new KernelImageCache({ cacheDir });
    await expect(cache.ensure('../../etc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const unknown = await cache.ensure('6.1.0-999-cloud-amd64').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ToolchainError);
    expect(unknown).toMatchObject({ code: 'NOT_FOUND' });
    expect((unknown as Error).message).toContain('linux-image-6.1.0-999-cloud-amd64');
  });
});
