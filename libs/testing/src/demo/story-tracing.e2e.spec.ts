// `npm start -- --tracing` as a user runs it: scripts/stack.mjs up --tracing as a real process
// (fresh topic, fresh stack dir, free ports, a small fleet) starts Zipkin from the cached
// zipkin-server exec jar, points every process at it, and the story tells the link to its
// rollout's trace. The story creates the rollout with the rebootless CLI, as an operator would.
// That trace is then read the way a person's browser reads it, through Zipkin's API: one trace,
// rooted at the CLI's command, through the dispatcher, the agents, the Kafka records and the ledger. Build first (`npm run build`); Maven fetches the jar once.
import * as fs from 'node:fs';
import { freePort } from '../fleet/rig';
import { type StoryStack, startStoryStack } from './story-stack';

// Bounds on waiting for real processes (a JVM, a compile, a rollout); they measure nothing.
jest.setTimeout(15 * 60_000);

interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  kind?: string;
  localEndpoint?: { serviceName?: string };
}

describe('npm start -- --tracing: the rollout’s trace in Zipkin', () => {
  let story: StoryStack;
  let stderr = '';
  let zipkinPort: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let result: any;

  beforeAll(async () => {
    zipkinPort = await freePort();
    story = await startStoryStack({
      name: 'tracing',
      agents: 5,
      args: ['--tracing'],
      env: { ZIPKIN_PORT: String(zipkinPort) },
    });
    result = await story.result(13 * 60_000);
    stderr = story.stderr();
    if (!result.ok) throw new Error(`the stack failed: ${result.error}\n${stderr}`);
  });

  afterAll(async () => {
    await story?.stop();
    if (story?.dir) fs.rmSync(story.dir, { recursive: true, force: true });
  });

  it('tells the link to the rollout’s trace on Zipkin’s loopback port', () => {
    const trace = result.story.rollout.trace;
    expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(trace.link).toBe(`http://127.0.0.1:${zipkinPort}/zipkin/traces/${trace.traceId}`);
    expect(stderr).toContain(`its trace, from the operator's command to every host and the ledger: ${trace.link}`);
    expect(result.zipkin).toMatchObject({ port: zipkinPort, url: `http://127.0.0.1:${zipkinPort}/zipkin/` });
  });

  it('Zipkin’s API holds one trace rooted at the CLI, spanning the dispatcher, the agents, Kafka and the ledger', async () => {
    const { traceId } = result.story.rollout.trace as { traceId: string };
    const url = `http://127.0.0.1:${zipkinPort}/api/v2/trace/${traceId}`;
    const services = (spans: ZipkinSpan[]) => new Set(spans.map((s) => s.localEndpoint?.serviceName));
    const complete = (spans: ZipkinSpan[]) =>
      ['cli', 'dispatcher', 'agent', 'ledger'].every((name) => services(spans).has(name)) &&
      spans.some((s) => s.kind === 'PRODUCER');
    let spans: ZipkinSpan[] = [];
    const deadline = Date.now() + 60_000;
    while (!complete(spans)) {
      if (Date.now() > deadline)
        throw new Error(`trace ${traceId} in Zipkin after 60 s: ${[...services(spans)].join(', ')}`);
      await new Promise((r) => setTimeout(r, 1000));
      const response = await fetch(url);
      spans = response.status === 404 ? [] : ((await response.json()) as ZipkinSpan[]);
    }
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]));
    // Every span hangs from one root: the CLI's command span, with no parent at all.
    const ids = new Set(spans.map((s) => s.id));
    const roots = spans.filter((s) => !s.parentId || !ids.has(s.parentId));
    expect(roots.map((s) => [s.localEndpoint?.serviceName, s.name, s.parentId])).toEqual([
      ['cli', 'rebootless rollout create', undefined],
    ]);
    // The CLI's gRPC call to the dispatcher is under it, and the dispatcher's CreateRollout under that.
    const byId = new Map(spans.map((s) => [s.id, s]));
    const created = spans.filter(
      (s) =>
        s.localEndpoint?.serviceName === 'dispatcher' && s.kind === 'SERVER' && /createrollout/i.test(s.name ?? ''),
    );
    expect(created).toHaveLength(1);
    expect(byId.get(created[0]!.parentId ?? '')?.localEndpoint?.serviceName).toBe('cli');
    // The agents' transitions are in it, and the ledger's projections of the events they sent.
    const named = (service: string) =>
      spans.filter((s) => s.localEndpoint?.serviceName === service).map((s) => s.name ?? '');
    expect(named('agent').some((n) => n.includes('transition'))).toBe(true);
    expect(named('ledger').some((n) => n.includes('projection'))).toBe(true);
  });

  it('Ctrl-C stops Zipkin with the rest', async () => {
    expect(await story.stop()).toBe(0);
    const answered = await fetch(`http://127.0.0.1:${zipkinPort}/health`).then(
      () => true,
      () => false,
    );
    expect(answered).toBe(false);
  });
});
