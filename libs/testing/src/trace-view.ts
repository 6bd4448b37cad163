// One trace out of what an OtlpReceiver collected, as a tree: for the e2e tests that assert a
// rollout (or a build) is one trace whose spans hang together across processes.
import type { ReceivedSpan } from './otlp-receiver';

export class TraceView {
  readonly spans: readonly ReceivedSpan[];
  private readonly byId = new Map<string, ReceivedSpan>();

  constructor(
    all: readonly ReceivedSpan[],
    readonly traceId: string,
  ) {
    this.spans = all.filter((s) => s.traceId === traceId);
    for (const span of this.spans) this.byId.set(span.spanId, span);
  }

  /** The services that have a span in the trace. */
  services(): Set<string> {
    return new Set(this.spans.map((s) => s.service));
  }

  parentOf(span: ReceivedSpan): ReceivedSpan | undefined {
    return span.parentSpanId ? this.byId.get(span.parentSpanId) : undefined;
  }

  childrenOf(span: ReceivedSpan): ReceivedSpan[] {
    return this.spans.filter((s) => s.parentSpanId === span.spanId);
  }

  /** The span's ancestors, nearest first. */
  ancestorsOf(span: ReceivedSpan): ReceivedSpan[] {
    const out: ReceivedSpan[] = [];
    const seen = new Set<string>([span.spanId]);
    for (let parent = this.parentOf(span); parent && !seen.has(parent.spanId); parent = this.parentOf(parent)) {
      seen.add(parent.spanId);
      out.push(parent);
    }
    return out;
  }

  /**
   * Spans whose parent is neither in the trace nor among `externalParents` (a caller's span the
   * test made up, say): a hop that lost its context, or spans not exported yet.
   */
  orphans(externalParents: readonly string[] = []): ReceivedSpan[] {
    const external = new Set(externalParents);
    return this.spans.filter((s) => s.parentSpanId && !this.byId.has(s.parentSpanId) && !external.has(s.parentSpanId));
  }

  /** The spans matching `match` (a name, or a predicate). */
  find(match: string | ((span: ReceivedSpan) => boolean)): ReceivedSpan[] {
    return this.spans.filter(typeof match === 'string' ? (s) => s.name === match : match);
  }

  /** An indented tree, `service "name" KIND`, children in start order: for failure messages. */
  describe(): string {
    const lines: string[] = [`trace ${this.traceId}: ${this.spans.length} spans`];
    const byStart = (a: ReceivedSpan, b: ReceivedSpan) =>
      a.startTimeUnixNano < b.startTimeUnixNano ? -1 : a.startTimeUnixNano > b.startTimeUnixNano ? 1 : 0;
    const visit = (span: ReceivedSpan, depth: number, seen: Set<string>) => {
      if (seen.has(span.spanId)) return;
      seen.add(span.spanId);
      lines.push(`${'  '.repeat(depth + 1)}${span.service} "${span.name}" ${span.kind} ${span.spanId}`);
      for (const child of this.childrenOf(span).sort(byStart)) visit(child, depth + 1, seen);
    };
    const seen = new Set<string>();
    const tops = this.spans.filter((s) => !s.parentSpanId || !this.byId.has(s.parentSpanId)).sort(byStart);
    for (const top of tops) visit(top, 0, seen);
    return lines.join('\n');
  }
}
