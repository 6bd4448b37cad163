// One kernel release's part of a build, from the fix to a stored, signed artifact:
// analyse → fetch-headers → compile → sign → store. It reports each stage and every log line as
// it goes and ends with an outcome; it never throws. No framework: the coordinator drives it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { events } from '@rebootless/contracts';
import { signManifest, sha256Hex, type ArtifactStore, type PatchManifest } from '@rebootless/artifacts';
import type { SigningKey } from '@rebootless/events';
import { ATTR, SPAN, withSpan } from '@rebootless/telemetry';
import type { KernelArtifact, Stage } from './build-record';
import type { Fix } from './submission';

/** The kernel toolchain as the builder uses it (libs/kernel-toolchain behind it). */
export interface BuildToolchain {
  ensureHeaders(
    release: string,
    signal: AbortSignal,
    onLog: (line: string) => void,
  ): Promise<{ release: string; buildDir: string; packages: { name: string; version: string }[] }>;
  compileLivepatch(options: {
    source: Buffer;
    moduleName: string;
    headers: { release: string; buildDir: string; packages: { name: string; version: string }[] };
    workDir: string;
    timeoutMs: number;
    signal: AbortSignal;
    onLog: (line: string) => void;
  }): Promise<{ modulePath: string; vermagic: string; toolchain: Record<string, string>; warnings: string[] }>;
  /**
   * The kernel profile that builds `release` from a diff (its original build is what klp-build
   * diffs against); throws a FAILED_PRECONDITION failure naming the profiles there are when none does.
   */
  diffProfileFor(release: string): { name: string; release: string };
  /** klp-build of the diff against the release's profile (built first if cold), signed the kernel's way. */
  buildFromDiff(options: {
    release: string;
    diff: Buffer;
    moduleName: string;
    replace: boolean;
    timeoutMs: number;
    signal: AbortSignal;
    onProfile: (line: string) => void;
    onLog: (line: string) => void;
  }): Promise<{ module: Buffer; vermagic: string; toolchain: Record<string, string> }>;
  /** Whether this builder smoke-tests modules for `release` (it has a guest of that kernel). */
  smokes(release: string): boolean;
  /**
   * Loads, exercises, disables and unloads the module in a QEMU guest of `release` before it is
   * published. A module that fails throws SmokeTestFailed with the kernel's lines.
   */
  smokeTest(options: {
    release: string;
    module: Buffer;
    moduleName: string;
    signal: AbortSignal;
    onLog: (line: string) => void;
  }): Promise<events.SmokeTest>;
}

/** A failure with the status it maps to, the stage it happened in, and lines for the patch author. */
export interface StageFailure {
  readonly code: string;
  readonly stage?: string;
  readonly diagnostics: readonly string[];
  readonly message: string;
}

export interface KernelBuildInput {
  readonly buildId: string;
  readonly release: string;
  readonly patchId: string;
  readonly version: string;
  readonly description: string;
  readonly moduleName: string;
  readonly replace: boolean;
  readonly cves: events.Cve[];
  readonly severity: events.Severity;
  readonly fix: Fix;
  /** What the diff analysis found (diff fixes): lines for the log, warnings for the diagnostics. */
  readonly analysis?: {
    readonly functions: events.PatchedFunction[];
    readonly lines: string[];
    readonly warnings: string[];
  };
}

export interface KernelBuildDeps {
  readonly toolchain: BuildToolchain;
  readonly store: ArtifactStore;
  readonly key: SigningKey;
  readonly compileTimeoutMs: number;
  /** Parent of the per-build temporary directories. */
  readonly workRoot?: string;
  readonly builderVersion: string;
  readonly now: () => number;
  /** Turns any error into a StageFailure (ToolchainError, cancellation, the unexpected). */
  readonly failureOf: (error: unknown, stage: Stage, signal: AbortSignal) => StageFailure;
}

export type KernelBuildOutcome =
  | {
      readonly kind: 'succeeded';
      readonly artifact: KernelArtifact;
      readonly functions: events.PatchedFunction[];
      readonly diagnostics: string[];
      /** The identical module was stored before; its manifest as first signed is served. */
      readonly reused: boolean;
      readonly smoke?: events.SmokeTest;
    }
  | { readonly kind: 'failed'; readonly stage: Stage; readonly code: string; readonly diagnostics: string[] };

export interface KernelBuildProgress {
  stage(stage: Stage): void;
  log(stage: Stage, line: string): void;
}

/** Throws unless the module's vermagic names exactly this release: it would not load on it. */
export function checkVermagic(vermagic: string, release: string): void {
  if (vermagic.split(' ')[0] !== release) {
    throw new VermagicMismatchError(
      `the built module's vermagic "${vermagic.trim()}" does not start with ${release}: it would not load on that kernel`,
    );
  }
}

export class VermagicMismatchError extends Error {}

