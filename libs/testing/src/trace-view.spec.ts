import type { ReceivedSpan } from './otlp-receiver';
import { TraceView } from './trace-view';

const T = 'a'.repeat(32);
let clock = 0n;
const span = (service: string, name: string, spanId: string, parentSpanId?: string, traceId = T): ReceivedSpan => ({
  service,
  resource: {},
  scope: 'test',
  traceId,
  spanId,
  ...(parentSpanId ? { parentSpanId } : {}),
  name,
  kind: 'INTERNAL',
  startTimeUnixNano: (clock += 1n),
  endTimeUnixNano: clock + 100n,
  attributes: {},
  links: [],
  status: { code: 0 },
});

// cli command → dispatcher wave → agent transition; a ledger projection whose parent never arrived.
const spans = [
  span('cli', 'rebootless rollout create', 'c1', 'caller'),
  span('dispatcher', 'rollout wave', 'd1', 'c1'),
  span('agent', 'agent transition', 'a1', 'd1'),
  span('ledger', 'ledger projection', 'l1', 'lost'),
  span('builder', 'another trace', 'x1', undefined, 'b'.repeat(32)),
];

describe('TraceView', () => {
  const view = new TraceView(spans, T);

  it('keeps only the spans of its trace and names their services', () => {
    expect(view.spans).toHaveLength(4);
    expect([...view.services()].sort()).toEqual(['agent', 'cli', 'dispatcher', 'ledger']);
  });

  it('walks parents: the agent transition descends from the wave and the command', () => {
    const [transition] = view.find('agent transition');
    expect(view.ancestorsOf(transition!).map((s) => s.name)).toEqual(['rollout wave', 'rebootless rollout create']);
    expect(view.childrenOf(view.find('rollout wave')[0]!).map((s) => s.spanId)).toEqual(['a1']);
  });

  it('reports a span whose parent is missing, unless the test said that parent is outside', () => {
    expect(view.orphans(['caller']).map((s) => s.spanId)).toEqual(['l1']);
    expect(view.orphans().map((s) => s.spanId)).toEqual(['c1', 'l1']);
  });

  it('prints the tree for failure messages', () => {
    expect(view.describe()).toBe(
      [
        `trace ${T}: 4 spans`,
        '  cli "rebootless rollout create" INTERNAL c1',
        '    dispatcher "rollout wave" INTERNAL d1',
        '      agent "agent transition" INTERNAL a1',
        '  ledger "ledger projection" INTERNAL l1',
      ].join('\n'),
    );
  });
});
