import { Controller, Inject, Logger } from '@nestjs/common';
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import { Observable } from 'rxjs';
import { dispatcher, events } from '@rebootless/contracts';
import { principalOf } from '@rebootless/trust';
import { toRpcException } from './dispatcher-errors';
import { RolloutEngine } from './rollout-engine';
import { RolloutOperations } from './rollout-operations';
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
  ) {}

  private async answer<T>(what: string, work: () => Promise<T> | T): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw toRpcException(error, what, this.logger);
    }
  }

  createRollout(request: dispatcher.CreateRolloutRequest, metadata?: Metadata, call?: Call) {
    return this.answer('CreateRollout', async () => ({
      rollout: await this.rollouts.create(typed(request), callerOf(metadata, call)),
    }));
  }

  getRollout(request: dispatcher.GetRolloutRequest) {
    return this.answer('GetRollout', () => ({ rollout: this.rollouts.get(request.rolloutId) }));
  }

  listRollouts(request: dispatcher.ListRolloutsRequest) {
    return this.answer('ListRollouts', () => this.rollouts.list(request));
  }

  watchRollout(request: dispatcher.WatchRolloutRequest): Observable<dispatcher.WatchRolloutResponse> {
    return new Observable((subscriber) => {
      let first: dispatcher.Rollout;
      try {
        first = this.rollouts.get(request.rolloutId);
      } catch (error) {
        subscriber.error(toRpcException(error, 'WatchRollout', this.logger));
        return undefined;
      }
      subscriber.next({ rollout: first, eventType: '' });
      if (FINAL.has(first.state)) {
        subscriber.complete();
        return undefined;
      }
      const stop = this.engine.watch(request.rolloutId, (rollout, eventType) => {
        subscriber.next({ rollout, eventType });
        if (FINAL.has(rollout.state)) subscriber.complete();
      });
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
    return this.answer('ApproveRollout', async () => ({
      rollout: await this.rollouts.approve(request.rolloutId, request.waveIndex, callerOf(metadata, call)),
    }));
  }

  undo(request: dispatcher.UndoRequest, metadata?: Metadata, call?: Call) {
    return this.answer('Undo', async () => ({
      rollout: await this.undos.undo(typed(request), callerOf(metadata, call)),
    }));
  }
}
