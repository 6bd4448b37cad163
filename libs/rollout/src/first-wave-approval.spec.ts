import { events } from '@rebootless/contracts';
import { RolloutForbiddenError, RolloutInputError } from './errors';
import { firstWaveApproval, type FirstWaveApprovalRequest } from './first-wave-approval';
import { effectiveStrategy } from './wave-planner';

const given = (overrides: Partial<FirstWaveApprovalRequest> = {}): FirstWaveApprovalRequest => ({
  skipApproval: false,
  allowForce: false,
  allowDowngrade: false,
  strategy: effectiveStrategy({
    ...effectiveStrategy(undefined),
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
  }),
  ...overrides,
});
const releaseManager = { id: 'rita', mayWaiveApproval: true };
const operator = { id: 'alice', mayWaiveApproval: false };

describe('firstWaveApproval', () => {
  it('Given a request that does not opt out, When planned, Then the first wave waits for an approval, whoever asks', () => {
    for (const creator of [operator, releaseManager]) {
      expect(firstWaveApproval(given(), creator)).toEqual({
        strategy: expect.objectContaining({ approvalBeforeFirstWave: true }),
        approvalWaived: false,
      });
    }
  });

  it('Given an explicit opt-out by a release manager, When planned, Then no approval is needed and the waiver is recorded', () => {
    expect(firstWaveApproval(given({ skipApproval: true }), releaseManager)).toEqual({
      strategy: expect.objectContaining({ approvalBeforeFirstWave: false }),
      approvalWaived: true,
    });
  });

  it('Given an opt-out by a plain operator, When planned, Then it is forbidden naming the role it needs', () => {
    const attempt = () => firstWaveApproval(given({ skipApproval: true }), operator);
    expect(attempt).toThrow(RolloutForbiddenError);
    expect(attempt).toThrow(
      'alice may not start a rollout without an approval: skip_approval needs the release-manager role',
    );
  });

  it.each([
    [{ allowForce: true }, 'allow_force'],
    [{ allowDowngrade: true }, 'allow_downgrade'],
    [{ allowForce: true, allowDowngrade: true }, 'allow_force and allow_downgrade'],
  ])('Given an opt-out with %j, When planned, Then it is refused even for a release manager', (risky, named) => {
    const attempt = () => firstWaveApproval(given({ skipApproval: true, ...risky }), releaseManager);
    expect(attempt).toThrow(RolloutInputError);
    expect(attempt).toThrow(`skip_approval: a rollout with ${named} always needs an approver other than its creator`);
  });

  it('Given allow_force without an opt-out, When planned, Then the approval is required', () => {
    expect(firstWaveApproval(given({ allowForce: true, allowDowngrade: true }), releaseManager).strategy).toMatchObject(
      { approvalBeforeFirstWave: true },
    );
  });

  it('Given an opt-out with a strategy that asks for the approval, When planned, Then the contradiction is refused', () => {
    const strategy = { ...given().strategy, approvalBeforeFirstWave: true };
    expect(() => firstWaveApproval(given({ skipApproval: true, strategy }), releaseManager)).toThrow(
      'skip_approval: contradicts strategy.approval_before_first_wave',
    );
  });
});
