import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainHead, EventDraft, appendToChain, generateSigningKey, startEpoch } from '@rebootless/events';
import { ChainStateFile, PendingBatch } from './chain-state';

const key = generateSigningKey();
const drift = (n: number): EventDraft => ({
  stream: `host/h${n % 3}`,
  payload: {
    type: 'DriftDetected',
    data: { hostId: `h${n % 3}`, kind: 'test', detail: `n=${n}`, expected: [], observed: [] },
  },
});

function pendingAfter(head: ChainHead, count: number, at = 1_700_000_000_000): PendingBatch {
  const { events } = appendToChain(
    head,
    Array.from({ length: count }, (_, i) => drift(i)),
    key,
  );
  return {
    at,
    before: { seq: head.seq, hash: head.hash.toString('hex') },
    records: events.map((e) => ({ seq: e.seq, key: e.stream, value: e.envelope })),
  };
}

describe('the chain state file', () => {
  let dir: string;
  let file: ChainStateFile;
  const head: ChainHead = { ...startEpoch('builder', 7), seq: 3, hash: Buffer.alloc(32, 9) };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chain-state-'));
    file = new ChainStateFile(dir, 'builder');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives back the head and the pending records it saved, byte for byte', () => {
    const pending = pendingAfter(head, 5);
    file.save(head, pending);
    const loaded = file.load()!;
    expect(loaded.head).toEqual(head);
    expect(loaded.pending).toEqual({
      ...pending,
      records: pending.records.map((r) => ({ ...r, value: Buffer.from(r.value) })),
    });
  });

  it('reads a file written in the first format, which listed each record', () => {
    const pending = pendingAfter(head, 2);
    const json = Buffer.from(
      JSON.stringify({
        version: 1,
        producerId: 'builder',
        epoch: head.epoch,
        seq: head.seq,
        hash: head.hash.toString('hex'),
        pending: {
          at: pending.at,
          before: pending.before,
          records: pending.records.map((r) => ({ seq: r.seq, key: r.key, bytes: r.value.length })),
        },
      }),
    );
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    fs.writeFileSync(file.statePath, Buffer.concat([len, json, ...pending.records.map((r) => r.value)]));
    expect(file.load()!.pending!.records.map((r) => [r.seq, r.key, r.value.length])).toEqual(
      pending.records.map((r) => [r.seq, r.key, r.value.length]),
    );
  });

  it('says so when a pending record is not an envelope', () => {
    file.save(head, {
      at: 1,
      before: { seq: 3, hash: '' },
      records: [{ seq: 4, key: 'k', value: Buffer.from([0xff, 0xff]) }],
    });
    expect(() => file.load()).toThrow(/unreadable \(a pending record is not an envelope/);
  });

  it('writes in the background in call order, so the file ends with the last state', async () => {
    const saves = [1, 2, 3].map((n) =>
      file.saveAsync({ ...head, seq: head.seq + n }, pendingAfter({ ...head, seq: head.seq + n }, n)),
    );
    // While they are under way, a blocking save would race them for the file
    expect(() => file.save(head)).toThrow('while saveAsync() writes are under way');
    await Promise.all(saves);
    const loaded = file.load()!;
    expect(loaded.head.seq).toBe(head.seq + 3);
    expect(loaded.pending!.records.map((r) => r.seq)).toEqual([7, 8, 9]);
    file.save(head);
    expect(file.load()).toEqual({ head });
  });
});
