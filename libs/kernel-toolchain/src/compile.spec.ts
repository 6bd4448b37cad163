// compileLivepatchModule's checks, which all come before anything is written or run.
import childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compileLivepatchModule, type CompileOptions } from './compile';
import { ToolchainError } from './errors';
import { livepatchSample } from './livepatch-sample';

describe('compileLivepatchModule input checks', () => {
  let root: string;
  let tree: string;
  let workDir: string;
  let spawnSpy: jest.SpyInstance;

  const fakeTree = (name: string, config: string) => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'Makefile'), 'include ../common/Makefile\n');
    fs.writeFileSync(path.join(dir, '.config'), config);
    return dir;
  };
  const options = (over: Partial<CompileOptions> = {}): CompileOptions => ({
    source: livepatchSample({ moduleName: 'rbl_test', replacementText: 'x' }),
    moduleName: 'rbl_test',
    headers: { release: '6.1.0-56-cloud-amd64', buildDir: tree, packages: [] },
    workDir,
    timeoutMs: 60_000,
    ...over,
  });
  const failure = async (over: Partial<CompileOptions>): Promise<ToolchainError> => {
    const error = await compileLivepatchModule(options(over)).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(error instanceof ToolchainError)) throw new Error(`expected a ToolchainError, got ${String(error)}`);
    return error;
  };

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-compile-spec-'));
    tree = fakeTree('tree', 'CONFIG_LIVEPATCH=y\nCONFIG_CC_VERSION_TEXT="gcc-99 (Imaginary 99.0) 99.0"\n');
  });
  beforeEach(() => {
    workDir = fs.mkdtempSync(path.join(root, 'work-'));
    spawnSpy = jest.spyOn(childProcess, 'spawn');
  });
  afterEach(() => spawnSpy.mockRestore());
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it.each<[string, Partial<CompileOptions>, RegExp]>([
    ['a bad module name', { moduleName: 'rbl-test' }, /invalid module name "rbl-test"/],
    ['a module name with a path', { moduleName: '../x' }, /invalid module name/],
    [
      'an invalid release',
      { headers: { release: '6.1.0;rm -rf /', buildDir: '/tmp', packages: [] } },
      /invalid kernel release/,
    ],
    [
      'a build dir with a space',
      { headers: { release: '6.1.0-56-cloud-amd64', buildDir: '/tmp/a b', packages: [] } },
      /kernel build directory/,
    ],
    ['a relative work dir', { workDir: 'relative/dir' }, /work directory/],
    ['a work dir with make metacharacters', { workDir: '/tmp/$(id)' }, /work directory/],
    ['a zero time limit', { timeoutMs: 0 }, /timeoutMs/],
    ['empty source', { source: '' }, /empty/],
    ['a NUL byte in the source', { source: Buffer.from('int x;\0') }, /NUL/],
  ])('refuses %s with INVALID_ARGUMENT and runs nothing', async (_what, over, message) => {
    const error = await failure(over);
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.stage).toBe('compile');
    expect(error.message).toMatch(message);
    expect(spawnSpy).not.toHaveBeenCalled();
    expect(fs.readdirSync(workDir)).toEqual([]);
  });

  it('refuses a work dir that is not empty', async () => {
    fs.writeFileSync(path.join(workDir, 'stale.ko'), 'x');
    const error = await failure({});
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/must be empty/);
    expect(spawnSpy).not.toHaveBeenCalled();
  });

  it('refuses a work dir that does not exist', async () => {
    const error = await failure({ workDir: path.join(root, 'missing') });
    expect(error.code).toBe('INVALID_ARGUMENT');
  });

  it('FAILED_PRECONDITION when the build dir is no kernel tree', async () => {
    const error = await failure({
      headers: { release: '6.1.0-56-cloud-amd64', buildDir: workDir, packages: [] },
      workDir: fs.mkdtempSync(path.join(root, 'w-')),
    });
    expect(error.code).toBe('FAILED_PRECONDITION');
    expect(error.message).toMatch(/not a prepared kernel build tree/);
  });

  it('FAILED_PRECONDITION when the kernel has no livepatch support', async () => {
    const noLivepatch = fakeTree('nolp', '# CONFIG_LIVEPATCH is not set\n');
    const error = await failure({ headers: { release: '6.1.0-56-cloud-amd64', buildDir: noLivepatch, packages: [] } });
    expect(error.code).toBe('FAILED_PRECONDITION');
    expect(error.message).toMatch(/without CONFIG_LIVEPATCH/);
  });

  it("FAILED_PRECONDITION naming the kernel's compiler when the builder lacks it", async () => {
    const error = await failure({});
    expect(error.code).toBe('FAILED_PRECONDITION');
    expect(error.message).toMatch(
      /^gcc-99 is not installed on this builder; kernel 6\.1\.0-56-cloud-amd64 was built with "gcc-99 \(Imaginary 99\.0\) 99\.0"/,
    );
    expect(error.message).toContain('apt-get install gcc-99');
    expect(spawnSpy).not.toHaveBeenCalled();
    expect(fs.readdirSync(workDir)).toEqual([]);
  });

  it('CANCELLED when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await failure({ signal: controller.signal });
    expect(error.code).toBe('CANCELLED');
    expect(spawnSpy).not.toHaveBeenCalled();
  });
});
