import { events } from '@rebootless/contracts';
import { ChainHead, ChainedEvent, EventDraft, appendToChain, startEpoch } from './chain';
import { generateSigningKey, SigningKey } from './signing';
import { epochStart, serviceStarted } from './test-chain';
import { StaticKeyTrust } from './verifier';
import { GateCheckpoint, GateRecord, ProjectionGate } from './projection-gate';
import { agentKeyStateProblems } from './key-event-proof';
import { EnvelopeLayout, scanEnvelope } from './wire';

// A gate stopped anywhere and continued from its checkpoint releases and finds exactly what one
// reading the log straight through does (docs/adr/0024): the ledger resumes from it instead of
// reading the log again.

const TIMEOUT = 5_000;
const builderKey = generateSigningKey();
const dispatcherKey = generateSigningKey();
const agentKeys = [generateSigningKey(), generateSigningKey()];
const forgerKey = generateSigningKey();
const trust = new StaticKeyTrust()
  .vouch('builder', builderKey.rawPublicKey)
  .vouch('dispatcher', dispatcherKey.rawPublicKey);

interface LogRecord {
  partition: number;
  value: Uint8Array;
}

class Producer {
  head: ChainHead;
  constructor(
    readonly id: string,
    readonly key: SigningKey,
  ) {
    this.head = startEpoch(id, 1);
  }
  /** One sealed batch, each event on the partition given beside it. */
  write(drafts: [EventDraft, number][]): LogRecord[] {
    const r = appendToChain(
      this.head,
      drafts.map(([d]) => d),
      this.key,
    );
    this.head = r.head;
    return r.events.map((e: ChainedEvent, i) => ({ partition: drafts[i]![1], value: e.envelope }));
  }
}

const hostPartition = (h: number) => 1 + h;
const bound = (h: number): EventDraft => ({
  stream: `host/h${h}`,
  payload: {
    type: 'AgentKeyBound',
    data: {
      hostId: `h${h}`,
      producerId: `agent/h${h}`,
      epoch: 1,
      publicKey: agentKeys[h]!.rawPublicKey,
      certificateFingerprint: '',
      certificateIdentity: `h${h}`,
    },
  },
});
const booted = (h: number, n: number): EventDraft => ({
  stream: `host/h${h}`,
  payload: {
    type: 'HostBooted',
    data: events.HostBooted.decode(
      events.HostBooted.encode({ hostId: `h${h}`, bootId: `boot-${n}` } as events.HostBooted).finish(),
    ),
  },
});
const applyRequested = (h: number, n: number): EventDraft => ({
  stream: `host/h${h}`,
  payload: {
    type: 'HostApplyRequested',
    data: {
      rolloutId: 'r1',
      hostId: `h${h}`,
      commandId: `cmd-${h}-${n}`,
      patchId: 'p1',
      version: '1',
      artifactDigest: '',
      kernelRelease: '',
      allowForce: false,
      allowDowngrade: false,
      undoStep: 0,
    },
  },
});

/**
 * A log over three partitions: the dispatcher's chain crosses them (its bindings and commands
 * sit on each host's partition, sealed by the batch's last record, often in another partition),
 * two agents write on their hosts' partitions, the builder on partition 0, and a forger appends
 * an unsealed tail and a copy.
 */
function history(): LogRecord[] {
  const d = new Producer('dispatcher', dispatcherKey);
  const b = new Producer('builder', builderKey);
  const agents = [0, 1].map((h) => new Producer(`agent/h${h}`, agentKeys[h]!));
  const log: LogRecord[] = [];
  log.push(
    ...d.write([
      [{ ...epochStart(dispatcherKey), stream: 'producer/dispatcher' }, 0],
      [bound(0), 1],
      [bound(1), 2],
    ]),
  );
  const own = (d: EventDraft): EventDraft => ({ ...d, stream: 'producer/builder' });
  log.push(
    ...b.write([
      [own(epochStart(builderKey)), 0],
      [own(serviceStarted(1)), 0],
    ]),
  );
  for (const h of [0, 1])
    log.push(...agents[h]!.write([[{ ...epochStart(agentKeys[h]!), stream: `host/h${h}` }, hostPartition(h)]]));
  for (let n = 0; n < 4; n++) {
    log.push(
      ...d.write([
        [applyRequested(0, n), 1],
        [applyRequested(1, n), 2],
        [{ ...serviceStarted(n), stream: 'producer/dispatcher' }, 0],
      ]),
    );
    for (const h of [0, 1])
      log.push(
        ...agents[h]!.write([
          [booted(h, n), hostPartition(h)],
          [booted(h, n + 10), hostPartition(h)],
        ]),
      );
    log.push(...b.write([[own(serviceStarted(10 + n)), 0]]));
  }
  // A copy of a genuine record, and a forger writing as the agent with a key nobody bound.
  log.push({ partition: 1, value: log.find((r) => r.partition === 1)!.value });
  const forger = new Producer('agent/h0', forgerKey);
  forger.head = { ...forger.head, epoch: 2 };
  log.push(
    ...forger.write([
      [{ ...epochStart(forgerKey), stream: 'host/h0' }, 1],
      [booted(0, 99), 1],
    ]),
  );
  return log;
}

