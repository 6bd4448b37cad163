// Builders shared by this lib's unit tests (not exported from index).
import { events } from '@rebootless/contracts';
import { ChainHead, ChainedEvent, EventDraft, appendToChain, startEpoch } from './chain';
import { SigningKey } from './signing';

export function epochStart(key: SigningKey): EventDraft {
  return {
    stream: 'producer/test',
    payload: {
      type: 'ChainEpochStarted',
      data: {
        publicKey: key.rawPublicKey,
        previousEpoch: 0,
        reason: events.EpochReason.EPOCH_REASON_FIRST_START,
        detail: '',
      },
    },
  };
}

export function serviceStarted(n: number): EventDraft {
  return {
    stream: 'producer/test',
    payload: {
      type: 'ServiceStarted',
      data: { service: 'test', version: '1', instance: `i${n}`, hostname: 'h', pid: n, listenAddress: '' },
    },
  };
}

/** A chain of `count` events (epoch start included), written in batches of `batch`. */
export function writeChain(
  key: SigningKey,
  producerId: string,
  count: number,
  batch: number,
  epoch = 1,
): ChainedEvent[] {
  let head: ChainHead = startEpoch(producerId, epoch);
  const out: ChainedEvent[] = [];
  const drafts = [epochStart(key), ...Array.from({ length: count - 1 }, (_, i) => serviceStarted(i))];
  for (let i = 0; i < drafts.length; i += batch) {
    const r = appendToChain(head, drafts.slice(i, i + batch), key);
    head = r.head;
    out.push(...r.events);
  }
  return out;
}
