// An OTLP/HTTP trace receiver a test runs in its own process: services started as real
// processes export to it (OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint) and the test reads
// their spans. It accepts both encodings of POST /v1/traces: http/protobuf (the exporters'
// default, decoded field by field after opentelemetry-proto's trace.proto) and http/json.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

export type AttributeValue = string | number | boolean | null | AttributeValue[];

/** SpanKind as opentelemetry-proto numbers it. */
export const OTLP_SPAN_KIND = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;
export type OtlpSpanKind = (typeof OTLP_SPAN_KIND)[number];

export interface ReceivedLink {
  readonly traceId: string;
  readonly spanId: string;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

export interface ReceivedSpan {
  /** `service.name` of the resource that exported it. */
  readonly service: string;
  readonly resource: Readonly<Record<string, AttributeValue>>;
  /** The instrumentation scope (e.g. @opentelemetry/instrumentation-grpc, rebootless). */
  readonly scope: string;
  /** Lower-case hex, as in a traceparent header. */
  readonly traceId: string;
  readonly spanId: string;
  /** Absent for a root span. */
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: OtlpSpanKind;
  readonly startTimeUnixNano: bigint;
  readonly endTimeUnixNano: bigint;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  readonly links: readonly ReceivedLink[];
  /** 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message?: string };
}

export class OtlpReceiver {
  private readonly received: ReceivedSpan[] = [];
  private readonly waiters = new Set<() => void>();
  /** Export requests seen, by content type; a test can check which encoding a service used. */
  readonly requests: { contentType: string; spans: number }[] = [];
  /** Requests it could not decode (answered 400); a test should expect none. */
  readonly rejected: string[] = [];

  private constructor(
    private readonly server: Server,
    /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporters append /v1/traces). */
    readonly endpoint: string,
  ) {}

  static async start(): Promise<OtlpReceiver> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const receiver = new OtlpReceiver(server, `http://127.0.0.1:${port}`);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void receiver.handle(req, res));
    return receiver;
  }

  /** Every span received so far, in arrival order. */
  spans(): readonly ReceivedSpan[] {
    return this.received;
  }

  /** Resolves with all spans once `done(spans)` holds; rejects after `timeoutMs` saying what arrived. */
  waitFor(done: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs = 30_000): Promise<readonly ReceivedSpan[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done(this.received)) return;
        finish();
        resolve(this.received);
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new Error(
            `the spans awaited did not arrive within ${timeoutMs} ms; received ${this.received.length}:\n` +
              this.received.map(describeSpan).join('\n'),
          ),
        );
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body = Buffer.concat(chunks);
    try {
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      let spans: ReceivedSpan[];
      if (contentType === 'application/x-protobuf') spans = decodeProtobufRequest(body);
      else if (contentType === 'application/json') spans = decodeJsonRequest(JSON.parse(body.toString('utf8')));
      else throw new Error(`unsupported content type ${JSON.stringify(contentType)}`);
      this.requests.push({ contentType, spans: spans.length });
      this.received.push(...spans);
    } catch (error) {
      this.rejected.push(error instanceof Error ? error.message : String(error));
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
      return;
    }
    // An empty ExportTraceServiceResponse: full success.
    if (contentType === 'application/json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    this.waiters.forEach((check) => check());
  }
}

/** One line per span, for failure messages: service, name, kind, ids. */
export function describeSpan(span: ReceivedSpan): string {
  return `${span.service} "${span.name}" ${span.kind} trace=${span.traceId} span=${span.spanId} parent=${span.parentSpanId ?? '-'}${span.links.length ? ` links=${span.links.map((l) => l.spanId).join(',')}` : ''}`;
}

// ---- http/protobuf: opentelemetry-proto trace/v1, only the fields a test reads ---------------

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Runs `field(number, wireType)` for each field of the message in `bytes`; it must consume or skip. */
function fields(bytes: Uint8Array, field: (reader: BinaryReader, no: number, wire: WireType) => boolean): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag();
    if (!field(reader, no, wire)) reader.skip(wire, no);
  }
}

function decodeAnyValue(bytes: Uint8Array): AttributeValue {
  let value: AttributeValue = null;
  fields(bytes, (r, no) => {
    switch (no) {
      case 1: // string_value
        value = r.string();
        return true;
      case 2: // bool_value
        value = r.bool();
        return true;
      case 3: // int_value
        value = Number(r.int64());
        return true;
      case 4: // double_value
        value = r.double();
        return true;
      case 5: {
        // array_value: ArrayValue { repeated AnyValue values = 1; }
        const items: AttributeValue[] = [];
        fields(r.bytes(), (ar, ano) => (ano === 1 ? (items.push(decodeAnyValue(ar.bytes())), true) : false));
        value = items;
        return true;
      }
      case 7: // bytes_value
        value = hex(r.bytes());
        return true;
      default:
        return false;
    }
  });
  return value;
}

function decodeKeyValue(bytes: Uint8Array): [string, AttributeValue] {
  let key = '';
  let value: AttributeValue = null;
  fields(bytes, (r, no) => {
    if (no === 1) key = r.string();
    else if (no === 2) value = decodeAnyValue(r.bytes());
    else return false;
    return true;
  });
  return [key, value];
}

