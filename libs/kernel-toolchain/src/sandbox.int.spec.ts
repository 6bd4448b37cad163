// The compile sandbox against the real thing: bwrap, Debian's cloud kernel headers and gcc. An
// operator's source that embeds a file with `.incbin` or `#include` sees only the kernel tree and
// its own directory: the builder's signing key, the token key, the CA key and /etc/shadow are not
// there, the build fails saying so, and no byte of them is in the work directory or the log.
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { currentDebianCloudRelease } from './apt';
import { compileLivepatchModule } from './compile';
import { ToolchainError } from './errors';
import { defaultKernelCacheDir, KernelHeadersCache, type KernelHeaders } from './headers-cache';
import { livepatchSample } from './livepatch-sample';
import { detectSandbox, runSandboxed, SANDBOX_UID } from './sandbox';

jest.setTimeout(15 * 60_000);

const MODULE = 'rbl_leak';

function embedding(directive: string): string {
  return `${livepatchSample({ moduleName: MODULE, replacementText: 'innocent' })}\n${directive}\n`;
}

const incbin = (file: string) => embedding(`asm(".section .rodata\\n.incbin \\"${file}\\"\\n.previous");`);
const include = (file: string) => embedding(`static const char stolen[] = {\n#include "${file}"\n};`);

/** Every file under dir, read whole. */
function filesUnder(dir: string): { file: string; bytes: Buffer }[] {
  const out: { file: string; bytes: Buffer }[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p));
    else if (entry.isFile()) out.push({ file: p, bytes: fs.readFileSync(p) });
  }
  return out;
}

async function failure(promise: Promise<unknown>): Promise<ToolchainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ToolchainError)) throw new Error(`expected a ToolchainError, got ${String(error)}`);
  return error;
}

