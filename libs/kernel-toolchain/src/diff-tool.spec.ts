import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { detectDiffTool, requireDiffTool } from './diff-tool';
import { ToolchainError } from './errors';

describe('diff tools (kpatch-build, klp-build)', () => {
  let root: string;
  const dir = (name: string) => {
    const d = path.join(root, name);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  const script = (d: string, name: string, body: string, mode = 0o755) => {
    const file = path.join(d, name);
    fs.writeFileSync(file, body, { mode });
    return file;
  };

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-difftool-'));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('finds none on a PATH without them, and requireDiffTool names both missing tools', async () => {
    const empty = dir('empty');
    await expect(detectDiffTool({ searchPath: empty })).resolves.toBeUndefined();
    const error = await requireDiffTool({ searchPath: empty }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ToolchainError);
    const te = error as ToolchainError;
    expect(te.code).toBe('FAILED_PRECONDITION');
    expect(te.stage).toBe('diff-tool');
    expect(te.diagnostics[0]).toMatch(/^neither kpatch-build nor klp-build is installed on this builder; /);
  });

  it('finds kpatch-build and reads its version from the script, without running it', async () => {
    const d = dir('kpatch');
    const marker = path.join(root, 'kpatch-ran');
    // Running this would leave a marker file: detection must not run it.
    script(d, 'kpatch-build', `#!/bin/sh\nVERSION=0.9.10\ntouch '${marker}'\n`);
    const tool = await detectDiffTool({ searchPath: d });
    expect(tool).toEqual({ name: 'kpatch-build', path: path.join(d, 'kpatch-build'), version: '0.9.10' });
    expect(fs.existsSync(marker)).toBe(false);
    await expect(requireDiffTool({ searchPath: d })).resolves.toEqual(tool);
  });

  it('finds klp-build when it is the only one; unknown version when it does not say', async () => {
    const d = dir('klp');
    script(d, 'klp-build', '#!/bin/sh\nexit 0\n');
    await expect(detectDiffTool({ searchPath: d })).resolves.toEqual({
      name: 'klp-build',
      path: path.join(d, 'klp-build'),
      version: 'unknown',
    });
  });

  it('prefers kpatch-build over klp-build, searches PATH in order, and skips what is not executable', async () => {
    const first = dir('first');
    const second = dir('second');
    script(first, 'kpatch-build', '#!/bin/sh\n', 0o644); // not executable: skipped
    script(first, 'klp-build', '#!/bin/sh\n');
    script(second, 'kpatch-build', '#!/bin/sh\nVERSION="0.9.9"\n');
    const tool = await detectDiffTool({ searchPath: [first, second].join(path.delimiter) });
    expect(tool?.name).toBe('kpatch-build');
    expect(tool?.path).toBe(path.join(second, 'kpatch-build'));
    expect(tool?.version).toBe('0.9.9');
  });
});
