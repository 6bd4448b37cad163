// The real thing: Debian's kernel headers fetched with apt into the kernel cache, livepatch
// modules compiled with the machine's gcc and the kernel's own Kbuild. Needs apt lists
// (`apt-get update`), gcc-12, make and the kbuild tools' libraries (.ci/run installs them).
// First run on an empty cache downloads about 30 MB; later runs reuse the cache.
import childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { currentDebianCloudRelease, debianCloudReleases } from './apt';
import { compileLivepatchModule, type CompiledModule } from './compile';
import { ToolchainError } from './errors';
import { defaultKernelCacheDir, KernelHeadersCache, type KernelHeaders } from './headers-cache';
import { livepatchSample } from './livepatch-sample';
import { readModinfo } from './modinfo';
import { KERNEL_RELEASE_PATTERN, releaseMajorMinor } from './validate';

jest.setTimeout(15 * 60_000); // a first fetch on a slow mirror; warm runs take seconds

const BROKEN_C = `#include <linux/module.h>
#include <linux/livepatch.h>

static int __init broken_init(void)
{
	int x = undefined_thing + 1;
	return x
}
module_init(broken_init);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
`;

async function failure(promise: Promise<unknown>): Promise<ToolchainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ToolchainError)) throw new Error(`expected a ToolchainError, got ${String(error)}`);
  return error;
}

/** Processes (not zombies) whose command line mentions `text`. */
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

