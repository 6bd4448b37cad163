import { builder, events } from '@rebootless/contracts';
import {
  BuildTransitionError,
  evolve,
  newBuildRecord,
  overallState,
  publishedArtifacts,
  toBuildMessage,
  type BuildRecord,
  type KernelArtifact,
} from './build-record';

const A = '6.1.0-56-cloud-amd64';
const B = '6.1.0-55-cloud-amd64';

function given(releases = [A, B]): BuildRecord {
  return newBuildRecord({
    buildId: '0190b6a0-0000-7000-8000-000000000001',
    patchId: 'cmdline-demo',
    patchName: 'cmdline-demo',
    version: '1.0.0',
    description: '',
    cves: [],
    severity: events.Severity.SEVERITY_UNSPECIFIED,
    replace: false,
    moduleName: 'lp_cmdline_demo__v1_0_0',
    sourceKind: events.FixSourceKind.FIX_SOURCE_KIND_LIVEPATCH_MODULE,
    sourceSha256: 'f'.repeat(64),
    submittedBy: { kind: events.ActorKind.ACTOR_KIND_USER, id: 'unauthenticated', origin: 'ipv4:127.0.0.1:5000' },
    submittedAt: 1000,
    releases,
  });
}

function artifact(release: string): KernelArtifact {
  return {
    digest: release.startsWith('6.1.0-56') ? 'a'.repeat(64) : 'b'.repeat(64),
    manifest: { vermagic: `${release} SMP preempt mod_unload modversions ` } as events.PatchManifest,
    manifestHex: '00',
    signatureHex: '00',
  };
}

const functions = [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }];

function run(record: BuildRecord, ...changes: Parameters<typeof evolve>[1][]): BuildRecord {
  return changes.reduce(evolve, record);
}

describe('a build and its kernel releases', () => {
  it('Given a new build, Then it is queued with every release queued', () => {
    const record = given();

    expect(overallState(record)).toBe('queued');
    expect(record.kernels.map((k) => [k.release, k.state, k.stage])).toEqual([
      [A, 'queued', 'queued'],
      [B, 'queued', 'queued'],
    ]);
  });

  it('Given one release compiling, Then the build runs, and the release shows its stage', () => {
    const record = run(given(), { kind: 'stage-started', release: A, stage: 'compile', at: 2000 });

    expect(overallState(record)).toBe('running');
    expect(record.kernels[0]).toMatchObject({ state: 'running', stage: 'compile', startedAt: 2000 });
  });

  it('Given both releases built, When it finishes, Then it succeeded and publishes both artifacts', () => {
    const record = run(
      given(),
      { kind: 'stage-started', release: A, stage: 'compile', at: 2000 },
      { kind: 'stage-started', release: B, stage: 'compile', at: 2000 },
      { kind: 'kernel-succeeded', release: A, artifact: artifact(A), functions, diagnostics: [], at: 3000 },
      { kind: 'kernel-succeeded', release: B, artifact: artifact(B), functions, diagnostics: [], at: 3100 },
      { kind: 'finished', at: 3200 },
    );

    expect(overallState(record)).toBe('succeeded');
    expect(toBuildMessage(record).state).toBe(builder.BuildState.BUILD_STATE_SUCCEEDED);
    expect(publishedArtifacts(record).map((p) => p.kernelRelease)).toEqual([A, B]);
  });

  it('Given one release failed to compile and the other built, Then the build failed and still publishes the one artifact', () => {
    const record = run(
      given(),
      { kind: 'stage-started', release: A, stage: 'compile', at: 2000 },
      { kind: 'kernel-succeeded', release: A, artifact: artifact(A), functions, diagnostics: [], at: 3000 },
      { kind: 'stage-started', release: B, stage: 'fetch-headers', at: 2000 },
      {
        kind: 'kernel-failed',
        release: B,
        code: 'NOT_FOUND',
        diagnostics: ['Debian has no linux-headers-6.1.0-55-cloud-amd64'],
        at: 3000,
      },
    );

    expect(overallState(record)).toBe('failed');
    expect(record.kernels[1]).toMatchObject({ state: 'failed', stage: 'fetch-headers', code: 'NOT_FOUND' });
    expect(publishedArtifacts(record).map((p) => p.kernelRelease)).toEqual([A]);
  });

  it('Given every release ended but events not yet written, Then callers still see it running', () => {
    const record = run(
      given([A]),
      { kind: 'stage-started', release: A, stage: 'compile', at: 2000 },
      { kind: 'kernel-failed', release: A, code: 'INVALID_ARGUMENT', diagnostics: ['x.c:3: error'], at: 3000 },
    );

    expect(toBuildMessage(record).state).toBe(builder.BuildState.BUILD_STATE_RUNNING);
    expect(toBuildMessage(run(record, { kind: 'finished', at: 3100 })).state).toBe(
      builder.BuildState.BUILD_STATE_FAILED,
    );
  });

  it('Given a cancel while one release compiles, Then the queued one is cancelled at once and the running one when its worker stops', () => {
    const cancelling = run(
      given(),
      { kind: 'stage-started', release: A, stage: 'compile', at: 2000 },
      { kind: 'cancel-requested', reason: 'wrong version', at: 2500 },
    );

    expect(cancelling.kernels.map((k) => k.state)).toEqual(['running', 'cancelled']);
    expect(cancelling.kernels[1]!.diagnostics).toEqual(['cancelled: wrong version']);
    expect(overallState(cancelling)).toBe('running');

    const cancelled = run(cancelling, {
      kind: 'kernel-failed',
      release: A,
      code: 'CANCELLED',
      diagnostics: ['cancelled: wrong version (during compile)'],
      at: 2600,
    });

    expect(overallState(cancelled)).toBe('cancelled');
    expect(publishedArtifacts(cancelled)).toEqual([]);
  });

  it('Given a finished build, When anything else happens to it, Then the change is refused', () => {
    const finished = run(
      given([A]),
      { kind: 'stage-started', release: A, stage: 'compile', at: 2000 },
      { kind: 'kernel-failed', release: A, code: 'INTERNAL', diagnostics: [], at: 3000 },
      { kind: 'finished', at: 3000 },
    );

    expect(() => evolve(finished, { kind: 'stage-started', release: A, stage: 'sign', at: 4000 })).toThrow(
      BuildTransitionError,
    );
  });

  it('Given a release still building, When the build is told to finish, Then it refuses', () => {
    expect(() => evolve(given(), { kind: 'finished', at: 1 })).toThrow(
      'cannot finish while a kernel release is still building',
    );
  });

  it('Given a queued release, When it is reported as succeeded without having run, Then the change is refused', () => {
    expect(() =>
      evolve(given(), {
        kind: 'kernel-succeeded',
        release: A,
        artifact: artifact(A),
        functions,
        diagnostics: [],
        at: 1,
      }),
    ).toThrow('only a running part succeeds');
  });
});
