import { Client } from 'pg';
import { pgArrayLiteral } from './pg-array-literal';
import { createScratchDatabase } from './scripted-log';

// The literals go to the real PostgreSQL the upserts use, and come back as the values given.
describe('pgArrayLiteral against PostgreSQL', () => {
  let scratch: { url: string; drop(): Promise<void> };
  let client: Client;
  beforeAll(async () => {
    scratch = await createScratchDatabase('array_literal');
    client = new Client({ connectionString: scratch.url });
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
    await scratch.drop();
  });

  const roundTrip = async (type: string, literal: string) =>
    (await client.query<{ v: unknown }>(`SELECT unnest($1::${type}[]) AS v`, [literal])).rows.map((r) => r.v);

  it('keeps quotes, backslashes, commas, braces, NULL-looking text, unicode and nulls in text', async () => {
    const values = ['plain', 'say "hi"', 'C:\\path\\', 'a,b', '{x}', 'NULL', '', ' padded ', 'ünïcødé ✓', null];
    expect(await roundTrip('text', pgArrayLiteral('text', values))).toEqual(values);
  });

  it('keeps bytes in bytea, and whole numbers in int2, int4 and int8 given as numbers, strings and bigints', async () => {
    const bytes = [Buffer.from([0, 1, 0x5c, 0x22, 0xff]), Buffer.alloc(0), null];
    expect(await roundTrip('bytea', pgArrayLiteral('bytea', bytes))).toEqual(bytes);
    expect(await roundTrip('int2', pgArrayLiteral('int2', [0, 1, -32768, null]))).toEqual([0, 1, -32768, null]);
    expect(await roundTrip('int4', pgArrayLiteral('int4', [2147483647, '-5']))).toEqual([2147483647, -5]);
    expect(await roundTrip('int8', pgArrayLiteral('int8', ['9223372036854775807', 12n, -3, null]))).toEqual([
      '9223372036854775807',
      '12',
      '-3',
      null,
    ]);
  });

  it('refuses a value that is not a whole number, naming it', () => {
    expect(() => pgArrayLiteral('int8', [1.5])).toThrow('int8 array: 1.5 is not a whole number');
    expect(() => pgArrayLiteral('int4', ['12; DROP TABLE hosts'])).toThrow('is not a whole number');
  });
});