describe("livepatch modules built against Debian's cloud kernel headers", () => {
  const timings: string[] = [];
  const log: string[] = [];
  const cache = new KernelHeadersCache({ cacheDir: defaultKernelCacheDir(), log: (l) => log.push(l) });
  const workDirs: string[] = [];
  let current: string;
  let second: string;

  const freshWorkDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-klp-'));
    workDirs.push(dir);
    return dir;
  };
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const value = await fn();
    timings.push(`${what}: ${Date.now() - started} ms`);
    return value;
  };

  beforeAll(async () => {
    current = await currentDebianCloudRelease();
    const served = await debianCloudReleases();
    // The second release: the newest one Debian serves of another kernel line (6.12 next to 6.1 on
    // bookworm), else the newest other ABI of the same line.
    const others = served.filter((r) => r !== current);
    const otherLine = others.filter((r) => releaseMajorMinor(r) !== releaseMajorMinor(current));
    second = (otherLine.length > 0 ? otherLine : others).at(-1)!;
    timings.push(`releases: current ${current}, second ${second}, served ${served.join(' ')}`);
  });

  afterAll(() => {
    for (const dir of workDirs) fs.rmSync(dir, { recursive: true, force: true });
    console.log(`kernel toolchain (cache ${cache.cacheDir}):\n  ${timings.join('\n  ')}`);
  });

  it('resolves the current cloud release from linux-image-cloud-amd64, and a second release Debian serves', async () => {
    expect(current).toMatch(KERNEL_RELEASE_PATTERN);
    expect(current).toMatch(/-cloud-amd64$/);
    expect(second).toMatch(KERNEL_RELEASE_PATTERN);
    expect(second).not.toBe(current);
    const served = await debianCloudReleases();
    expect(served).toContain(current);
    expect(served).toContain(second);
  });

  it('one request for two kernel releases yields two artifacts, each with its kernel vermagic', async () => {
    const releases = [current, second];
    const built = await Promise.all(
      releases.map(async (release): Promise<[KernelHeaders, CompiledModule]> => {
        const headers = await timed(`ensure ${release}`, () => cache.ensure(release));
        const module = await timed(`compile ${release}`, () =>
          compileLivepatchModule({
            source: livepatchSample({ moduleName: 'rbl_cmdline', replacementText: `rebootless patched ${release}` }),
            moduleName: 'rbl_cmdline',
            headers,
            workDir: freshWorkDir(),
            timeoutMs: 120_000,
          }),
        );
        return [headers, module];
      }),
    );

    expect(built).toHaveLength(2);
    for (const [i, [headers, module]] of built.entries()) {
      const release = releases[i]!;
      expect(headers.release).toBe(release);
      expect(headers.packages.map((p) => p.name)).toEqual([
        `linux-headers-${release}`,
        expect.stringMatching(/^linux-headers-.*-common$/),
        expect.stringMatching(/^linux-kbuild-/),
      ]);
      expect(fs.readFileSync(path.join(headers.buildDir, 'Makefile'), 'utf8')).not.toContain('/usr/src/');

      expect(module.modulePath).toMatch(/\/rbl_cmdline\.ko$/);
      expect(module.vermagic.startsWith(`${release} `)).toBe(true);
      const ko = fs.readFileSync(module.modulePath);
      expect(ko.length).toBe(module.sizeBytes);
      const info = readModinfo(ko);
      expect(info['vermagic']).toBe(module.vermagic);
      expect(info['name']).toBe('rbl_cmdline');
      expect(info['livepatch']).toBe('Y');
      expect(info['license']).toBe('GPL');
      expect(ko.includes(Buffer.from('cmdline_proc_show\0'))).toBe(true);
      expect(ko.includes(Buffer.from(`rebootless patched ${release}\0`))).toBe(true);
      expect(module.toolchain['cc']).toMatch(/gcc/);
      expect(module.toolchain['make']).toMatch(/^GNU Make/);
      expect(module.toolchain['kbuild']).toMatch(/^linux-kbuild-\S+ \S+$/);
      expect(module.toolchain['kernelCc']).toBeDefined();
      expect(module.log.some((l) => /CC \[M\]\s+rbl_cmdline\.o/.test(l))).toBe(true);
    }
    const [[, a], [, b]] = built as [[KernelHeaders, CompiledModule], [KernelHeaders, CompiledModule]];
    expect(a.modulePath).not.toBe(b.modulePath);
    expect(a.sha256).not.toBe(b.sha256);
    expect(a.vermagic).not.toBe(b.vermagic);
  });

  it('rebuilds from a warm cache without fetching anything', async () => {
    const spawnSpy = jest.spyOn(childProcess, 'spawn');
    try {
      const headers = await timed(`warm ensure ${current}`, () => cache.ensure(current));
      expect(spawnSpy).not.toHaveBeenCalled(); // no apt-cache, no apt-get, no dpkg-deb
      const module = await timed(`warm compile ${current}`, () =>
        compileLivepatchModule({
          source: livepatchSample({ moduleName: 'rbl_replace', replacementText: 'cumulative', replace: true }),
          moduleName: 'rbl_replace',
          headers,
          workDir: freshWorkDir(),
          timeoutMs: 120_000,
        }),
      );
      expect(module.vermagic.startsWith(`${current} `)).toBe(true);
      // make runs inside the sandbox: prlimit, then bwrap, then make.
      const commands = spawnSpy.mock.calls.flatMap((call) =>
        [call[0], ...(call[1] ?? [])].map((a) => path.basename(String(a))),
      );
      expect(commands).toContain('make');
      expect(commands).toContain('bwrap');
      expect(commands.filter((c) => /^apt|^dpkg-deb/.test(c))).toEqual([]);
    } finally {
      spawnSpy.mockRestore();
    }
  });

  it("returns the compiler's own message for C that does not compile: error lines with file:line, no make noise", async () => {
    const headers = await cache.ensure(current);
    const workDir = freshWorkDir();
    const error = await failure(
      compileLivepatchModule({ source: BROKEN_C, moduleName: 'broken', headers, workDir, timeoutMs: 120_000 }),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.stage).toBe('compile');
    expect(error.message).toMatch(
      /^broken\.c does not build against \S+: broken\.c:6:17: error: 'undefined_thing' undeclared/,
    );
    expect(error.diagnostics).toEqual(
      expect.arrayContaining([
        "broken.c: In function 'broken_init':",
        "broken.c:6:17: error: 'undefined_thing' undeclared (first use in this function)",
        expect.stringMatching(/^broken\.c:7:17: error: expected ';' before '}' token$/),
      ]),
    );
    for (const line of error.diagnostics) {
      expect(line).not.toMatch(/^make|\*\*\*|Error [0-9]|CC \[M\]/);
      expect(line).not.toContain(workDir);
      expect(line).not.toContain(cache.cacheDir);
    }
    expect(error.log.some((l) => l.startsWith('make'))).toBe(true); // the whole story stays available
  });

  it('NOT_FOUND naming the release when Debian has no headers package for it', async () => {
    const error = await failure(cache.ensure('9.9.9-1-cloud-amd64'));
    expect(error.code).toBe('NOT_FOUND');
    expect(error.stage).toBe('fetch-headers');
    expect(error.message).toMatch(
      /^unknown kernel release 9\.9\.9-1-cloud-amd64: Debian has no headers package linux-headers-9\.9\.9-1-cloud-amd64/,
    );
    expect(fs.existsSync(path.join(cache.cacheDir, 'releases', '9.9.9-1-cloud-amd64'))).toBe(false);
  });

  it('INVALID_ARGUMENT for a release that is not one, with nothing run', async () => {
    const spawnSpy = jest.spyOn(childProcess, 'spawn');
    try {
      const error = await failure(cache.ensure('6.1.0;rm -rf /'));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain('invalid kernel release "6.1.0;rm -rf /"');
      expect(spawnSpy).not.toHaveBeenCalled();
    } finally {
      spawnSpy.mockRestore();
    }
  });

  it('kills the compiler on timeout (DEADLINE_EXCEEDED) and on abort (CANCELLED), leaving no process behind', async () => {
    const headers = await cache.ensure(current);
    const source = livepatchSample({ moduleName: 'rbl_slow', replacementText: 'x' });

    const late = freshWorkDir();
    const timedOut = await failure(
      compileLivepatchModule({ source, moduleName: 'rbl_slow', headers, workDir: late, timeoutMs: 250 }),
    );
    expect(timedOut.code).toBe('DEADLINE_EXCEEDED');
    expect(timedOut.message).toMatch(/took longer than 250 ms; make was killed/);
    expect(processesMentioning(late)).toEqual([]);

    const aborted = freshWorkDir();
    const controller = new AbortController();
    const cancelled = await failure(
      compileLivepatchModule({
        source,
        moduleName: 'rbl_slow',
        headers,
        workDir: aborted,
        timeoutMs: 120_000,
        signal: controller.signal,
        onLog: (line) => {
          if (/CC \[M\]/.test(line)) controller.abort();
        },
      }),
    );
    expect(cancelled.code).toBe('CANCELLED');
    expect(processesMentioning(aborted)).toEqual([]);
  });
});
