import { Controller, Inject, Logger } from '@nestjs/common';
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { Observable } from 'rxjs';
import { dispatcher, events } from '@rebootless/contracts';
import { APPROVAL_WAIVER_ROLE } from '@rebootless/rollout';
import { principalOf } from '@rebootless/trust';
import { EVENT_PUBLISHER, callDenied } from '@rebootless/service';
import type { EventPublisher } from '@rebootless/kafka';
import { status } from '@grpc/grpc-js';
import { DISPATCHER_ERRORS, InvalidRequestError } from './dispatcher-errors';
import { RolloutEngine } from './rollout-engine';
import { RolloutOperations, requireView } from './rollout-operations';
import { QuarantineOperation } from './quarantine-operation';
import { UndoOperation } from './undo-operation';

type Call = ServerUnaryCall<unknown, unknown> | undefined;

/** Who called: the token's subject when there is one, and where from. */
function callerOf(metadata: Metadata | undefined, call: Call): events.Actor {
  const principal = principalOf(metadata);
  return {
    kind: events.ActorKind.ACTOR_KIND_USER,
    id: principal?.user?.sub ?? principal?.identity?.id ?? 'unauthenticated',
    origin: call?.getPeer() ?? '',
  };
}

/**
 * Whether the caller may start a rollout without an approval: a token holding the release-manager
 * role. Without authentication at all (REBOOTLESS_INSECURE, tests only) there is no second person
 * to ask either, so the explicit opt-out is taken as it comes.
 */
function mayWaiveApproval(metadata: Metadata | undefined): boolean {
  const principal = principalOf(metadata);
  if (!principal) return true;
  return (principal.user?.roles as readonly string[] | undefined)?.includes(APPROVAL_WAIVER_ROLE) ?? false;
}

/**
 * The runtime loader hands unset message fields over as null where the generated types say
 * undefined; requests are made to match the types once, here.
 */
function typed<T>(request: T): T {
  return strip(request) as T;
}

function strip(value: unknown): unknown {
  if (value === null) return undefined;
  if (Array.isArray(value)) return value.map(strip);
  if (typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .map(([k, v]) => [k, strip(v)])
        .filter(([, v]) => v !== undefined),
    );
  }
  return value;
}

function statusOf(error: RpcException): number | undefined {
  const body = error.getError();
  return typeof body === 'object' && body !== null && 'code' in body ? Number(body.code) : undefined;
}

const FINAL = new Set([
  dispatcher.RolloutState.ROLLOUT_STATE_COMPLETED,
  dispatcher.RolloutState.ROLLOUT_STATE_ABORTED,
  dispatcher.RolloutState.ROLLOUT_STATE_ROLLED_BACK,
]);

/** Serves rebootless.dispatcher.v1.RolloutService: decoding, status mapping, streams; the work is RolloutOperations'. */
@Controller()
@dispatcher.RolloutServiceControllerMethods()
export class RolloutController implements dispatcher.RolloutServiceController {
  private readonly logger = new Logger('RolloutService');

  constructor(
    @Inject(RolloutOperations) private readonly rollouts: RolloutOperations,
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(UndoOperation) private readonly undos: UndoOperation,
    @Inject(QuarantineOperation) private readonly quarantines: QuarantineOperation,
    @Inject(EVENT_PUBLISHER) private readonly events: EventPublisher,
  ) {}

