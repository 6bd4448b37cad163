// Approval by default (ADR 0013): a rollout's first wave waits for an approver other than its
// creator, unless the creator explicitly opts out and holds a role allowed to. Forcing a stalled
// transition and loading an older version always need that second person.
import type { events } from '@rebootless/contracts';
import { RolloutForbiddenError, RolloutInputError } from './errors';

/** The role whose holders may start a rollout without an approval. */
export const APPROVAL_WAIVER_ROLE = 'release-manager';

export interface FirstWaveApprovalRequest {
  /** The creator asked to start without an approval (CreateRolloutRequest.skip_approval). */
  skipApproval: boolean;
  allowForce: boolean;
  allowDowngrade: boolean;
  /** The creator's strategy, defaults filled in. */
  strategy: events.RolloutStrategy;
}

export interface Creator {
  /** Who asks, for the refusal's message. */
  id: string;
  /** The creator holds APPROVAL_WAIVER_ROLE (or the service runs without authentication at all). */
  mayWaiveApproval: boolean;
}

/** The strategy the rollout runs with, and whether its approval was waived (for RolloutCreated). */
export function firstWaveApproval(
  request: FirstWaveApprovalRequest,
  creator: Creator,
): { strategy: events.RolloutStrategy; approvalWaived: boolean } {
  if (!request.skipApproval) {
    return { strategy: { ...request.strategy, approvalBeforeFirstWave: true }, approvalWaived: false };
  }
  const risky = [request.allowForce && 'allow_force', request.allowDowngrade && 'allow_downgrade'].filter(Boolean);
  if (risky.length > 0) {
    throw new RolloutInputError(
      'skip_approval',
      `a rollout with ${risky.join(' and ')} always needs an approver other than its creator`,
    );
  }
  if (request.strategy.approvalBeforeFirstWave) {
    throw new RolloutInputError('skip_approval', 'contradicts strategy.approval_before_first_wave');
  }
  if (!creator.mayWaiveApproval) {
    throw new RolloutForbiddenError(
      `${creator.id} may not start a rollout without an approval: skip_approval needs the ${APPROVAL_WAIVER_ROLE} role`,
    );
  }
  return { strategy: { ...request.strategy, approvalBeforeFirstWave: false }, approvalWaived: true };
}
