// A first fetch into an empty cache while several builds ask for the same release at once: the
// calls of one process share a fetch; separate fetchers (other processes, modelled here by an
// instance that does not share) race to an atomic rename and all end up with one complete tree.
import childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { currentDebianCloudRelease } from './apt';
import { defaultKernelCacheDir, KernelHeadersCache } from './headers-cache';

jest.setTimeout(15 * 60_000);

describe('KernelHeadersCache on an empty cache', () => {
  let cacheDir: string;

  beforeAll(() => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-kernel-cache-'));
    // Reuse .debs the shared cache already holds (hard links; sha256-checked on use), so this
    // test exercises extraction and publication without downloading 14 MB again on every run.
    const shared = path.join(defaultKernelCacheDir(), 'debs');
    const debs = path.join(cacheDir, 'debs');
    fs.mkdirSync(debs, { recursive: true });
    for (const file of fs.existsSync(shared) ? fs.readdirSync(shared) : []) {
      if (!file.endsWith('.deb')) continue;
      try {
        fs.linkSync(path.join(shared, file), path.join(debs, file));
      } catch {
        // another filesystem: let it download
      }
    }
  });
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('fetches once per process, survives a concurrent fetcher, and is instant when warm', async () => {
    const release = await currentDebianCloudRelease();
    // Like the builder: one cache object per build, each with the log of its own build.
    const logA1: string[] = [];
    const logA2: string[] = [];
    const logB: string[] = [];
    const a1 = new KernelHeadersCache({ cacheDir, log: (l) => logA1.push(l) });
    const a2 = new KernelHeadersCache({ cacheDir, log: (l) => logA2.push(l) });
    const b = new KernelHeadersCache({ cacheDir, log: (l) => logB.push(l), shareInFlight: false });

    const started = Date.now();
    const results = await Promise.all([a1.ensure(release), a2.ensure(release), b.ensure(release)]);
    const firstMs = Date.now() - started;

    for (const headers of results) expect(headers).toEqual(results[0]);
    // a2 joined a1's fetch and saw its progress; b fetched on its own and lost or won the rename.
    expect(logA2[0]).toBe(`fetch-headers ${release}: joining the fetch already under way`);
    for (const log of [logA1, logA2, logB]) {
      expect(log.filter((l) => l.includes(': packages '))).toHaveLength(1);
      expect(log.filter((l) => /: ready in \d+ ms/.test(l))).toHaveLength(1);
    }
    expect(results[0]!.buildDir).toBe(
      path.join(cacheDir, 'releases', release, 'usr', 'src', `linux-headers-${release}`),
    );
    expect(fs.readdirSync(path.join(cacheDir, 'releases'))).toEqual([release]);
    expect(fs.readdirSync(path.join(cacheDir, 'staging'))).toEqual([]); // the loser's copy is gone
    const debs = fs.readdirSync(path.join(cacheDir, 'debs'));
    for (const pkg of results[0]!.packages)
      expect(debs.filter((f) => f.startsWith(`${pkg.name}_${pkg.version}_`))).toHaveLength(1);

    const makefile = fs.readFileSync(path.join(results[0]!.buildDir, 'Makefile'), 'utf8');
    expect(makefile).toMatch(/^include \.\.\/linux-headers-\S+-common\/Makefile$/m);
    expect(fs.existsSync(path.join(results[0]!.buildDir, 'scripts', 'Makefile.build'))).toBe(true); // relative links into linux-kbuild
    expect(fs.existsSync(path.join(cacheDir, 'releases', release, 'lib', 'modules', release, 'build'))).toBe(false);

    const spawnSpy = jest.spyOn(childProcess, 'spawn');
    try {
      const warmStarted = Date.now();
      const again = await new KernelHeadersCache({ cacheDir }).ensure(release);
      const warmMs = Date.now() - warmStarted;
      expect(again).toEqual(results[0]);
      expect(spawnSpy).not.toHaveBeenCalled();
      expect(warmMs).toBeLessThan(1000);
      console.log(
        `headers for ${release} into an empty cache: ${firstMs} ms (3 concurrent callers); warm: ${warmMs} ms`,
      );
    } finally {
      spawnSpy.mockRestore();
    }
  });
});
