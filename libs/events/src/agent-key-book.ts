import { events } from '@rebootless/contracts';

/**
 * Which agent keys are valid for which host (docs/adr/0012, "Agent keys are vouched for"): an
 * agent epoch's key counts only once a binding (`AgentKeyBound`) the dispatcher sealed has been
 * released, and stops counting once an `AgentKeyRevoked` names it. A key revoked for a producer
 * stays revoked: a later binding of the same key is ignored, so a rotation needs a new key.
 * Pure: the gate feeds it released events.
 */
export interface AgentKeyBinding {
  hostId: string;
  producerId: string;
  epoch: number;
  publicKey: Uint8Array;
}

const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');

/**
 * The sealed record of the log that established a binding or a revocation (docs/adr/0028): a
 * checkpoint names it so that a ledger resuming from the checkpoint reads it again and believes
 * the key only if the record says so.
 */
export interface KeyEventSource {
  partition: number;
  offset: string;
  /** The record's chain hash, hex. */
  hash: string;
  /**
   * The records of its producer's chain after it up to the one whose seal covers it, by position
   * (empty: it carries its own seal).
   */
  sealedBy: [partition: number, offset: string][];
}

/** One producer's bindings and revocations as a checkpoint keeps them (JSON-safe, keys in hex). */
export interface AgentKeyState {
  producerId: string;
  /** Each epoch bound and not revoked, its key, and the record that bound it. */
  bound: [epoch: number, key: string, source?: KeyEventSource][];
  revoked: string[];
  revokedEpochs: number[];
  /** Each revocation (its epoch, 0: every epoch bound then) and its record. */
  revocations?: [epoch: number, source: KeyEventSource][];
}

interface Bound {
  epoch: number;
  key: string;
  source?: KeyEventSource;
}

export class AgentKeyBook {
  /**
   * producer id → each epoch bound, its key's hex and the record that bound it. A list, not a
   * map: nearly every agent has one epoch, and a dispatcher holds 100,000 agents twice (ADR 0029).
   */
  private readonly bound = new Map<string, Bound[]>();
  /** producer id → its revocations and their records. */
  private readonly revocations = new Map<string, [number, KeyEventSource][]>();
  /** producer id → keys revoked (hex). */
  private readonly revoked = new Map<string, Set<string>>();
  /** producer id → epochs whose key was revoked. */
  private readonly revokedEpochs = new Map<string, Set<number>>();
  /** Producers whose bindings changed since the last takeChanged(). */
  private changed = new Set<string>();

  /** `tracksChanges` false: never checkpointed, so nothing is kept for takeChanged() (a dispatcher). */
  constructor(private readonly tracksChanges = true) {}

  private touch(producerId: string): void {
    if (this.tracksChanges) this.changed.add(producerId);
  }

  /** The state of each producer changed since the last call, for a checkpoint. */
  takeChanged(): AgentKeyState[] {
    const out = [...this.changed].map((producerId): AgentKeyState => {
      const revocations = this.revocations.get(producerId);
      return {
        producerId,
        bound: (this.bound.get(producerId) ?? []).map((b): AgentKeyState['bound'][number] =>
          b.source ? [b.epoch, b.key, b.source] : [b.epoch, b.key],
        ),
        revoked: [...(this.revoked.get(producerId) ?? [])],
        revokedEpochs: [...(this.revokedEpochs.get(producerId) ?? [])],
        ...(revocations ? { revocations: [...revocations] } : {}),
      };
    });
    this.changed = new Set();
    return out;
  }

  /** Continues from a checkpoint's states. */
  restore(states: readonly AgentKeyState[]): void {
    for (const s of states) {
      if (s.bound.length > 0)
        this.bound.set(
          s.producerId,
          s.bound.map(([epoch, key, source]) => (source ? { epoch, key, source } : { epoch, key })),
        );
      if (s.revocations?.length) this.revocations.set(s.producerId, [...s.revocations]);
      if (s.revoked.length > 0) this.revoked.set(s.producerId, new Set(s.revoked));
      if (s.revokedEpochs.length > 0) this.revokedEpochs.set(s.producerId, new Set(s.revokedEpochs));
    }
  }

