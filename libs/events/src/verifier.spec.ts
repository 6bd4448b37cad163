import { events } from '@rebootless/contracts';
import { ChainedEvent, appendToChain, chainHash, startEpoch } from './chain';
import { generateSigningKey, signHash } from './signing';
import { epochStart, serviceStarted, writeChain } from './test-chain';
import { ChainVerifier, Finding, StaticKeyTrust } from './verifier';

const key = generateSigningKey();
const trust = new StaticKeyTrust().vouch('builder', key.rawPublicKey);

/** Feeds events as records, all in one partition unless `partitionOf` says otherwise. */
function verify(records: (ChainedEvent | Uint8Array)[], partitionOf: (i: number) => number = () => 0, t = trust) {
  const v = new ChainVerifier(t);
  records.forEach((r, i) =>
    v.ingest(r instanceof Uint8Array ? r : r.envelope, { partition: partitionOf(i), offset: String(i) }),
  );
  return v.finish();
}

const kinds = (fs: Finding[]) => fs.map((f) => f.kind);

describe('ChainVerifier', () => {
  const chain = writeChain(key, 'builder', 40, 10); // seals at seq 10, 20, 30, 40

  describe('given an intact chain', () => {
    it('finds nothing, and counts every event as sealed', () => {
      const report = verify(chain);
      expect(report.findings).toEqual([]);
      expect(report.chains).toEqual([
        expect.objectContaining({ producerId: 'builder', epoch: 1, lastSeq: 40, events: 40, sealed: 40 }),
      ]);
    });

    it('accepts it spread over partitions and read in any interleaving', () => {
      // Given events spread round-robin over 3 partitions, read partition by partition (worst case)
      const byPartition = [0, 1, 2].flatMap((p) => chain.filter((_, i) => i % 3 === p).map((e) => ({ e, p })));
      const v = new ChainVerifier(trust);
      byPartition.forEach(({ e, p }, i) => v.ingest(e.envelope, { partition: p, offset: String(i) }));
      // Then the chain is whole
      expect(v.finish().findings).toEqual([]);
    });
  });

  describe('when a record is dropped', () => {
    it('names the missing seq and where the chain resumes', () => {
      const report = verify(chain.filter((e) => e.seq !== 11)); // the event right after a seal
      expect(report.findings).toEqual([
        expect.objectContaining({
          kind: 'gap',
          producerId: 'builder',
          epoch: 1,
          seq: 11,
          toSeq: 11,
          position: { partition: 0, offset: '10' },
        }),
      ]);
      expect(report.findings[0]!.detail).toBe(
        'builder epoch 1: seq 11 is missing after seq 10 at partition 0 offset 9; the chain resumes with seq 12 at partition 0 offset 10',
      );
    });

    it('also says which earlier events lost the seal that vouched for them', () => {
      const report = verify(chain.filter((e) => e.seq !== 15));
      expect(kinds(report.findings)).toEqual(['gap', 'unsealed']);
      expect(report.findings[1]).toMatchObject({ seq: 11, toSeq: 14 });
    });
  });

  describe('when a body is altered', () => {
    it('names the altered event; its neighbours stay verified', () => {
      const tampered = chain.map((e) => e.envelope);
      const target = Buffer.from(tampered[24]!);
      target[target.indexOf('i23') + 2] = '9'.charCodeAt(0); // the payload's instance "i23" becomes "i29"
      tampered[24] = target;
      const report = verify(tampered);
      expect(report.findings).toEqual([
        expect.objectContaining({ kind: 'altered-body', seq: 25, position: { partition: 0, offset: '24' } }),
      ]);
    });

    it('reports a bad seal when the forger also rewrote the hashes', () => {
      // Given a forger who re-hashed a rewritten event and everything after it, without the key
      const forger = generateSigningKey();
      const base = writeChain(key, 'builder', 20, 10);
      const forged = appendToChain(
        { producerId: 'builder', epoch: 1, seq: 15, hash: base[14]!.hash },
        Array.from({ length: 5 }, (_, i) => serviceStarted(100 + i)),
        forger,
      );
      const report = verify([...base.slice(0, 15), ...forged.events]);
      expect(kinds(report.findings)).toEqual(['bad-signature', 'unsealed']);
      expect(report.findings[0]).toMatchObject({ seq: 20 });
      expect(report.findings[1]).toMatchObject({ seq: 11, toSeq: 20 });
    });
  });

  describe('when a record appears twice', () => {
    it('names the copy and the original', () => {
      const report = verify([...chain.slice(0, 30), chain[5]!, ...chain.slice(30)]);
      expect(report.findings).toEqual([
        expect.objectContaining({ kind: 'duplicate', seq: 6, position: { partition: 0, offset: '30' } }),
      ]);
      expect(report.findings[0]!.detail).toContain('is a copy of the one at partition 0 offset 5');
    });

    it('calls two different events at one seq a conflict', () => {
      const other = writeChain(key, 'builder', 10, 10);
      const report = verify([...chain.slice(0, 12), other[6]!, ...chain.slice(12)]);
      expect(kinds(report.findings)).toEqual(['conflict']);
    });
  });

  describe('asked whether it holds a record (a relay about to write it again)', () => {
    it('says yes only for the very record read: same seq and hash, read or waiting for an earlier one', () => {
      const v = new ChainVerifier(trust);
      // Seqs 1-12 read, 14 waiting for 13.
      [...chain.slice(0, 12), chain[13]!].forEach((e, i) => v.ingest(e.envelope, { partition: 0, offset: String(i) }));
      const holds = (e: ChainedEvent, seq = e.seq) => v.holds('builder', 1, seq, e.hash);
      expect(holds(chain[5]!)).toBe(true);
      expect(holds(chain[13]!)).toBe(true);
      // Not read yet, another event's hash at that seq, another producer or epoch.
      expect(holds(chain[12]!)).toBe(false);
      expect(holds(chain[20]!)).toBe(false);
      const other = writeChain(key, 'builder', 10, 10);
      expect(holds(other[5]!)).toBe(false);
      expect(v.holds('builder', 2, 6, chain[5]!.hash)).toBe(false);
      expect(v.holds('agent/web-1', 1, 6, chain[5]!.hash)).toBe(false);
    });
  });

  describe('when records of one partition are swapped', () => {
    it('names the reorder, and the chain still verifies', () => {
      const swapped = [...chain];
      [swapped[20], swapped[21]] = [swapped[21]!, swapped[20]!];
      const report = verify(swapped);
      expect(report.findings).toEqual([
        expect.objectContaining({ kind: 'reorder', seq: 21, position: { partition: 0, offset: '21' } }),
      ]);
      expect(report.chains[0]).toMatchObject({ lastSeq: 40, sealed: 40 });
    });
  });

  describe('when the producer key is not vouched for', () => {
    it('reports the epoch once, naming the key', () => {
      const report = verify(chain, () => 0, new StaticKeyTrust());
      expect(report.findings).toEqual([
        expect.objectContaining({ kind: 'unknown-producer-key', producerId: 'builder', epoch: 1 }),
      ]);
      expect(report.findings[0]!.detail).toContain(key.rawPublicKey.toString('hex').slice(0, 16));
    });
  });

  describe('when an event type is unknown', () => {
    it('names the type, and keeps verifying the chain through it', () => {
      // Given an event from a newer producer, of a type this build has never heard of
      const body = events.EventBody.encode({
        eventId: 'e41',
        type: 'KernelPanicked',
        stream: 'producer/test',
        correlationId: '',
        causationId: '',
        producer: { producerId: 'builder', epoch: 1, seq: '41', prevHash: chain[39]!.hash },
      }).finish();
      const hash = chainHash(chain[39]!.hash, body);
      const written = [events.Envelope.encode({ body, hash, signature: signHash(key, hash) }).finish()];
      const report = verify([...chain, ...written]);
      expect(report.findings).toEqual([expect.objectContaining({ kind: 'unknown-event-type', seq: 41 })]);
      expect(report.findings[0]!.detail).toContain('type "KernelPanicked" is not an event type this build knows');
      expect(report.chains[0]).toMatchObject({ lastSeq: 41, sealed: 41 });
    });
  });

  describe('when a record is not an envelope at all', () => {
    it('reports it as undecodable and carries on', () => {
      const report = verify([...chain.slice(0, 10), Buffer.from('not protobuf \xff\xff\xff'), ...chain.slice(10)]);
      expect(report.findings).toEqual([
        expect.objectContaining({ kind: 'undecodable', position: { partition: 0, offset: '10' } }),
      ]);
    });
  });

  describe('when an epoch does not start with ChainEpochStarted', () => {
    it('says so', () => {
      const { events: written } = appendToChain(startEpoch('builder', 2), [serviceStarted(1)], key);
      const report = verify(written);
      expect(kinds(report.findings)).toContain('missing-epoch-start');
    });
  });

  describe('when the producer starts a new epoch after losing its state', () => {
    it('verifies both epochs as separate chains', () => {
      const lost = appendToChain(
        startEpoch('builder', 2),
        [
          {
            ...epochStart(key),
            payload: {
              type: 'ChainEpochStarted',
              data: {
                publicKey: key.rawPublicKey,
                previousEpoch: 1,
                reason: events.EpochReason.EPOCH_REASON_STATE_LOST,
                detail: '',
              },
            },
          },
          serviceStarted(1),
        ],
        key,
      );
      const report = verify([...chain, ...lost.events]);
      expect(report.findings).toEqual([]);
      expect(report.chains.map((c) => [c.epoch, c.lastSeq])).toEqual([
        [1, 40],
        [2, 2],
      ]);
    });
  });

  describe('when the last events carry no seal', () => {
    it('names them', () => {
      const report = verify(chain.slice(0, 35));
      expect(report.findings).toEqual([expect.objectContaining({ kind: 'unsealed', seq: 31, toSeq: 35 })]);
    });
  });
});
