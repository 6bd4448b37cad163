// The --json output: protobuf's canonical JSON mapping, driven by the loaded descriptors so it
// holds for every message without a hand-written view each: enums by name, timestamps as RFC 3339,
// bytes as base64, 64-bit integers as strings, unset messages left out, only declared fields.
import { fromTimestamp } from '@rebootless/contracts';

export interface DescriptorField {
  readonly name: string;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}

/** The shape @grpc/proto-loader gives each message and enum of a package definition. */
export type TypeDefinitions = Readonly<
  Record<
    string,
    {
      readonly format?: string;
      readonly type?: {
        readonly field?: readonly DescriptorField[];
        readonly value?: readonly { name: string; number: number }[];
      };
    }
  >
>;

const TIMESTAMP = 'google.protobuf.Timestamp';

/** Resolves a type name as protoc does: innermost scope first. */
export function resolveTypeName(defs: TypeDefinitions, scope: string, typeName: string): string | undefined {
  if (typeName.startsWith('.')) return defs[typeName.slice(1)] ? typeName.slice(1) : undefined;
  const parts = scope.split('.');
  for (let n = parts.length; n >= 0; n--) {
    const candidate = [...parts.slice(0, n), typeName].join('.');
    if (defs[candidate]) return candidate;
  }
  return undefined;
}

function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function timestampJson(value: { seconds?: string | number; nanos?: number }): string {
  return fromTimestamp({ seconds: String(value.seconds ?? 0), nanos: value.nanos ?? 0 }).toISOString();
}

export function toJsonView(defs: TypeDefinitions, typeName: string, value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeName === TIMESTAMP) return timestampJson(value as { seconds?: string; nanos?: number });
  const fields = defs[typeName]?.type?.field;
  if (!fields || typeof value !== 'object') return plain(value);
  const source = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    const raw = source[field.name];
    if (raw === null || raw === undefined) continue;
    const one = (item: unknown): unknown => {
      if (field.type === 'TYPE_ENUM') {
        const enumName = resolveTypeName(defs, typeName, field.typeName);
        const values = enumName ? defs[enumName]?.type?.value : undefined;
        return values?.find((v) => v.number === item)?.name ?? item;
      }
      if (field.type === 'TYPE_MESSAGE') {
        const resolved = resolveTypeName(defs, typeName, field.typeName);
        // Map entries are nested types proto-loader does not list: their values are plain already.
        return resolved ? toJsonView(defs, resolved, item) : plain(item);
      }
      return plain(item);
    };
    out[field.name] = field.label === 'LABEL_REPEATED' && Array.isArray(raw) ? raw.map(one) : one(raw);
  }
  return out;
}
