import { resolveTypeName, toJsonView, type TypeDefinitions } from './json-view';

const field = (name: string, type: string, typeName = '', label = 'LABEL_OPTIONAL') => ({
  name,
  type,
  typeName,
  label,
});

// The shape @grpc/proto-loader hands out, for a small package.
const defs: TypeDefinitions = {
  'demo.v1.State': {
    type: {
      value: [
        { name: 'STATE_UNSPECIFIED', number: 0 },
        { name: 'STATE_DONE', number: 2 },
      ],
    },
  },
  'demo.v1.Item': {
    type: {
      field: [
        field('id', 'TYPE_STRING'),
        field('state', 'TYPE_ENUM', 'State'),
        field('states', 'TYPE_ENUM', '.demo.v1.State', 'LABEL_REPEATED'),
        field('at', 'TYPE_MESSAGE', 'google.protobuf.Timestamp'),
        field('children', 'TYPE_MESSAGE', 'Item', 'LABEL_REPEATED'),
        field('labels', 'TYPE_MESSAGE', 'LabelsEntry', 'LABEL_REPEATED'),
        field('blob', 'TYPE_BYTES'),
        field('size', 'TYPE_UINT64'),
      ],
    },
  },
  'google.protobuf.Timestamp': { type: { field: [field('seconds', 'TYPE_INT64'), field('nanos', 'TYPE_INT32')] } },
};

describe('the --json view of a message', () => {
  it('names enums, writes timestamps as RFC 3339 and bytes as base64, keeps maps and 64-bit strings', () => {
    expect(
      toJsonView(defs, 'demo.v1.Item', {
        id: 'a',
        state: 2,
        states: [0, 2],
        at: { seconds: '1795334400', nanos: 5_000_000 },
        children: [
          { id: 'b', state: 7, states: [], at: null, children: [], labels: {}, blob: Buffer.alloc(0), size: '0' },
        ],
        labels: { env: 'prod' },
        blob: Buffer.from('hi'),
        size: '18446744073709551615',
        // proto-loader's oneof discriminator: not a declared field, left out.
        update: 'state',
      }),
    ).toEqual({
      id: 'a',
      state: 'STATE_DONE',
      states: ['STATE_UNSPECIFIED', 'STATE_DONE'],
      at: '2026-11-22T08:00:00.005Z',
      children: [{ id: 'b', state: 7, states: [], children: [], labels: {}, blob: '', size: '0' }],
      labels: { env: 'prod' },
      blob: 'aGk=',
      size: '18446744073709551615',
    });
  });

  it('resolves type names innermost scope first', () => {
    expect(resolveTypeName(defs, 'demo.v1.Item', 'State')).toBe('demo.v1.State');
    expect(resolveTypeName(defs, 'demo.v1.Item', 'google.protobuf.Timestamp')).toBe('google.protobuf.Timestamp');
    expect(resolveTypeName(defs, 'demo.v1.Item', '.demo.v1.Item')).toBe('demo.v1.Item');
    expect(resolveTypeName(defs, 'demo.v1.Item', 'Missing')).toBeUndefined();
  });
});