/** A reader of the log in the order given, one gate, its offsets per partition. */
class Reader {
  gate = new ProjectionGate<string>({ trust, unsealedTimeoutMs: TIMEOUT });
  readonly released: string[] = [];
  readonly findings: string[] = [];
  readonly offsets = new Map<number, number>();

  offer(r: LogRecord): void {
    const offset = this.offsets.get(r.partition) ?? 0;
    this.offsets.set(r.partition, offset + 1);
    this.take(this.gate.offer(recordAt(r.partition, String(offset), r.value), 0));
  }

  take(out: { released: GateRecord<string>[]; findings: { kind: string; producerId?: string; seq?: number }[] }): void {
    this.released.push(...out.released.map((r) => r.item));
    this.findings.push(...out.findings.map((f) => `${f.kind} ${f.producerId ?? ''}#${f.seq ?? ''}`));
  }

  /** The checkpoint, as the database gives it back: JSON, every partition. */
  checkpoint(): GateCheckpoint<string> {
    const cp = this.gate.checkpoint([...this.offsets.keys()], (r) => Buffer.from(r.value!).toString('base64'));
    return JSON.parse(JSON.stringify(cp)) as GateCheckpoint<string>;
  }

  /** A new gate from the checkpoint; the reading goes on where it stood. */
  resume(cp: GateCheckpoint<string>): void {
    this.gate = new ProjectionGate<string>({ trust, unsealedTimeoutMs: TIMEOUT });
    // A checkpoint the gate wrote itself vouches only for keys the trust or its bindings vouch for.
    expect(
      this.gate.restore(cp, (partition, offset, item) => recordAt(partition, offset, Buffer.from(item, 'base64')), 0),
    ).toEqual([]);
  }
}

type HeldRow = GateCheckpoint<string>['partitions'][number]['held'][number];

const sameKind = (f: string) => f.replace(/^conflict/, 'duplicate');

function recordAt(partition: number, offset: string, value: Uint8Array): GateRecord<string> {
  let body: events.EventBody | undefined;
  try {
    const l = scanEnvelope(Buffer.from(value), new EnvelopeLayout());
    body = events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
  } catch {
    body = undefined;
  }
  return { partition, offset, value, body, item: `${partition}/${offset}` };
}

/** The log's records by position, as a reader numbers them (each partition from offset 0). */
export function logAt(records: readonly LogRecord[]): (partition: number, offset: string) => Uint8Array | undefined {
  const at = new Map<string, Uint8Array>();
  const next = new Map<number, number>();
  for (const r of records) {
    const offset = next.get(r.partition) ?? 0;
    next.set(r.partition, offset + 1);
    at.set(`${r.partition}:${offset}`, r.value);
  }
  return (partition, offset) => at.get(`${partition}:${offset}`);
}

/** Reads the log whole; then expires and flushes, as a live reader would in the end. */
function finish(reader: Reader): Reader {
  reader.take(reader.gate.expire(TIMEOUT * 10));
  reader.take(reader.gate.flushGaps());
  return reader;
}

