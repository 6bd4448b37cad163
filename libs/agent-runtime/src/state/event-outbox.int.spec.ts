import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { decodeEvent, readEnvelope, type EventDraft } from '@rebootless/events';
import { EventOutbox, GATEWAY_MARK_EVERY } from './event-outbox';

const draft = (n: number): EventDraft => ({
  stream: 'host/h1',
  payload: { type: 'DriftDetected', data: { hostId: 'h1', kind: 'test', detail: `#${n}`, expected: [], observed: [] } },
});

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outbox-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const open = () => EventOutbox.open({ dir, producerId: 'agent/h1' });

describe('the agent outbox', () => {
  it('Given a first start, Then it begins an epoch with ChainEpochStarted carrying its key', () => {
    const { outbox, epoch } = open();
    expect(epoch?.reason).toBe(events.EpochReason.EPOCH_REASON_FIRST_START);
    const [first] = outbox.pending();
    const body = decodeEvent(first!.envelope).body;
    expect(body.type).toBe('ChainEpochStarted');
    expect(Buffer.from(body.chainEpochStarted!.publicKey)).toEqual(outbox.publicKey);
  });

  it('Given events appended and some confirmed, When reopened after a stop, Then only the unconfirmed remain and the chain continues', () => {
    const first = open().outbox;
    first.append([draft(1), draft(2)]);
    first.confirm(2);
    const head = first.head;
    first.close();
    const again = open();
    expect(again.epoch).toBeUndefined();
    expect(again.outbox.pending().map((r) => r.seq)).toEqual([3]);
    expect(again.outbox.head).toEqual(head);
    const [next] = again.outbox.append([draft(3)]);
    expect(next!.seq).toBe(4);
    expect(Buffer.from(readEnvelope(next!.envelope).prevHash)).toEqual(head.hash);
  });

  it('Given deliveries through the gateway confirmed and then a crash, When reopened, Then at most the last 31 delivered come again, and nothing delivered before them', () => {
    const open = () => EventOutbox.open({ dir, producerId: 'agent/h1', markEvery: GATEWAY_MARK_EVERY });
    const first = open().outbox;
    // The epoch start (seq 1) and 69 more, delivered one by one.
    for (let n = 2; n <= 70; n += 1) {
      first.append([draft(n)]);
      first.confirm(n);
    }
    expect(first.pendingCount).toBe(0);
    // No close: the process died.
    const again = open().outbox;
    const resent = again.pending().map((r) => r.seq);
    // The mark was written at 32 and 64 delivered records: 65 to 70 go again (the gateway finds them in the log).
    expect(resent).toEqual([65, 66, 67, 68, 69, 70]);
    // A stop that is not a crash writes the mark: nothing goes again.
    again.confirm(70);
    again.close();
    expect(open().outbox.pendingCount).toBe(0);
    // A stop said to be a crash leaves the mark where it was.
    const third = open().outbox;
    third.append([draft(71)]);
    third.confirm(71);
    third.close({ markDelivered: false });
    expect(
      open()
        .outbox.pending()
        .map((r) => r.seq),
    ).toEqual([71]);
  });

  it('Given deliveries straight to Kafka confirmed and then a crash, When reopened, Then none comes again (copies would land in the log)', () => {
    const first = open().outbox;
    for (let n = 2; n <= 5; n += 1) {
      first.append([draft(n)]);
      first.confirm(n);
    }
    expect(open().outbox.pendingCount).toBe(0);
  });

  it('Given a write torn by a crash, When reopened, Then the torn bytes are dropped and nothing before them is lost', () => {
    const first = open().outbox;
    first.append([draft(1)]);
    fs.appendFileSync(path.join(dir, 'outbox.log'), Buffer.from([0, 0, 1, 0, 9, 9, 9]));
    const again = open().outbox;
    expect(again.pending().map((r) => r.seq)).toEqual([1, 2]);
    expect(again.append([draft(2)])[0]!.seq).toBe(3);
    expect(
      open()
        .outbox.pending()
        .map((r) => r.seq),
    ).toEqual([1, 2, 3]);
  });

  it('Given the chain state lost but the key kept, Then a new epoch says so', () => {
    open().outbox.append([draft(1)]);
    fs.rmSync(path.join(dir, 'outbox.log'));
    fs.rmSync(path.join(dir, 'chain-agent_h1.state'));
    const { epoch, outbox } = open();
    expect(epoch?.reason).toBe(events.EpochReason.EPOCH_REASON_STATE_LOST);
    expect(outbox.pending().map((r) => r.seq)).toEqual([1]);
  });

  it('Given the log emptied after all was confirmed (its descriptor kept open), When more is appended and it is reopened, Then only the new events are there, chained on', () => {
    const { outbox } = open();
    const big = Array.from({ length: 1500 }, (_, n) => draft(n));
    outbox.append(big);
    outbox.confirm(outbox.head.seq);
    expect(fs.statSync(path.join(dir, 'outbox.log')).size).toBe(0);
    const [after] = outbox.append([draft(1000)]);
    outbox.close();
    const { outbox: again } = open();
    expect(again.pending().map((r) => r.seq)).toEqual([after!.seq]);
    expect(readEnvelope(again.pending()[0]!.envelope).seq).toBe(1502);
  });
});
