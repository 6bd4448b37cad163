// One rollout, one trace (issue 8). A rollout's waves run long after the CreateRollout (or Undo)
// call returned, from the engine's ticks, so the context of that call is kept per rollout and
// each wave is a `rollout wave` span under it: a child, not a link, although the call span has
// ended by then, because the operator asks about the rollout as one trace. The wave span is open
// from WaveStarted to WaveCompleted; the events written in it (their Kafka producer spans) and
// the commands sent to agents (their traceparent) hang from it. Approve/Resume calls are traces
// of their own: the wave they release links to them. In memory only: a restarted dispatcher
// continues its rollouts in new traces, one per wave (ADR 0008).
import type { dispatcher } from '@rebootless/contracts';
import type { RolloutEvent } from '@rebootless/rollout';
import {
  ATTR,
  ROOT_CONTEXT,
  SPAN,
  activeSpanLink,
  captureTraceContext,
  startDomainSpan,
  traceFields,
  type Context,
  type Link,
  type Span,
} from '@rebootless/telemetry';

type TraceFields = Pick<dispatcher.ConnectResponse, 'traceparent' | 'tracestate'>;

export class RolloutTraces {
  /** The context of the call that created each rollout. */
  private readonly created = new Map<string, Context>();
  private readonly waves = new Map<string, { span: Span; context: Context }>();
  /** Approve/Resume calls waiting for the wave they release. */
  private readonly releases = new Map<string, Link[]>();

  /** The context each event is written (and its effect carried out) in, in order; call before writing. */
  contextsFor(chunk: readonly RolloutEvent[]): Context[] {
    return chunk.map((e) => {
      const id = e.data.rolloutId;
      switch (e.type) {
        case 'RolloutCreated':
          this.created.set(id, captureTraceContext());
          return captureTraceContext();
        case 'RolloutApproved':
        case 'RolloutResumed': {
          const link = activeSpanLink();
          if (link) this.releases.set(id, [...(this.releases.get(id) ?? []), link]);
          return captureTraceContext();
        }
        case 'WaveStarted': {
          this.waves.get(id)?.span.end();
          const links = this.releases.get(id);
          this.releases.delete(id);
          const wave = startDomainSpan(
            SPAN.rolloutWave,
            {
              [ATTR.rolloutId]: id,
              [ATTR.wave]: e.data.waveIndex,
              'rebootless.rollout.wave.hosts': e.data.hostIds.length,
            },
            { parent: this.created.get(id) ?? ROOT_CONTEXT, ...(links ? { links } : {}) },
          );
          this.waves.set(id, wave);
          return wave.context;
        }
        default:
          return this.current(id);
      }
    });
  }

  /** After the chunk is written: waves that completed end, finished rollouts are forgotten. */
  written(chunk: readonly RolloutEvent[]): void {
    for (const e of chunk) {
      const id = e.data.rolloutId;
      if (e.type === 'WaveCompleted') {
        this.waves.get(id)?.span.end();
        this.waves.delete(id);
      } else if (e.type === 'RolloutCompleted' || (e.type === 'RolloutAborted' && !e.data.rollBack)) {
        this.waves.get(id)?.span.end();
        this.waves.delete(id);
        this.created.delete(id);
        this.releases.delete(id);
      }
    }
  }

  /** The traceparent for a command of the rollout sent again later (an agent that reconnected). */
  commandFields(rolloutId: string): TraceFields {
    return traceFields(this.current(rolloutId));
  }

  private current(rolloutId: string): Context {
    // A rollout created before this dispatcher started: a trace of its own, rather than whatever
    // woke the tick up (an agent's stream, say).
    return this.waves.get(rolloutId)?.context ?? this.created.get(rolloutId) ?? ROOT_CONTEXT;
  }
}