describe('the compile sandbox', () => {
  let headers: KernelHeaders;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-sandbox-'));
  // Stand-ins for the secrets of `npm start`'s stack, as the pki tool writes them: PEM keys, 0600.
  const secrets = path.join(scratch, 'pki');
  const keys: Record<string, string> = {};
  let n = 0;
  const workDir = () => {
    const dir = path.join(scratch, `work-${n++}`);
    fs.mkdirSync(dir);
    return dir;
  };

  beforeAll(async () => {
    fs.mkdirSync(path.join(secrets, 'builder'), { recursive: true, mode: 0o700 });
    fs.mkdirSync(path.join(secrets, 'ca'), { recursive: true, mode: 0o700 });
    for (const [name, file] of [
      ['the builder signing key', 'builder/signing.key'],
      ['the token key', 'ca/token.key'],
      ['the CA key', 'ca/ca.key'],
    ] as const) {
      const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      const p = path.join(secrets, file);
      fs.writeFileSync(p, pem, { mode: 0o600 });
      keys[name] = p;
    }
    keys['/etc/shadow'] = '/etc/shadow';
    headers = await new KernelHeadersCache({ cacheDir: defaultKernelCacheDir() }).ensure(
      await currentDebianCloudRelease(),
    );
  });

  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('is available on this machine (bwrap creates its namespaces)', async () => {
    const support = await detectSandbox();
    expect(support.kind).toBe(process.getuid?.() === 0 ? 'root' : 'userns');
  });

  it('builds a normal livepatch module inside it', async () => {
    const module = await compileLivepatchModule({
      source: livepatchSample({ moduleName: 'rbl_plain', replacementText: 'sandboxed' }),
      moduleName: 'rbl_plain',
      headers,
      workDir: workDir(),
      timeoutMs: 120_000,
    });
    expect(module.sandbox).toBe(process.getuid?.() === 0 ? 'root' : 'userns');
    expect(module.modinfo['livepatch']).toBe('Y');
    expect(fs.readFileSync(module.modulePath).includes(Buffer.from('sandboxed\0'))).toBe(true);
  });

  for (const secret of ['the builder signing key', 'the token key', 'the CA key', '/etc/shadow']) {
    for (const [how, source] of [
      ['.incbin', incbin],
      ['#include', include],
    ] as const) {
      it(`refuses a source that embeds ${secret} with ${how}, and no byte of it is anywhere`, async () => {
        const file = keys[secret]!;
        const content = fs.readFileSync(file);
        const dir = workDir();
        const lines: string[] = [];
        const error = await failure(
          compileLivepatchModule({
            source: source(file),
            moduleName: MODULE,
            headers,
            workDir: dir,
            timeoutMs: 120_000,
            onLog: (l) => lines.push(l),
          }),
        );
        expect(error.code).toBe('INVALID_ARGUMENT');
        expect(error.message).toBe(
          `${MODULE}.c reads ${file}, which a compile may not see (only the kernel build tree and the module's ` +
            `own directory are visible): the build is refused`,
        );
        expect(fs.existsSync(path.join(dir, `${MODULE}.ko`))).toBe(false);
        // A line long enough to be the secret's, not a common word: the PEM body or a shadow entry.
        const probes = content
          .toString('utf8')
          .split('\n')
          .filter((l) => l.length >= 16);
        expect(probes.length).toBeGreaterThan(0);
        const streamed = [...lines, ...error.log, ...error.diagnostics].join('\n');
        for (const probe of probes) {
          expect(streamed).not.toContain(probe);
          for (const { file: f, bytes } of filesUnder(dir)) {
            if (bytes.includes(Buffer.from(probe))) throw new Error(`${f} holds bytes of ${secret}`);
          }
        }
      });
    }
  }

  it('refuses a relative path that climbs out of the module directory', async () => {
    const error = await failure(
      compileLivepatchModule({
        source: incbin('../../../../../../../../etc/shadow'),
        moduleName: MODULE,
        headers,
        workDir: workDir(),
        timeoutMs: 120_000,
      }),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/^rbl_leak\.c reads \.\.\/.*etc\/shadow, which a compile may not see/);
  });

  it('runs as an unprivileged user, with no network and only what it was given', async () => {
    const dir = workDir();
    const run = (argv: string[]) =>
      runSandboxed({
        argv,
        cwd: dir,
        readOnly: [],
        writable: [dir],
        env: { PATH: '/usr/bin:/bin' },
        timeoutMs: 30_000,
      });
    const id = await run(['/usr/bin/id', '-u']);
    expect(id.code).toBe(0);
    if (process.getuid?.() === 0) expect(id.stdout.trim()).toBe(String(SANDBOX_UID));
    // Only the loopback interface exists in its network namespace.
    const net = await run(['/usr/bin/cat', '/proc/net/dev']);
    const interfaces = net.lines.map((l) => /^\s*([^:\s]+):/.exec(l)?.[1]).filter(Boolean);
    expect(interfaces).toEqual(['lo']);
    const ls = await run(['/usr/bin/ls', '-A', '/']);
    expect(ls.stdout.split('\n').filter(Boolean).sort()).toEqual(
      expect.arrayContaining(['dev', 'etc', 'proc', 'tmp', 'usr']),
    );
    expect(ls.stdout).not.toMatch(/^(root|home|work|var|srv|opt)$/m);
    const etc = await run(['/usr/bin/ls', '-A', '/etc']);
    expect(etc.stdout).not.toMatch(/shadow|passwd|ssl|ssh/);
    const cat = await run(['/usr/bin/cat', keys['the CA key']!]);
    expect(cat.code).not.toBe(0);
    expect(cat.stdout).toBe('');
  });

  it('bounds what a process inside may write: a file cannot outgrow the limit', async () => {
    const dir = workDir();
    const dd = await runSandboxed({
      argv: ['/usr/bin/dd', 'if=/dev/zero', `of=${dir}/big`, 'bs=1M', 'count=8'],
      cwd: dir,
      readOnly: [],
      writable: [dir],
      limits: { fileBytes: 1024 * 1024 },
      env: { PATH: '/usr/bin:/bin' },
      timeoutMs: 30_000,
    });
    expect(dd.code === 0).toBe(false);
    expect(fs.statSync(path.join(dir, 'big')).size).toBeLessThanOrEqual(1024 * 1024);
  });
});