  /** Why `b` cannot bind, or undefined when it bound its key. `source`: the record it was read from. */
  bind(b: events.AgentKeyBound, source?: KeyEventSource): string | undefined {
    if (b.producerId !== `agent/${b.hostId}`)
      return `the binding names producer "${b.producerId}", which is not the agent of host "${b.hostId}"`;
    if (b.epoch < 1) return `the binding of ${b.producerId} names no epoch`;
    if (b.publicKey.length !== 32) return `the binding of ${b.producerId} carries no 32-byte Ed25519 key`;
    const key = hex(b.publicKey);
    if (this.revoked.get(b.producerId)?.has(key))
      return `the binding of ${b.producerId} epoch ${b.epoch} names key ${key.slice(0, 16)}…, which was revoked`;
    const epochs = this.bound.get(b.producerId) ?? [];
    this.bound.set(b.producerId, epochs);
    this.touch(b.producerId);
    const already = epochs.find((e) => e.epoch === b.epoch);
    if (already !== undefined && already.key !== key)
      return `${b.producerId} epoch ${b.epoch} is already bound to another key`;
    // The first record that bound it stays its source: a copy says nothing new.
    if (already === undefined) epochs.push(source ? { epoch: b.epoch, key, source } : { epoch: b.epoch, key });
    return undefined;
  }

  /** Revokes the key of `epoch` (0: of every epoch bound so far); returns the keys revoked. */
  revoke(r: events.AgentKeyRevoked, source?: KeyEventSource): number {
    const epochs = this.bound.get(r.producerId);
    if (!epochs) return 0;
    this.touch(r.producerId);
    if (source) {
      const list = this.revocations.get(r.producerId) ?? [];
      this.revocations.set(r.producerId, list);
      list.push([r.epoch, source]);
    }
    const keys = this.revoked.get(r.producerId) ?? new Set<string>();
    this.revoked.set(r.producerId, keys);
    const revokedEpochs = this.revokedEpochs.get(r.producerId) ?? new Set<number>();
    this.revokedEpochs.set(r.producerId, revokedEpochs);
    const kept = epochs.filter(({ epoch, key }) => {
      if (r.epoch !== 0 && epoch !== r.epoch) return true;
      keys.add(key);
      revokedEpochs.add(epoch);
      return false;
    });
    this.bound.set(r.producerId, kept);
    return epochs.length - kept.length;
  }

  /** The producer's epochs bound and not revoked, oldest first, with their keys. */
  boundEpochs(producerId: string): { epoch: number; publicKey: Uint8Array }[] {
    return [...(this.bound.get(producerId) ?? [])]
      .sort((a, b) => a.epoch - b.epoch)
      .map(({ epoch, key }) => ({ epoch, publicKey: Buffer.from(key, 'hex') }));
  }

  /**
   * Why an agent's relayed event must be refused because of a revocation, or undefined: an epoch
   * start carrying a revoked key, or any event of an epoch whose key was revoked.
   */
  revocationOf(body: events.EventBody): string | undefined {
    const p = body.producer;
    if (!p || (!this.revoked.has(p.producerId) && !this.revokedEpochs.has(p.producerId))) return undefined;
    const started = body.chainEpochStarted;
    if (started && this.isRevoked(p.producerId, started.publicKey))
      return `${p.producerId} epoch ${p.epoch} starts with key ${hex(started.publicKey).slice(0, 16)}, which an operator revoked; a rebuilt host re-enrols with a new key`;
    if (this.revokedEpochs.get(p.producerId)?.has(p.epoch))
      return `${p.producerId} epoch ${p.epoch}: its key was revoked by an operator; a rebuilt host re-enrols with a new key`;
    return undefined;
  }

  /** The key bound to the producer's epoch and not revoked, if any. */
  keyFor(producerId: string, epoch: number): Uint8Array | undefined {
    const key = this.bound.get(producerId)?.find((b) => b.epoch === epoch)?.key;
    return key === undefined ? undefined : Buffer.from(key, 'hex');
  }

  /** Every key bound to the producer's epochs and not revoked. */
  keysOf(producerId: string): Uint8Array[] {
    return (this.bound.get(producerId) ?? []).map((b) => Buffer.from(b.key, 'hex'));
  }

  /** Whether any key was revoked at all (most logs: none, and nothing to look up). */
  get revokes(): boolean {
    return this.revoked.size > 0;
  }

  isRevoked(producerId: string, key: Uint8Array): boolean {
    return this.revoked.get(producerId)?.has(hex(key)) ?? false;
  }
}
