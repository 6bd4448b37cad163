// RolloutTraces against the real SDK with an in-memory exporter: which context each of a
// rollout's events is written in, and when its wave spans start and end. The whole path across
// processes is proved by apps/cli/src/rollout-trace.e2e.spec.ts.
import { context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import type { RolloutEvent } from '@rebootless/rollout';
import { withSpan } from '@rebootless/telemetry';
import { RolloutTraces } from './rollout-traces';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
beforeAll(() => provider.register());
afterEach(() => exporter.reset());
afterAll(() => provider.shutdown());

const ID = 'r-1';
// Only the fields RolloutTraces reads; the rest of each payload does not matter here.
const event = (type: RolloutEvent['type'], data: object = {}) =>
  ({ type, data: { rolloutId: ID, ...data } }) as unknown as RolloutEvent;
const spanIdIn = (ctx: ReturnType<typeof context.active>) => trace.getSpan(ctx)?.spanContext().spanId;
const finished = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);

describe('RolloutTraces', () => {
  it('puts each wave under the creating call, writes its events and commands in it, links the approval', async () => {
    const traces = new RolloutTraces();
    // The CreateRollout handler writes RolloutCreated in the call's span.
    const [createdIn] = await withSpan('CreateRollout', {}, () => traces.contextsFor([event('RolloutCreated')]));
    const call = finished('CreateRollout')[0]!;
    expect(spanIdIn(createdIn!)).toBe(call.spanContext().spanId);

    await withSpan('ApproveRollout', {}, () => traces.contextsFor([event('RolloutApproved')]));
    const approval = finished('ApproveRollout')[0]!;

    // Later, from a tick that knows nothing of the call: wave 0 starts, its host is asked.
    const round = context.with(trace.deleteSpan(context.active()), () =>
      traces.contextsFor([
        event('WaveStarted', { waveIndex: 0, hostIds: ['h-1'] }),
        event('HostApplyRequested', { hostId: 'h-1' }),
      ]),
    );
    expect(round[0]).toBe(round[1]);
    expect(finished('rollout wave')).toEqual([]);
    expect(traces.commandFields(ID).traceparent).toContain(spanIdIn(round[0]!));

    // WaveCompleted is written in the wave; the wave ends once it is written.
    const [completedIn] = traces.contextsFor([event('WaveCompleted', { waveIndex: 0 })]);
    expect(completedIn).toBe(round[0]);
    traces.written([event('WaveCompleted', { waveIndex: 0 })]);
    const [wave] = finished('rollout wave');
    expect(wave!.parentSpanContext?.spanId).toBe(call.spanContext().spanId);
    expect(wave!.spanContext().traceId).toBe(call.spanContext().traceId);
    expect(wave!.attributes).toEqual({
      'rebootless.rollout.id': ID,
      'rebootless.rollout.wave': 0,
      'rebootless.rollout.wave.hosts': 1,
    });
    expect(wave!.links.map((l) => l.context.spanId)).toEqual([approval.spanContext().spanId]);

    // Between waves and at the end: the call's context; after the end the rollout is forgotten.
    const [doneIn] = traces.contextsFor([event('RolloutCompleted')]);
    expect(spanIdIn(doneIn!)).toBe(call.spanContext().spanId);
    traces.written([event('RolloutCompleted')]);
    expect(traces.commandFields(ID)).toEqual({});
  });

  it('gives a rollout it did not see created (a dispatcher restart) a trace of its own', async () => {
    const traces = new RolloutTraces();
    const [waveIn] = await withSpan('an agent stream', {}, () =>
      traces.contextsFor([event('WaveStarted', { waveIndex: 1, hostIds: [] })]),
    );
    traces.written([event('RolloutAborted', { rollBack: false })]);
    const [wave] = finished('rollout wave');
    expect(spanIdIn(waveIn!)).toBe(wave!.spanContext().spanId);
    expect(wave!.parentSpanContext).toBeUndefined();
  });
});
