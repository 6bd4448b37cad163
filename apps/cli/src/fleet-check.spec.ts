import { ledger } from '@rebootless/contracts';
import { checkResult, upgradeRollouts } from './fleet-check';

const V = ledger.HostVerdict;

function host(hostId: string, verdict: ledger.HostVerdict, extra: Partial<ledger.Host> = {}): ledger.Host {
  return {
    facts: undefined,
    stack: undefined,
    rebootRequired: false,
    enrolledAt: undefined,
    lastSeenAt: undefined,
    online: true,
    verdict,
    verdictReasons: [],
    missingPatches: [],
    ...extra,
    ...{ facts: { hostId } as ledger.Host['facts'] },
  };
}

describe('hosts check', () => {
  it('given every host up to date, says OK with the counts as performance data', () => {
    const result = checkResult([host('web-1', V.HOST_VERDICT_UP_TO_DATE), host('web-2', V.HOST_VERDICT_UP_TO_DATE)]);
    expect(result.state).toBe(0);
    expect(result.text).toBe(
      'REBOOTLESS OK - 2 of 2 hosts up to date | exposed_past_deadline=0 drift=0 offline=0 reboot_required=0 patch_missing=0 up_to_date=2',
    );
  });

  it('given a host missing a patch, says WARNING and names it with its reasons on the next line', () => {
    const result = checkResult([
      host('web-1', V.HOST_VERDICT_UP_TO_DATE),
      host('web-2', V.HOST_VERDICT_PATCH_MISSING, { verdictReasons: ['published for 6.1 and not live: nft 2'] }),
    ]);
    expect(result.state).toBe(1);
    expect(result.text.split('\n')).toEqual([
      'REBOOTLESS WARNING - 1 of 2 hosts need attention: web-2 patch missing | exposed_past_deadline=0 drift=0 offline=0 reboot_required=0 patch_missing=1 up_to_date=1',
      'web-2: patch missing; published for 6.1 and not live: nft 2',
    ]);
  });

  it('is CRITICAL when one host is exposed past deadline, whatever the others', () => {
    expect(
      checkResult([
        host('a', V.HOST_VERDICT_OFFLINE),
        host('b', V.HOST_VERDICT_EXPOSED_PAST_DEADLINE),
        host('c', V.HOST_VERDICT_REBOOT_REQUIRED),
      ]).state,
    ).toBe(2);
  });

  it('is UNKNOWN for an offline host, no host at all, or a ledger that gives no verdict', () => {
    expect(checkResult([host('a', V.HOST_VERDICT_OFFLINE), host('b', V.HOST_VERDICT_PATCH_MISSING)]).state).toBe(3);
    expect(checkResult([]).text).toMatch(/^REBOOTLESS UNKNOWN - no host matches the selection \|/);
    expect(checkResult([host('a', V.HOST_VERDICT_UNSPECIFIED)]).state).toBe(3);
  });
});

describe('upgrade', () => {
  it('plans one rollout per patch version, for exactly the hosts that miss it, in the order they are missed', () => {
    const nft = { patchId: 'nft', version: '2' };
    const cum = { patchId: 'cumulative', version: '7' };
    expect(
      upgradeRollouts([
        host('web-1', V.HOST_VERDICT_PATCH_MISSING, { missingPatches: [nft, cum] }),
        host('web-2', V.HOST_VERDICT_UP_TO_DATE),
        host('web-3', V.HOST_VERDICT_PATCH_MISSING, { missingPatches: [cum] }),
      ]),
    ).toEqual([
      { patch: nft, hostIds: ['web-1'] },
      { patch: cum, hostIds: ['web-1', 'web-3'] },
    ]);
  });
});