describe('a gate resumed from its checkpoint', () => {
  const log = history();

  const whole = (records: LogRecord[]) => {
    const reader = new Reader();
    for (const r of records) reader.offer(r);
    return finish(reader);
  };

  it('given the log read straight through: releases the genuine records, finds the forgeries', () => {
    const whole = new Reader();
    for (const r of log) whole.offer(r);
    finish(whole);
    expect(whole.released.length).toBe(log.length - 3);
    expect(whole.findings).toEqual(['duplicate dispatcher#2', 'unknown-producer-key agent/h0#']);
  });

  it('given a gate made never to be checkpointed (a dispatcher): it releases and finds the same, and refuses to give a checkpoint', () => {
    const straight = whole(log);
    const reader = new Reader();
    reader.gate = new ProjectionGate<string>({ trust, unsealedTimeoutMs: TIMEOUT, checkpointed: false });
    for (const r of log) reader.offer(r);
    finish(reader);
    expect(reader.released).toEqual(straight.released);
    expect(reader.findings).toEqual(straight.findings);
    // It kept nothing a checkpoint would need: giving one would be a checkpoint that lies.
    expect(() => reader.checkpoint()).toThrow('this gate was made never to be checkpointed');
  });

  it('when stopped after any record and continued from its checkpoint (JSON), then it releases and finds the same', () => {
    const whole = new Reader();
    for (const r of log) whole.offer(r);
    finish(whole);
    for (let cut = 0; cut <= log.length; cut++) {
      const reader = new Reader();
      // Checkpoints are taken at every step and merged, as the database keeps the latest row of each.
      const merged: GateCheckpoint<string> = { chains: [], agentKeys: [], untrusted: [], commands: [], partitions: [] };
      const held = new Map<number, Map<string, HeldRow>>();
      const merge = (cp: GateCheckpoint<string>) => {
        const keep = <X>(rows: X[], next: X[], key: (x: X) => string) => {
          const m = new Map(rows.map((x) => [key(x), x]));
          for (const x of next) m.set(key(x), x);
          return [...m.values()];
        };
        merged.chains = keep(merged.chains, cp.chains, (c) => `${c.producerId}@${c.epoch}`);
        merged.agentKeys = keep(merged.agentKeys, cp.agentKeys, (k) => k.producerId);
        merged.untrusted = keep(merged.untrusted, cp.untrusted, (u) => u.join('@'));
        merged.commands = keep(merged.commands, cp.commands, (c) => c[0]);
        // Held records as the database keeps them: dropped below heldFrom, new ones added.
        for (const p of cp.partitions) {
          const rows = held.get(p.partition) ?? new Map<string, HeldRow>();
          held.set(p.partition, rows);
          for (const offset of [...rows.keys()])
            if (p.heldFrom === undefined || BigInt(offset) < BigInt(p.heldFrom)) rows.delete(offset);
          for (const h of p.held) rows.set(h.offset, h);
        }
        merged.partitions = keep(merged.partitions, cp.partitions, (p) => String(p.partition)).map((p) => ({
          partition: p.partition,
          nextOffset: p.nextOffset,
          held: [...(held.get(p.partition)?.values() ?? [])].sort((a, b) => Number(a.offset) - Number(b.offset)),
        }));
      };
      for (const r of log.slice(0, cut)) {
        reader.offer(r);
        if (r.value.length % 3 === 0) merge(reader.checkpoint());
      }
      merge(reader.checkpoint());
      reader.resume(merged);
      for (const r of log.slice(cut)) reader.offer(r);
      finish(reader);
      expect({ cut, released: reader.released }).toEqual({ cut, released: whole.released });
      // Each binding the checkpoint holds names the records of the log that prove it, even when
      // its seal lies in another partition or it was held across the checkpoint.
      merge(reader.checkpoint());
      expect(merged.agentKeys.map((k) => k.bound.length)).toEqual([1, 1]);
      expect({ cut, problems: merged.agentKeys.flatMap((k) => agentKeyStateProblems(k, logAt(log), trust)) }).toEqual({
        cut,
        problems: [],
      });
      // The one difference a checkpoint makes: a copy of a record from before it is not told from a conflict.
      expect({ cut, findings: reader.findings.map(sameKind) }).toEqual({
        cut,
        findings: whole.findings.map(sameKind),
      });
    }
  });

  it('when a partition is read on from further than its checkpoint says (an edited offset), then each chain that lost records there is a finding', () => {
    const cut = Math.floor(log.length / 2);
    const reader = new Reader();
    for (const r of log.slice(0, cut)) reader.offer(r);
    const cp = reader.checkpoint();
    reader.resume(cp);
    // The records of partition 1 right after the checkpoint are never read.
    const rest = log.slice(cut);
    const skipped = rest.filter((r) => r.partition === 1).slice(0, 2);
    for (const r of rest) if (!skipped.includes(r)) reader.offer(r);
    finish(reader);
    // What came after the hole waits for what the hole held; once the reader is live, it is a
    // finding naming the chain (the log's own defects are found as before).
    const chains = skipped.map((r) => recordAt(r.partition, '0', r.value).body!.producer!.producerId);
    expect(chains.length).toBe(2);
    for (const chain of chains)
      expect(reader.findings).toContainEqual(expect.stringMatching(new RegExp(`^(unsealed|gap) ${chain}#`)));
    expect(whole(log).findings.some((f) => /^(unsealed|gap)/.test(f))).toBe(false);
  });
});