function decodeAttributesInto(target: Record<string, AttributeValue>, bytes: Uint8Array): void {
  const [key, value] = decodeKeyValue(bytes);
  target[key] = value;
}

function decodeSpan(bytes: Uint8Array, service: string, resource: Record<string, AttributeValue>, scope: string) {
  let traceId = '';
  let spanId = '';
  let parentSpanId = '';
  let name = '';
  let kind = 0;
  let start = 0n;
  let end = 0n;
  const attributes: Record<string, AttributeValue> = {};
  const links: ReceivedLink[] = [];
  let status: { code: number; message?: string } = { code: 0 };
  fields(bytes, (r, no) => {
    switch (no) {
      case 1:
        traceId = hex(r.bytes());
        return true;
      case 2:
        spanId = hex(r.bytes());
        return true;
      case 4:
        parentSpanId = hex(r.bytes());
        return true;
      case 5:
        name = r.string();
        return true;
      case 6:
        kind = r.int32();
        return true;
      case 7:
        start = BigInt(r.fixed64());
        return true;
      case 8:
        end = BigInt(r.fixed64());
        return true;
      case 9:
        decodeAttributesInto(attributes, r.bytes());
        return true;
      case 13: {
        const link = { traceId: '', spanId: '', attributes: {} as Record<string, AttributeValue> };
        fields(r.bytes(), (lr, lno) => {
          if (lno === 1) link.traceId = hex(lr.bytes());
          else if (lno === 2) link.spanId = hex(lr.bytes());
          else if (lno === 4) decodeAttributesInto(link.attributes, lr.bytes());
          else return false;
          return true;
        });
        links.push(link);
        return true;
      }
      case 15: {
        const s: { code: number; message?: string } = { code: 0 };
        fields(r.bytes(), (sr, sno) => {
          if (sno === 2) s.message = sr.string();
          else if (sno === 3) s.code = sr.int32();
          else return false;
          return true;
        });
        status = s;
        return true;
      }
      default:
        return false;
    }
  });
  const span: ReceivedSpan = {
    service,
    resource,
    scope,
    traceId,
    spanId,
    ...(parentSpanId ? { parentSpanId } : {}),
    name,
    kind: OTLP_SPAN_KIND[kind] ?? 'UNSPECIFIED',
    startTimeUnixNano: start,
    endTimeUnixNano: end,
    attributes,
    links,
    status,
  };
  return span;
}

function decodeProtobufRequest(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
  fields(body, (r, no) => {
    if (no !== 1) return false;
    const resource: Record<string, AttributeValue> = {};
    const scopeSpans: Uint8Array[] = [];
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
    fields(r.bytes(), (rr, rno) => {
      if (rno === 1) {
        // Resource { repeated KeyValue attributes = 1; }
        fields(rr.bytes(), (ar, ano) => (ano === 1 ? (decodeAttributesInto(resource, ar.bytes()), true) : false));
      } else if (rno === 2) scopeSpans.push(rr.bytes());
      else return false;
      return true;
    });
    const service = String(resource['service.name'] ?? '');
    for (const bytes of scopeSpans) {
      let scope = '';
      const spans: Uint8Array[] = [];
      // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
      fields(bytes, (sr, sno) => {
        if (sno === 1) fields(sr.bytes(), (ir, ino) => (ino === 1 ? ((scope = ir.string()), true) : false));
        else if (sno === 2) spans.push(sr.bytes());
        else return false;
        return true;
      });
      for (const span of spans) out.push(decodeSpan(span, service, resource, scope));
    }
    return true;
  });
  return out;
}

// ---- http/json: the same messages in OTLP's JSON mapping (ids in hex) ------------------------

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  bytesValue?: string;
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}

function jsonValue(v: JsonAnyValue | undefined): AttributeValue {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(jsonValue);
  if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue, 'base64').toString('hex');
  return null;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, jsonValue(kv.value)]));
}

interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: JsonKeyValue[];
  links?: { traceId: string; spanId: string; attributes?: JsonKeyValue[] }[];
  status?: { code?: number; message?: string };
}

function decodeJsonRequest(request: {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: { scope?: { name?: string }; spans?: JsonSpan[] }[];
  }[];
}): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    const service = String(resource['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          resource,
          scope: ss.scope?.name ?? '',
          traceId: s.traceId.toLowerCase(),
          spanId: s.spanId.toLowerCase(),
          ...(s.parentSpanId ? { parentSpanId: s.parentSpanId.toLowerCase() } : {}),
          name: s.name,
          kind: OTLP_SPAN_KIND[s.kind ?? 0] ?? 'UNSPECIFIED',
          startTimeUnixNano: BigInt(s.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(s.endTimeUnixNano ?? 0),
          attributes: jsonAttributes(s.attributes),
          links: (s.links ?? []).map((l) => ({
            traceId: l.traceId.toLowerCase(),
            spanId: l.spanId.toLowerCase(),
            attributes: jsonAttributes(l.attributes),
          })),
          status: {
            code: s.status?.code ?? 0,
            ...(s.status?.message ? { message: s.status.message } : {}),
          },
        });
      }
    }
  }
  return out;
}