export async function buildForKernel(
  input: KernelBuildInput,
  deps: KernelBuildDeps,
  progress: KernelBuildProgress,
  signal: AbortSignal,
): Promise<KernelBuildOutcome> {
  let stage: Stage = 'analyse';
  const enter = (next: Stage) => {
    if (signal.aborted) throw signal.reason ?? new Error('cancelled');
    stage = next;
    progress.stage(next);
  };
  const diagnostics: string[] = [];
  let workDir: string | undefined;
  try {
    enter('analyse');
    let functions: events.PatchedFunction[];
    if (input.fix.kind === 'livepatch-source') {
      functions = input.fix.functions;
      for (const f of functions) {
        progress.log('analyse', `replaces ${f.object}:${f.name}${f.sympos ? `,${f.sympos}` : ''}`);
      }
    } else {
      functions = input.analysis?.functions ?? [];
      for (const line of input.analysis?.lines ?? []) progress.log('analyse', line);
      diagnostics.push(...(input.analysis?.warnings ?? []));
    }

    let built: { module: Buffer; vermagic: string; toolchain: Record<string, string> };
    const compileSpan = {
      [ATTR.buildId]: input.buildId,
      [ATTR.kernelRelease]: input.release,
      'rebootless.module.name': input.moduleName,
    };
    if (input.fix.kind === 'unified-diff') {
      const profile = deps.toolchain.diffProfileFor(input.release);
      enter('fetch-headers');
      progress.log('fetch-headers', `kernel profile ${profile.name} (${profile.release})`);
      const fix = input.fix;
      let compiling = false;
      built = await withSpan(SPAN.buildCompile, compileSpan, () =>
        deps.toolchain.buildFromDiff({
          release: input.release,
          diff: fix.bytes,
          moduleName: input.moduleName,
          replace: input.replace,
          timeoutMs: deps.compileTimeoutMs,
          signal,
          onProfile: (line) => progress.log('fetch-headers', line),
          onLog: (line) => {
            // The profile is ready once klp-build speaks: from there on it is the diff's compile.
            if (!compiling) {
              compiling = true;
              enter('compile');
            }
            progress.log('compile', line);
          },
        }),
      );
    } else {
      enter('fetch-headers');
      progress.log('fetch-headers', `kernel build tree for ${input.release}`);
      const headers = await deps.toolchain.ensureHeaders(input.release, signal, (line) =>
        progress.log('fetch-headers', line),
      );
      for (const p of headers.packages) progress.log('fetch-headers', `${p.name} ${p.version}`);

      enter('compile');
      workDir = fs.mkdtempSync(path.join(deps.workRoot ?? os.tmpdir(), 'rebootless-build-'));
      const compileIn = workDir;
      const compiled = await withSpan(SPAN.buildCompile, compileSpan, () =>
        deps.toolchain.compileLivepatch({
          source: input.fix.bytes,
          moduleName: input.moduleName,
          headers,
          workDir: compileIn,
          timeoutMs: deps.compileTimeoutMs,
          signal,
          onLog: (line) => progress.log('compile', line),
        }),
      );
      diagnostics.push(...compiled.warnings);
      built = {
        module: fs.readFileSync(compiled.modulePath),
        vermagic: compiled.vermagic,
        toolchain: compiled.toolchain,
      };
    }

    const { module, vermagic } = built;
    checkVermagic(vermagic, input.release);
    // Before the builder's signature: a module that cannot load, never settles or upsets the
    // kernel is never published (klp-build's SUCCESS is not the last word).
    let smoke: events.SmokeTest | undefined;
    if (deps.toolchain.smokes(input.release)) {
      enter('smoke');
      smoke = await deps.toolchain.smokeTest({
        release: input.release,
        module,
        moduleName: input.moduleName,
        signal,
        onLog: (line) => progress.log('smoke', line),
      });
    } else {
      progress.log(stage, `not smoke-tested: this builder has no guest of ${input.release} (BUILDER_SMOKE)`);
    }

    enter('sign');
    const manifest: PatchManifest = {
      patchId: input.patchId,
      version: input.version,
      moduleName: input.moduleName,
      kernelRelease: input.release,
      vermagic,
      sha256: sha256Hex(module),
      sizeBytes: String(module.length),
      functions,
      replace: input.replace,
      cves: input.cves,
      severity: input.severity,
      toolchain: { ...built.toolchain, builder: deps.builderVersion },
      builtAt: new Date(deps.now()).toISOString(),
      description: input.description,
    };
    const signed = signManifest(manifest, deps.key);
    progress.log('sign', `sha256 ${manifest.sha256}, ${module.length} bytes, vermagic ${vermagic.trim()}`);

    enter('store');
    const { artifact, existing } = await deps.store.put({ module, signed });
    if (existing) {
      progress.log(
        'store',
        `an identical module was stored before (built ${artifact.manifest.builtAt}); its signed manifest stands`,
      );
    }
    progress.log('store', `stored as ${artifact.digest}`);
    return {
      kind: 'succeeded',
      artifact: {
        digest: artifact.digest,
        manifest: artifact.manifest,
        manifestHex: artifact.manifestBytes.toString('hex'),
        signatureHex: artifact.signature.toString('hex'),
      },
      functions: artifact.manifest.functions,
      diagnostics,
      reused: existing,
      ...(smoke ? { smoke } : {}),
    };
  } catch (error) {
    const failure = deps.failureOf(error, stage, signal);
    return { kind: 'failed', stage, code: failure.code, diagnostics: [...diagnostics, ...failure.diagnostics] };
  } finally {
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  }
}