  private async answer<T>(what: string, work: () => Promise<T> | T, caller?: events.Actor): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const rpc = DISPATCHER_ERRORS.toRpcException(error, what, this.logger);
      if (caller && statusOf(rpc) === status.PERMISSION_DENIED) {
        await this.recordDenied(what, caller, error instanceof Error ? error.message : String(error));
      }
      throw rpc;
    }
  }

  /** A refusal the access table could not make (it needs the rollout) is audited like the table's. */
  private async recordDenied(what: string, caller: events.Actor, reason: string): Promise<void> {
    const denied = callDenied('dispatcher', {
      method: `/rebootless.dispatcher.v1.RolloutService/${what}`,
      code: 'PERMISSION_DENIED',
      reason,
      subject: `user:${caller.id}`,
      certificateIdentity: '',
      peer: caller.origin,
    });
    await this.events
      .publish(denied)
      .catch((e: unknown) => this.logger.error(`could not record a denied call: ${String(e)}`));
  }

  createRollout(request: dispatcher.CreateRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('CreateRollout', async () => ({
      rollout: await this.rollouts.create(typed(request), callerOf(metadata, call), mayWaiveApproval(metadata)),
    }));
  }

  getRollout(request: dispatcher.GetRolloutRequest) {
    return this.answer('GetRollout', () => ({ rollout: this.rollouts.get(request.rolloutId, request.view) }));
  }

  listRollouts(request: dispatcher.ListRolloutsRequest) {
    return this.answer('ListRollouts', () => this.rollouts.list(request));
  }

  watchRollout(request: dispatcher.WatchRolloutRequest): Observable<dispatcher.WatchRolloutResponse> {
    return new Observable((subscriber) => {
      let first: dispatcher.Rollout;
      let view: dispatcher.RolloutView;
      try {
        view = requireView(request.view);
        first = this.rollouts.get(request.rolloutId, view);
      } catch (error) {
        subscriber.error(DISPATCHER_ERRORS.toRpcException(error, 'WatchRollout', this.logger));
        return undefined;
      }
      subscriber.next({ rollout: first, eventType: '' });
      if (FINAL.has(first.state)) {
        subscriber.complete();
        return undefined;
      }
      const stop = this.engine.watch(
        request.rolloutId,
        (rollout, eventType) => {
          subscriber.next({ rollout, eventType });
          if (FINAL.has(rollout.state)) subscriber.complete();
        },
        view,
      );
      return stop;
    });
  }

  pauseRollout(request: dispatcher.PauseRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('PauseRollout', async () => ({
      rollout: await this.rollouts.pause(request.rolloutId, request.reason, callerOf(metadata, call)),
    }));
  }

  resumeRollout(request: dispatcher.ResumeRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('ResumeRollout', async () => ({
      rollout: await this.rollouts.resume(request.rolloutId, callerOf(metadata, call)),
    }));
  }

  abortRollout(request: dispatcher.AbortRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('AbortRollout', async () => ({
      rollout: await this.rollouts.abort(request.rolloutId, request.reason, callerOf(metadata, call)),
    }));
  }

  rollbackRollout(request: dispatcher.RollbackRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('RollbackRollout', async () => ({
      rollout: await this.rollouts.rollBack(request.rolloutId, request.reason, callerOf(metadata, call)),
    }));
  }

  approveRollout(request: dispatcher.ApproveRolloutRequest, metadata?: Metadata, call?: Call) {
    const caller = callerOf(metadata, call);
    return this.answer(
      'ApproveRollout',
      async () => ({ rollout: await this.rollouts.approve(request.rolloutId, request.waveIndex, caller) }),
      caller,
    );
  }

  revokeAgentKey(request: dispatcher.RevokeAgentKeyRequest, metadata?: Metadata, call?: Call) {
    return this.answer('RevokeAgentKey', async () => {
      const hostId = (request.hostId ?? '').trim();
      const reason = (request.reason ?? '').trim();
      if (!hostId) throw new InvalidRequestError('host_id', 'is required');
      if (!reason) throw new InvalidRequestError('reason', 'is required: say why, for the audit trail');
      return this.engine.revokeAgentKey(hostId, request.epoch ?? 0, reason, callerOf(metadata, call));
    });
  }

  undo(request: dispatcher.UndoRequest, metadata?: Metadata, call?: Call) {
    return this.answer('Undo', async () => ({
      rollout: await this.undos.undo(typed(request), callerOf(metadata, call)),
    }));
  }

  clearQuarantine(request: dispatcher.ClearQuarantineRequest, metadata?: Metadata, call?: Call) {
    return this.answer('ClearQuarantine', () => this.quarantines.clear(typed(request), callerOf(metadata, call)));
  }
}
