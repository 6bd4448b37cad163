import { builder, events } from '@rebootless/contracts';
import { uuidv7 } from '@rebootless/events';
import { InvalidPageTokenError, pageOf } from './build-listing';
import { evolve, newBuildRecord, type BuildRecord } from './build-record';

function build(at: number, patchId: string, failed = false): BuildRecord {
  const record = newBuildRecord({
    buildId: uuidv7(at),
    patchId,
    patchName: patchId,
    version: '1',
    description: '',
    cves: [],
    severity: events.Severity.SEVERITY_UNSPECIFIED,
    replace: false,
    moduleName: 'lp_x__v1',
    sourceKind: events.FixSourceKind.FIX_SOURCE_KIND_LIVEPATCH_MODULE,
    sourceSha256: '',
    submittedBy: { kind: events.ActorKind.ACTOR_KIND_USER, id: 'u', origin: '' },
    submittedAt: at,
    releases: ['6.1.0-56-cloud-amd64'],
  });
  if (!failed) return record;
  return [
    { kind: 'stage-started', release: '6.1.0-56-cloud-amd64', stage: 'compile', at } as const,
    { kind: 'kernel-failed', release: '6.1.0-56-cloud-amd64', code: 'INVALID_ARGUMENT', diagnostics: [], at } as const,
    { kind: 'finished', at } as const,
  ].reduce(evolve, record);
}

const builds = [build(1000, 'a'), build(2000, 'b', true), build(3000, 'a'), build(4000, 'a', true)];
const all = { pageSize: 0, pageToken: '', patchId: '', states: [] };

describe('listing builds', () => {
  it('Given builds, When listed in pages of two, Then newest first, and the token leads to the rest', () => {
    const first = pageOf(builds, { ...all, pageSize: 2 });
    const second = pageOf(builds, { ...all, pageSize: 2, pageToken: first.nextPageToken });

    expect(first.records.map((r) => r.submittedAt)).toEqual([4000, 3000]);
    expect(second.records.map((r) => r.submittedAt)).toEqual([2000, 1000]);
    expect(second.nextPageToken).toBe('');
  });

  it('Given filters, When listed, Then only the patch and the states asked for come back', () => {
    const page = pageOf(builds, { ...all, patchId: 'a', states: [builder.BuildState.BUILD_STATE_FAILED] });

    expect(page.records.map((r) => r.submittedAt)).toEqual([4000]);
  });

  it('Given a token this builder never gave, When listed, Then it is refused', () => {
    expect(() => pageOf(builds, { ...all, pageToken: 'bm9wZQ' })).toThrow(InvalidPageTokenError);
  });
});
