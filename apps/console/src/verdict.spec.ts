import { VERDICTS, verdictOf } from './verdict';

describe('verdictOf: the ledger’s verdict, named for the console', () => {
  it('Given each verdict the ledger gives, Then the console names it, keeping the ledger’s reasons and missing patches', () => {
    const host = {
      verdict: 'HOST_VERDICT_PATCH_MISSING',
      verdictReasons: ['patch missing: cve-2024-1086 1.0.0 is published for 6.1.0-18-cloud-amd64 and not live'],
      missingPatches: [{ patchId: 'cve-2024-1086', version: '1.0.0' }],
    };
    expect(verdictOf(host)).toEqual({
      verdict: 'patch-missing',
      reasons: ['patch missing: cve-2024-1086 1.0.0 is published for 6.1.0-18-cloud-amd64 and not live'],
      missing: [{ patchId: 'cve-2024-1086', version: '1.0.0' }],
    });
    expect(
      [
        'HOST_VERDICT_EXPOSED_PAST_DEADLINE',
        'HOST_VERDICT_DRIFT',
        'HOST_VERDICT_OFFLINE',
        'HOST_VERDICT_REBOOT_REQUIRED',
        'HOST_VERDICT_PATCH_MISSING',
        'HOST_VERDICT_UP_TO_DATE',
      ].map((v) => verdictOf({ verdict: v }).verdict),
    ).toEqual(VERDICTS.slice(0, 6));
  });

  it('Given a ledger that gave no verdict, Then it is unknown, never a guess', () => {
    expect(verdictOf({ verdict: 'HOST_VERDICT_UNSPECIFIED' })).toEqual({
      verdict: 'unknown',
      reasons: [],
      missing: [],
    });
    expect(verdictOf({})).toMatchObject({ verdict: 'unknown' });
  });
});
