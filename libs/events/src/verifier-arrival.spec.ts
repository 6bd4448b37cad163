import { appendToChain, startEpoch } from './chain';
import { generateSigningKey } from './signing';
import { serviceStarted, writeChain } from './test-chain';
import { ChainVerifier, StaticKeyTrust } from './verifier';

const key = generateSigningKey();
const trust = new StaticKeyTrust().vouch('builder', key.rawPublicKey);

describe('ChainVerifier, with records arriving as a consumer reads them', () => {
  // A chain spread over 6 partitions, read a partition's chunk at a time: most records wait for
  // their predecessors in other partitions, thousands at once.
  const chain = writeChain(key, 'builder', 6000, 500);
  const readInChunks = (records: { value: Uint8Array; partition: number }[], chunk: number) => {
    const partitions = [0, 1, 2, 3, 4, 5].map((p) => records.filter((r) => r.partition === p));
    const order: { value: Uint8Array; partition: number; offset: string }[] = [];
    for (let from = 0; order.length < records.length; from += chunk) {
      for (const list of partitions)
        order.push(...list.slice(from, from + chunk).map((r, i) => ({ ...r, offset: String(from + i) })));
    }
    return order;
  };

  it('verifies the whole chain however long its records wait', () => {
    const v = new ChainVerifier(trust);
    for (const r of readInChunks(
      chain.map((e, i) => ({ value: e.envelope, partition: (i * 5) % 6 })),
      700,
    ))
      v.ingest(r.value, r);
    const report = v.finish();
    expect(report.findings).toEqual([]);
    expect(report.chains).toEqual([expect.objectContaining({ lastSeq: 6000, events: 6000, sealed: 6000 })]);
  });

  it('reports a gap before a record far beyond the chain, and positions as partition and offset only', () => {
    // Given a record that claims a seq a billion ahead (a forged or corrupt position)
    const far = appendToChain(
      { ...startEpoch('builder', 1), seq: 1e9, hash: chain[5999]!.hash },
      [serviceStarted(1)],
      key,
    ).events[0]!;
    const v = new ChainVerifier(trust);
    const records = readInChunks(
      [...chain, far].map((e, i) => ({ value: e.envelope, partition: i % 6 })),
      1000,
    );
    // When whole log records are passed as positions
    for (const r of records) v.ingest(r.value, r);
    // Then the hole is named, and the chain goes on after it
    const report = v.finish();
    expect(report.findings).toEqual([
      expect.objectContaining({
        kind: 'gap',
        seq: 6001,
        toSeq: 1e9,
        position: { partition: 0, offset: expect.any(String) },
      }),
    ]);
    expect(Object.keys(report.findings[0]!.position!)).toEqual(['partition', 'offset']);
    expect(report.chains[0]).toMatchObject({ lastSeq: 1e9 + 1, events: 6001, sealed: 6001 });
  });
});
