import { ChainedEvent, appendToChain } from './chain';
import { SealWorker } from './seal-verdicts';
import { SigningKey, generateSigningKey, signHash } from './signing';
import { serviceStarted, writeChain } from './test-chain';
import { ChainVerifier, StaticKeyTrust } from './verifier';
import { readEnvelope } from './wire';

const key = generateSigningKey();
const trust = new StaticKeyTrust().vouch('builder', key.rawPublicKey);

const jobsFor = (chain: ChainedEvent[], signer: SigningKey) =>
  chain
    .map((e) => readEnvelope(e.envelope))
    .filter((v) => v.signature.length > 0)
    .map((v) => ({ key: signer.rawPublicKey, hash: v.hash, signature: v.signature }));

function verifyWith(seals: SealWorker, chain: ChainedEvent[]) {
  const v = new ChainVerifier(trust, seals);
  chain.forEach((e, i) => v.ingest(e.envelope, { partition: 0, offset: String(i) }));
  return v.finish().findings.map((f) => `${f.kind} ${f.seq}`);
}

describe('SealWorker', () => {
  let seals: SealWorker;
  beforeEach(() => (seals = new SealWorker()));
  afterEach(() => seals.close());

  it('checks seals ahead; the verifier takes the verdicts and finds what it finds without them', async () => {
    const chain = writeChain(key, 'builder', 40, 10);
    await seals.check(jobsFor(chain, key));
    expect(seals.take(key.rawPublicKey, Buffer.alloc(32), Buffer.alloc(64))).toBeUndefined();
    expect(verifyWith(seals, chain)).toEqual([]);
  });

  it("a forged seal is bad whatever was checked ahead, with the right key or the forger's", async () => {
    const forger = generateSigningKey();
    const base = writeChain(key, 'builder', 20, 10);
    const forged = appendToChain(
      { producerId: 'builder', epoch: 1, seq: 15, hash: base[14]!.hash },
      Array.from({ length: 5 }, (_, i) => serviceStarted(100 + i)),
      forger,
    ).events;
    const chain = [...base.slice(0, 15), ...forged];
    // A verdict for the forger's key says "good", but it is not the key the verifier holds
    await seals.check(jobsFor(forged, forger));
    expect(verifyWith(seals, chain)).toEqual(['bad-signature 20', 'unsealed 11']);
    await seals.check(jobsFor(chain, key));
    expect(verifyWith(seals, chain)).toEqual(['bad-signature 20', 'unsealed 11']);
  });

  it('shared among several workers, gives each seal its own verdict, a bad one among good ones included', async () => {
    const pool = new SealWorker(3);
    try {
      const chain = writeChain(key, 'builder', 400, 1);
      const jobs = jobsFor(chain, key);
      // One seal of the middle worker's share signed by another key
      const forger = generateSigningKey();
      const bad = { ...jobs[200]!, signature: signHash(forger, jobs[200]!.hash) };
      await pool.check([...jobs.slice(0, 200), bad, ...jobs.slice(201)]);
      const verdicts = [...jobs.slice(0, 200), bad, ...jobs.slice(201)].map((j) =>
        pool.take(j.key, j.hash, j.signature),
      );
      expect(verdicts.filter((v) => v === true)).toHaveLength(399);
      expect(verdicts[200]).toBe(false);
    } finally {
      await pool.close();
    }
  });

  it('once closed, checks nothing: the verifier verifies in place', async () => {
    await seals.close();
    const chain = writeChain(key, 'builder', 20, 10);
    await seals.check(jobsFor(chain, key));
    expect(verifyWith(seals, chain)).toEqual([]);
  });
});
