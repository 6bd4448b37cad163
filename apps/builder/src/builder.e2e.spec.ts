// The builder as an operator runs it: the built dist/main.js as a child process on a free port,
// writing to a fresh topic, called over real gRPC. It builds a real livepatch module (replacing
// cmdline_proc_show) against the current Debian cloud kernel's headers and a second release's,
// serves both artifacts, refuses bad input precisely, and refuses to serve a tampered module.
// Build first (`npx tsc -b`); the kernel headers are fetched from Debian into the shared cache on
// the first run (BUILDER_KERNEL_CACHE_DIR default), later runs reuse them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { verifyManifest } from '@rebootless/artifacts';
import { builder, events, grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { ChainVerifier, StaticKeyTrust, decodeEvent, type SigningKey } from '@rebootless/events';
import { ChainStateFile } from '@rebootless/kafka';
import {
  compareReleases,
  currentDebianCloudRelease,
  debianCloudReleases,
  livepatchSample,
  readModinfo,
  releaseMajorMinor,
} from '@rebootless/kernel-toolchain';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';

const REPO_ROOT = path.resolve(__dirname, '../../..');
const MAIN = path.join(REPO_ROOT, 'apps', 'builder', 'dist', 'main.js');
const READY_TIMEOUT_MS = 30_000;
// The first run downloads two releases' header packages from Debian.
const BUILD_TIMEOUT_MS = 10 * 60_000;

jest.setTimeout(BUILD_TIMEOUT_MS + 60_000);

// ---- the builder as a process -----------------------------------------------------------

class BuilderProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  constructor(env: Record<string, string>) {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !key.startsWith('BUILDER_') && key !== 'REBOOTLESS_DATA_DIR' && key !== 'LOG_FORMAT',
      ),
    );
    this.child = spawn(process.execPath, [MAIN], {
      cwd: REPO_ROOT,
      env: { ...inherited, NO_COLOR: '1', REBOOTLESS_INSECURE: 'true', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitFor(text: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes(text)) {
      if (!this.running) throw new Error(`builder exited before printing "${text}"\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      this.exited,
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 15_000))),
    ]);
    clearTimeout(timer);
    if (exit === 'timeout') {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(`builder did not stop on SIGTERM\n${this.output}`);
    }
    if (exit.code !== 0) throw new Error(`builder exited ${JSON.stringify(exit)} on SIGTERM\n${this.output}`);
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

// ---- a BuildService client ----------------------------------------------------------------

const definitions = protoLoader.loadSync(grpcServices.build.protoPath, protoLoaderOptions);
const BuildServiceClient = grpc.loadPackageDefinition(definitions)['rebootless'] as unknown as {
  builder: { v1: { BuildService: grpc.ServiceClientConstructor } };
};

type Client = InstanceType<grpc.ServiceClientConstructor>;

interface CallError {
  code: string;
  details: string;
}

function unary<Res>(client: Client, method: string, request: object): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as (req: object, cb: (error: grpc.ServiceError | null, res: Res) => void) => void)(
      request,
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}

async function refusal(promise: Promise<unknown>): Promise<CallError> {
  try {
    await promise;
  } catch (error) {
    const e = error as grpc.ServiceError;
    return { code: grpc.status[e.code], details: e.details };
  }
  throw new Error('expected the call to fail');
}

function serverStream<Res>(
  client: Client,
  method: string,
  request: object,
): Promise<{ messages: Res[]; error?: CallError }> {
  return new Promise((resolve) => {
    const messages: Res[] = [];
    const call = (client[method] as (req: object) => grpc.ClientReadableStream<Res>)(request);
    call.on('data', (message: Res) => messages.push(message));
    call.on('error', (error: grpc.ServiceError) =>
      resolve({ messages, error: { code: grpc.status[error.code], details: error.details } }),
    );
    call.on('end', () => resolve({ messages }));
  });
}

type Watched = builder.WatchBuildResponse & { update?: string };
type Fetched = { header?: { manifest: Buffer; manifestSignature: Buffer }; chunk?: Buffer; part?: string };

async function watchToEnd(client: Client, buildId: string): Promise<{ updates: Watched[]; finished: builder.Build }> {
  const { messages, error } = await serverStream<Watched>(client, 'watchBuild', { buildId });
  if (error) throw new Error(`WatchBuild ${buildId} failed: ${error.code} ${error.details}`);
  const last = messages[messages.length - 1];
  if (!last?.finished)
    throw new Error(`WatchBuild ${buildId} ended without finished: ${JSON.stringify(messages.slice(-3))}`);
  return { updates: messages, finished: last.finished };
}

async function fetchArtifact(client: Client, digest: string): Promise<{ messages: Fetched[]; error?: CallError }> {
  return serverStream<Fetched>(client, 'fetchArtifact', { artifactDigest: digest });
}

// ---- inputs ---------------------------------------------------------------------------------

/** Two releases Debian serves headers for: the current cloud kernel, and the newest other one of its line. */
async function twoReleases(): Promise<[string, string]> {
  const current = await currentDebianCloudRelease();
  const others = (await debianCloudReleases()).filter((r) => r !== current);
  const sameLine = others.filter((r) => releaseMajorMinor(r) === releaseMajorMinor(current)).sort(compareReleases);
  const second = sameLine[sameLine.length - 1] ?? others.sort(compareReleases)[others.length - 1];
  if (!second) throw new Error(`Debian serves headers for no cloud kernel besides ${current}`);
  return [current, second];
}

const cves = [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }];

function cmdlineSource(text: string): Buffer {
  return Buffer.from(livepatchSample({ moduleName: 'lp_cmdline_e2e', replacementText: text }));
}

function submitRequest(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    patchName: 'cmdline-e2e',
    version: '1.0.0',
    description: 'reading /proc/cmdline shows a fixed text',
    cves,
    replace: false,
    kernelReleases: [],
    ...overrides,
  };
}

const BROKEN_C = `#include <linux/module.h>
#include <linux/livepatch.h>

static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = no_such_function, },
	{ }
};
MODULE_LICENSE("GPL");
`;

// A diff that changes a structure's layout: a live patch cannot change data already in memory.
const STRUCT_DIFF = `diff --git a/include/linux/sched.h b/include/linux/sched.h
--- a/include/linux/sched.h
+++ b/include/linux/sched.h
@@ -740,6 +740,7 @@ struct task_struct {
 	unsigned int			__state;
 
 	/* saved state for "spinlock sleepers" */
+	unsigned int			rebootless_flags;
 	unsigned int			saved_state;
 
 	/*
`;

// A clean diff changing one function's body.
const CLEAN_DIFF = `diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -7,7 +7,7 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
-	seq_puts(m, saved_command_line);
+	seq_puts(m, "rebootless");
 	seq_putc(m, '\\n');
 	return 0;
 }
`;

const TRAVERSAL_DIFF = `--- a/../../etc/passwd
+++ b/../../etc/passwd
@@ -1,1 +1,1 @@
-root:x:0:0:root:/root:/bin/bash
+root::0:0:root:/root:/bin/bash
`;

const MALFORMED_DIFF = `--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ this is not a hunk header @@
-	seq_puts(m, saved_command_line);
`;

// ---- the test ---------------------------------------------------------------------------------

describe('the builder, as a process over gRPC', () => {
  let topic: string;
  let dataDir: string;
  let address: string;
  let service: BuilderProcess;
  let client: Client;
  let builderKey: SigningKey;
  let releases: [string, string];
  const acceptedBuilds: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is not built: run \`npx tsc -b\` before the e2e tests`);
    [topic, releases] = await Promise.all([freshEventsTopic('builder', 3), twoReleases()]);
    dataDir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-builder-e2e-'));
    address = `127.0.0.1:${await freePort()}`;
    service = new BuilderProcess({
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: dataDir,
      EVENTS_TOPIC: topic,
      BUILDER_WORKERS: '2',
    });
    await service.waitFor(`builder ready on ${address}`, READY_TIMEOUT_MS);
    client = new BuildServiceClient.builder.v1.BuildService(address, grpc.credentials.createInsecure());
    // The key the builder keeps in its data dir signs its chain and its manifests: agents pin it.
    builderKey = new ChainStateFile(path.join(dataDir, 'chain'), 'builder').readKey();
  });

  afterAll(async () => {
    client?.close();
    service?.kill();
    await service?.exited;
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  function filesUnder(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
    });
  }

  function storedDigests(): string[] {
    const objects = path.join(dataDir, 'artifacts', 'objects');
    if (!fs.existsSync(objects)) return [];
    return fs.readdirSync(objects).flatMap((shard) => fs.readdirSync(path.join(objects, shard)));
  }

  let good: builder.Build;

  it('builds the cmdline_proc_show livepatch for two kernel releases: one artifact each, signed, with the vermagic of its kernel', async () => {
    const submitted = await unary<builder.SubmitBuildResponse>(
      client,
      'submitBuild',
      submitRequest({ kernelReleases: releases, livepatchModuleSource: cmdlineSource('rebootless e2e') }),
    );
    acceptedBuilds.push(submitted.buildId);
    expect(submitted.patchId).toBe('cmdline-e2e');

    const { updates, finished } = await watchToEnd(client, submitted.buildId);

    expect(finished.state).toBe(builder.BuildState.BUILD_STATE_SUCCEEDED);
    expect(finished.kernels.map((k) => k.kernelRelease)).toEqual(releases);
    for (const release of releases) {
      const stages = updates
        .filter((u) => u.stageChanged?.kernelRelease === release)
        .map((u) => `${u.stageChanged!.stage}:${builder.BuildState[u.stageChanged!.state]}`);
      expect(stages).toEqual([
        'queued:BUILD_STATE_QUEUED',
        'analyse:BUILD_STATE_RUNNING',
        'fetch-headers:BUILD_STATE_RUNNING',
        'compile:BUILD_STATE_RUNNING',
        'sign:BUILD_STATE_RUNNING',
        'store:BUILD_STATE_RUNNING',
        'store:BUILD_STATE_SUCCEEDED',
      ]);
      expect(updates.some((u) => u.logLine?.kernelRelease === release && u.logLine.stage === 'compile')).toBe(true);
    }

    const digests = finished.kernels.map((k) => k.artifactDigest);
    expect(new Set(digests).size).toBe(2);
    for (const kernel of finished.kernels) {
      const { messages, error } = await fetchArtifact(client, kernel.artifactDigest);
      expect(error).toBeUndefined();
      const [first, ...rest] = messages;
      // The header comes first, once, with the manifest bytes as signed.
      expect(first?.header).toBeDefined();
      expect(rest.every((m) => m.chunk !== undefined && m.header === undefined)).toBe(true);
      const manifestBytes = first!.header!.manifest;
      const signature = first!.header!.manifestSignature;
      // Plain Ed25519 over the manifest bytes with the builder's key...
      expect(verify(null, manifestBytes, builderKey.publicKey, signature)).toBe(true);
      // ...and what an agent runs: pinned key, then decode.
      const manifest = verifyManifest(manifestBytes, signature, builderKey.rawPublicKey);
      const module = Buffer.concat(rest.map((m) => m.chunk!));
      expect(createHash('sha256').update(module).digest('hex')).toBe(kernel.artifactDigest);
      expect(manifest).toMatchObject({
        patchId: 'cmdline-e2e',
        version: '1.0.0',
        moduleName: 'lp_cmdline_e2e__v1_0_0',
        kernelRelease: kernel.kernelRelease,
        sha256: kernel.artifactDigest,
        sizeBytes: String(module.length),
        functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }],
        replace: false,
        cves,
        severity: events.Severity.SEVERITY_HIGH,
      });
      expect(manifest.vermagic.startsWith(`${kernel.kernelRelease} `)).toBe(true);
      // The vermagic is the module's own, as the kernel will read it.
      const modinfo = readModinfo(module);
      expect(modinfo['vermagic']).toBe(manifest.vermagic);
      expect(modinfo['livepatch']).toBe('Y');
      expect(modinfo['name']).toBe('lp_cmdline_e2e__v1_0_0');
      expect(Object.keys(manifest.toolchain)).toEqual(expect.arrayContaining(['builder']));
      expect(manifest.builtAt).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(kernel.manifest).toEqual(manifest);
    }
    expect(storedDigests().sort()).toEqual([...digests].sort());

    const got = await unary<builder.GetBuildResponse>(client, 'getBuild', { buildId: submitted.buildId });
    expect(got.build).toEqual(finished);
    good = finished;
  });

  describe('bad input: a precise error and no artifact', () => {
    it.each([
      ['an empty diff', { unifiedDiff: Buffer.alloc(0) }, /^unified_diff: line 1: the diff is empty/],
      [
        'a malformed diff',
        { unifiedDiff: Buffer.from(MALFORMED_DIFF) },
        /^unified_diff: line 3: malformed hunk header "@@ this is not a hunk header @@"/,
      ],
      [
        'a file name that tries path traversal',
        { unifiedDiff: Buffer.from(TRAVERSAL_DIFF) },
        /^unified_diff: line 1: the old file name "\.\.\/\.\.\/etc\/passwd" contains "\.\.", which would reach outside the kernel source tree/,
      ],
      [
        'a diff that changes a struct layout',
        { unifiedDiff: Buffer.from(STRUCT_DIFF) },
        /^unified_diff: refused \(struct-layout\) at include\/linux\/sched\.h:743: .*changes the layout of struct task_struct \(member rebootless_flags is added\)\. .*klp_shadow/,
      ],
      [
        'an upload over the size limit',
        { livepatchModuleSource: Buffer.alloc(1024 * 1024 + 1, 0x20) },
        /^livepatch_module_source: has 1048577 bytes, over the limit of 1048576 bytes \(BUILDER_MAX_FIX_BYTES\)$/,
      ],
      [
        'a malformed kernel release',
        { kernelReleases: ['../../etc/passwd'], livepatchModuleSource: cmdlineSource('x') },
        /^kernel_releases\[0\]: "..\/..\/etc\/passwd" is not a kernel release/,
      ],
      [
        'no fix at all',
        {},
        /^fix: no fix given: set livepatch_module_source \(C against the klp API\) or unified_diff$/,
      ],
      [
        'no kernel release',
        { kernelReleases: [], livepatchModuleSource: cmdlineSource('x') },
        /^kernel_releases: is empty/,
      ],
      [
        'a bad patch name',
        { patchName: 'Bad Name', livepatchModuleSource: cmdlineSource('x') },
        /^patch_name: "Bad Name" must be/,
      ],
      [
        'a bad CVE id',
        { cves: [{ id: 'CVE-1', severity: 3 }], livepatchModuleSource: cmdlineSource('x') },
        /^cves\[0\]\.id: "CVE-1" is not a CVE id/,
      ],
    ])('%s: INVALID_ARGUMENT naming the field', async (_what, fields, message) => {
      const releasesOf = (fields as { kernelReleases?: string[] }).kernelReleases ?? [releases[0]];
      const error = await refusal(
        unary(client, 'submitBuild', submitRequest({ ...fields, kernelReleases: releasesOf, version: '2.0.0' })),
      );

      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.details).toMatch(message);
      expect(storedDigests()).toHaveLength(2);
    });

    it('a clean diff for a release no kernel profile of the builder builds: FAILED_PRECONDITION naming the setting, after the analysis', async () => {
      const error = await refusal(
        unary(
          client,
          'submitBuild',
          submitRequest({ version: '2.0.0', kernelReleases: [releases[0]], unifiedDiff: Buffer.from(CLEAN_DIFF) }),
        ),
      );

      expect(error.code).toBe('FAILED_PRECONDITION');
      expect(error.details).toContain(`no kernel profile of this builder builds ${releases[0]} from a diff`);
      expect(error.details).toContain('BUILDER_KERNEL_PROFILES');
      expect(error.details).toContain(
        'The diff analysis ran first and found: The diff touches 1 file (fs/proc/cmdline.c) and changes 1 function: cmdline_proc_show()',
      );
    });

    it('C that does not compile: the build fails at compile with the compiler’s own message, and no artifact', async () => {
      const submitted = await unary<builder.SubmitBuildResponse>(
        client,
        'submitBuild',
        submitRequest({
          patchName: 'broken-c',
          version: '1',
          kernelReleases: [releases[0]],
          livepatchModuleSource: Buffer.from(BROKEN_C),
        }),
      );
      acceptedBuilds.push(submitted.buildId);
      const { finished } = await watchToEnd(client, submitted.buildId);

      expect(finished.state).toBe(builder.BuildState.BUILD_STATE_FAILED);
      const [kernel] = finished.kernels;
      expect(kernel).toMatchObject({
        kernelRelease: releases[0],
        state: builder.BuildState.BUILD_STATE_FAILED,
        stage: 'compile',
        artifactDigest: '',
      });
      // gcc's own words, with the file and line as the author wrote them.
      expect(kernel!.diagnostics.join('\n')).toMatch(/lp_broken_c__v1\.c:5:\d+: error: .*no_such_function/);
      expect(storedDigests()).toHaveLength(2);
    });

    it('a source that embeds the builder’s signing key or /etc/shadow: the build fails at compile saying so, and no byte of them is stored or logged', async () => {
      // ADR 0013: the compile runs in a sandbox that sees the kernel tree and its own directory only.
      const chainKey = new ChainStateFile(path.join(dataDir, 'chain'), 'builder').keyPath;
      for (const [name, file] of [
        ['signing-key', chainKey],
        ['shadow', '/etc/shadow'],
      ] as const) {
        const secretLines = fs
          .readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l.length >= 16);
        expect(secretLines.length).toBeGreaterThan(0);
        const source = `${cmdlineSource('leak').toString()}\nasm(".section .rodata\\n.incbin \\"${file}\\"\\n.previous");\n`;
        const submitted = await unary<builder.SubmitBuildResponse>(
          client,
          'submitBuild',
          submitRequest({
            patchName: `leak-${name}`,
            version: '1',
            kernelReleases: [releases[0]],
            livepatchModuleSource: Buffer.from(source),
          }),
        );
        acceptedBuilds.push(submitted.buildId);
        const { finished, updates } = await watchToEnd(client, submitted.buildId);

        expect(finished.state).toBe(builder.BuildState.BUILD_STATE_FAILED);
        const [kernel] = finished.kernels;
        expect(kernel).toMatchObject({ stage: 'compile', artifactDigest: '' });
        expect(kernel!.diagnostics.join('\n')).toContain(
          `reads ${file}, which a compile may not see (only the kernel build tree and the module's own directory are visible)`,
        );
        const seen = JSON.stringify(updates) + JSON.stringify(finished);
        for (const line of secretLines) expect(seen).not.toContain(line);
        expect(storedDigests()).toHaveLength(2);
        for (const stored of filesUnder(dataDir).filter((f) => f !== chainKey)) {
          const bytes = fs.readFileSync(stored);
          for (const line of secretLines) {
            if (bytes.includes(Buffer.from(line))) throw new Error(`${stored} holds bytes of ${file}`);
          }
        }
      }
    });

    it('an unknown kernel release: the build fails at fetch-headers saying Debian has no such headers, and no artifact', async () => {
      const unknown = '6.1.0-9999-cloud-amd64';
      const submitted = await unary<builder.SubmitBuildResponse>(
        client,
        'submitBuild',
        submitRequest({
          patchName: 'unknown-release',
          kernelReleases: [unknown],
          livepatchModuleSource: cmdlineSource('x'),
        }),
      );
      acceptedBuilds.push(submitted.buildId);
      const { finished } = await watchToEnd(client, submitted.buildId);

      expect(finished.state).toBe(builder.BuildState.BUILD_STATE_FAILED);
      expect(finished.kernels[0]).toMatchObject({ kernelRelease: unknown, stage: 'fetch-headers', artifactDigest: '' });
      expect(finished.kernels[0]!.diagnostics.join('\n')).toContain(`linux-headers-${unknown}`);
      expect(storedDigests()).toHaveLength(2);
    });

    it('GetBuild, WatchBuild and FetchArtifact of things that do not exist: NOT_FOUND and INVALID_ARGUMENT', async () => {
      const missing = '01890000-0000-7000-8000-000000000000';

      expect(await refusal(unary(client, 'getBuild', { buildId: missing }))).toEqual({
        code: 'NOT_FOUND',
        details: `no build "${missing}" on this builder`,
      });
      expect((await serverStream(client, 'watchBuild', { buildId: missing })).error).toEqual({
        code: 'NOT_FOUND',
        details: `no build "${missing}" on this builder`,
      });
      expect((await fetchArtifact(client, '0'.repeat(64))).error).toEqual({
        code: 'NOT_FOUND',
        details: `no artifact ${'0'.repeat(64)} in the store`,
      });
      expect((await fetchArtifact(client, '../../chain')).error?.code).toBe('INVALID_ARGUMENT');
    });
  });

  it('cancels a running build: the compiler is stopped, the release ends CANCELLED, no artifact', async () => {
    const submitted = await unary<builder.SubmitBuildResponse>(
      client,
      'submitBuild',
      submitRequest({
        version: '1.0.1',
        kernelReleases: [releases[0]],
        livepatchModuleSource: cmdlineSource('cancelled'),
      }),
    );
    acceptedBuilds.push(submitted.buildId);
    // Cancel once the watch shows the compiler running.
    const updates: Watched[] = [];
    let cancelled: Promise<builder.CancelBuildResponse> | undefined;
    await new Promise<void>((resolve, reject) => {
      const call = (client['watchBuild'] as (req: object) => grpc.ClientReadableStream<Watched>)({
        buildId: submitted.buildId,
      });
      call.on('data', (update: Watched) => {
        updates.push(update);
        if (!cancelled && update.stageChanged?.stage === 'compile') {
          cancelled = unary(client, 'cancelBuild', { buildId: submitted.buildId, reason: 'wrong text' });
        }
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    const finished = updates[updates.length - 1]!.finished!;

    expect((await cancelled!).build?.buildId).toBe(submitted.buildId);
    expect(finished.state).toBe(builder.BuildState.BUILD_STATE_CANCELLED);
    expect(finished.kernels[0]).toMatchObject({
      state: builder.BuildState.BUILD_STATE_CANCELLED,
      stage: 'compile',
      artifactDigest: '',
      diagnostics: ['cancelled: wrong text (during compile)'],
    });
    expect(storedDigests()).toHaveLength(2);
    expect(await refusal(unary(client, 'cancelBuild', { buildId: submitted.buildId, reason: 'again' }))).toEqual({
      code: 'FAILED_PRECONDITION',
      details: `build ${submitted.buildId} has already ended (CANCELLED); there is nothing to cancel`,
    });
  });

  it('refuses to serve a module altered in the store, and sends not a byte of it', async () => {
    const digest = good.kernels[1]!.artifactDigest;
    const file = path.join(dataDir, 'artifacts', 'objects', digest.slice(0, 2), digest, 'module.ko');
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    fs.writeFileSync(file, bytes);

    const { messages, error } = await fetchArtifact(client, digest);

    expect(error?.code).toBe('DATA_LOSS');
    expect(error?.details).toContain(`artifact ${digest} is tampered or corrupt (module-digest-mismatch)`);
    expect(messages).toEqual([]);
    expect(service.output).toContain(`FetchArtifact ${digest} refused`);
  });

  it('retracts a patch version: its artifacts are no longer served, and it cannot be built again', async () => {
    const error = await refusal(
      unary(client, 'retractPatch', { patchId: 'cmdline-e2e', version: '1.0.0', reason: '' }),
    );
    expect(error).toEqual({
      code: 'INVALID_ARGUMENT',
      details: 'reason: is required: the audit trail must say why the patch is retracted',
    });
    expect(
      await refusal(unary(client, 'retractPatch', { patchId: 'cmdline-e2e', version: '9.9', reason: 'x' })),
    ).toEqual({
      code: 'NOT_FOUND',
      details: 'no artifact of patch cmdline-e2e version 9.9 was built here',
    });

    await unary(client, 'retractPatch', {
      patchId: 'cmdline-e2e',
      version: '1.0.0',
      reason: 'hides the boot command line from monitoring',
    });
    await unary(client, 'retractPatch', { patchId: 'cmdline-e2e', version: '1.0.0', reason: 'twice is fine' });
    const { messages, error: fetchError } = await fetchArtifact(client, good.kernels[0]!.artifactDigest);
    const resubmit = await refusal(
      unary(
        client,
        'submitBuild',
        submitRequest({ kernelReleases: [releases[0]], livepatchModuleSource: cmdlineSource('again') }),
      ),
    );

    expect(messages).toEqual([]);
    expect(fetchError?.code).toBe('FAILED_PRECONDITION');
    expect(fetchError?.details).toContain('hides the boot command line from monitoring');
    expect(resubmit.code).toBe('FAILED_PRECONDITION');
    expect(resubmit.details).toMatch(/^patch cmdline-e2e version 1\.0\.0 was retracted at .* submit a new version$/);
  });

  it('wrote every build into its signed chain: requested, succeeded, failed with stage and diagnostics, published, retracted', async () => {
    const records = (await readWholeTopic(testKafka(), topic)).filter(
      (r) => decodeEvent(r.value!).body.producer?.producerId === 'builder',
    );
    const verifier = new ChainVerifier(new StaticKeyTrust().vouch('builder', builderKey.rawPublicKey));
    records.forEach((r) => verifier.ingest(r.value, { partition: r.partition, offset: r.offset }));
    expect(verifier.finish().findings).toEqual([]);

    const bodies = records
      .map((r) => decodeEvent(r.value!).body)
      .sort((a, b) => Number(a.producer!.seq) - Number(b.producer!.seq));
    const ofType = (type: string) => bodies.filter((b) => b.type === type);

    // Only submissions that were accepted became builds; refused ones left no trace but their answer.
    expect(ofType('BuildRequested').map((b) => b.buildRequested!.buildId)).toEqual(acceptedBuilds);
    const [goodId, brokenId, leakKeyId, leakShadowId, unknownId, cancelledId] = acceptedBuilds;
    expect(ofType('BuildRequested')[0]!.buildRequested).toMatchObject({
      patchId: 'cmdline-e2e',
      kernelReleases: releases,
      sourceKind: events.FixSourceKind.FIX_SOURCE_KIND_LIVEPATCH_MODULE,
    });

    const succeeded = ofType('BuildSucceeded').map((b) => b.buildSucceeded!);
    expect(succeeded.map((s) => [s.buildId, s.kernelRelease]).sort()).toEqual(releases.map((r) => [goodId, r]).sort());
    for (const s of succeeded) {
      const kernel = good.kernels.find((k) => k.kernelRelease === s.kernelRelease)!;
      expect(s.artifactDigest).toBe(kernel.artifactDigest);
      expect(s.manifest).toEqual(kernel.manifest);
      expect(s.changedFunctions).toEqual([{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }]);
    }

    const failed = ofType('BuildFailed').map((b) => b.buildFailed!);
    expect(failed.map((f) => [f.buildId, f.stage, f.code])).toEqual([
      [brokenId, 'compile', 'INVALID_ARGUMENT'],
      [leakKeyId, 'compile', 'INVALID_ARGUMENT'],
      [leakShadowId, 'compile', 'INVALID_ARGUMENT'],
      [unknownId, 'fetch-headers', 'NOT_FOUND'],
      [cancelledId, 'compile', 'CANCELLED'],
    ]);
    expect(failed[0]!.diagnostics.join('\n')).toContain('no_such_function');

    const published = ofType('PatchPublished').map((b) => b.patchPublished!);
    expect(published).toHaveLength(1);
    expect(published[0]).toMatchObject({
      patchId: 'cmdline-e2e',
      version: '1.0.0',
      buildId: goodId,
      severity: events.Severity.SEVERITY_HIGH,
    });
    expect(published[0]!.artifacts.map((a) => a.kernelRelease).sort()).toEqual([...releases].sort());

    expect(ofType('PatchRetracted').map((b) => b.patchRetracted)).toEqual([
      { patchId: 'cmdline-e2e', version: '1.0.0', reason: 'hides the boot command line from monitoring' },
    ]);
    expect(
      bodies
        .filter((b) => b.buildRequested || b.buildSucceeded || b.buildFailed)
        .every((b) => b.stream.startsWith('build/')),
    ).toBe(true);
    expect(
      [...ofType('PatchPublished'), ...ofType('PatchRetracted')].every((b) => b.stream === 'patch/cmdline-e2e'),
    ).toBe(true);
  });

  it('keeps its builds across a restart, and bounds its queue (RESOURCE_EXHAUSTED)', async () => {
    await service.stop();
    service = new BuilderProcess({
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: dataDir,
      EVENTS_TOPIC: topic,
      BUILDER_WORKERS: '1',
      BUILDER_QUEUE_SIZE: '1',
    });
    await service.waitFor(`builder ready on ${address}`, READY_TIMEOUT_MS);
    client.close();
    client = new BuildServiceClient.builder.v1.BuildService(address, grpc.credentials.createInsecure());

    const after = await unary<builder.GetBuildResponse>(client, 'getBuild', { buildId: good.buildId });
    expect(after.build).toEqual(good);

    // One worker and room for one waiting build: the first runs, the second waits, the third is refused.
    const submit = (version: string) =>
      unary<builder.SubmitBuildResponse>(
        client,
        'submitBuild',
        submitRequest({
          patchName: 'queue-demo',
          version,
          kernelReleases: [releases[0]],
          livepatchModuleSource: cmdlineSource(version),
        }),
      );
    const first = await submit('1');
    const second = await submit('2');
    const third = await refusal(submit('3'));

    expect(third).toEqual({
      code: 'RESOURCE_EXHAUSTED',
      details: 'the build queue is full (1 builds waiting, BUILDER_QUEUE_SIZE); submit again once some have started',
    });
    await unary(client, 'cancelBuild', { buildId: second.buildId, reason: 'queue demo' });
    await unary(client, 'cancelBuild', { buildId: first.buildId, reason: 'queue demo' });
    const listed = await unary<builder.ListBuildsResponse>(client, 'listBuilds', { patchId: 'queue-demo' });
    expect(listed.builds.map((b) => b.buildId)).toEqual([second.buildId, first.buildId]);
    await service.stop();
  });
});
