import childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ToolchainError } from './errors';
import { defaultKernelCacheDir, KernelHeadersCache } from './headers-cache';

describe('KernelHeadersCache without the network', () => {
  let root: string;
  let spawnSpy: jest.SpyInstance;

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-headers-spec-'));
  });
  beforeEach(() => {
    spawnSpy = jest.spyOn(childProcess, 'spawn');
  });
  afterEach(() => spawnSpy.mockRestore());
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it.each(['6.1.0;rm -rf /', '../../../etc', '6.1.0-56-cloud-amd64 --allow-unauthenticated', '-o=APT::Foo'])(
    'refuses %j with INVALID_ARGUMENT before touching the disk or running anything',
    async (release) => {
      const cacheDir = path.join(root, 'never-created');
      const lines: string[] = [];
      const error = await new KernelHeadersCache({ cacheDir, log: (l) => lines.push(l) }).ensure(release).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ToolchainError);
      expect((error as ToolchainError).code).toBe('INVALID_ARGUMENT');
      expect((error as ToolchainError).stage).toBe('fetch-headers');
      expect(spawnSpy).not.toHaveBeenCalled();
      expect(fs.existsSync(cacheDir)).toBe(false);
      expect(lines).toEqual([]);
    },
  );

  it('serves a complete cached tree without asking apt', async () => {
    const cacheDir = path.join(root, 'warm');
    const release = '6.1.0-56-cloud-amd64';
    const buildDir = path.join(cacheDir, 'releases', release, 'usr/src', `linux-headers-${release}`);
    fs.mkdirSync(buildDir, { recursive: true });
    fs.writeFileSync(path.join(buildDir, 'Makefile'), 'include ../linux-headers-6.1.0-56-common/Makefile\n');
    fs.writeFileSync(
      path.join(cacheDir, 'releases', release, '.rebootless-headers.json'),
      JSON.stringify({
        layout: 1,
        release,
        buildDir: `usr/src/linux-headers-${release}`,
        packages: [{ name: `linux-headers-${release}`, version: '6.1.192-2', file: 'x.deb' }],
        hostPackages: ['libelf1'],
        fetchedAt: new Date().toISOString(),
      }),
    );
    const headers = await new KernelHeadersCache({ cacheDir }).ensure(release);
    expect(headers).toEqual({
      release,
      buildDir,
      packages: [{ name: `linux-headers-${release}`, version: '6.1.192-2' }],
      hostPackages: ['libelf1'],
    });
    expect(spawnSpy).not.toHaveBeenCalled();
  });

  it('CANCELLED when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await new KernelHeadersCache({ cacheDir: path.join(root, 'c') })
      .ensure('6.1.0-56-cloud-amd64', controller.signal)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((error as ToolchainError).code).toBe('CANCELLED');
    expect(spawnSpy).not.toHaveBeenCalled();
  });

  describe('defaultKernelCacheDir', () => {
    const saved = { ...process.env };
    afterEach(() => {
      process.env = { ...saved };
    });

    it('is ~/.cache/rebootless/kernels, or under XDG_CACHE_HOME, or REBOOTLESS_KERNEL_CACHE_DIR', () => {
      delete process.env['REBOOTLESS_KERNEL_CACHE_DIR'];
      delete process.env['XDG_CACHE_HOME'];
      expect(defaultKernelCacheDir()).toBe(path.join(os.homedir(), '.cache', 'rebootless', 'kernels'));
      process.env['XDG_CACHE_HOME'] = '/var/cache/x';
      expect(defaultKernelCacheDir()).toBe('/var/cache/x/rebootless/kernels');
      process.env['REBOOTLESS_KERNEL_CACHE_DIR'] = '/srv/kernels';
      expect(defaultKernelCacheDir()).toBe('/srv/kernels');
    });
  });
});
