import { randomUUID } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import { Client } from 'pg';
import { events } from '@rebootless/contracts';
import {
  ChainHead,
  ChainedEvent,
  EventDraft,
  EventPayload,
  SigningKey,
  appendToChain,
  generateSigningKey,
  startEpoch,
} from '@rebootless/events';

// Writing real signed event chains for the ledger's tests and benchmark: each producer keeps
// its own key and chain head, as the builder, the dispatcher and each agent do.

/** One producer's chain: an epoch start, then whatever it writes, every batch sealed. */
export class ScriptedProducer {
  head: ChainHead;
  readonly key: SigningKey;

  constructor(
    readonly producerId: string,
    opts: { key?: SigningKey; epoch?: number } = {},
  ) {
    this.key = opts.key ?? generateSigningKey();
    this.head = startEpoch(producerId, opts.epoch ?? 1);
  }

  /**
   * The epoch's first event, carrying the public key. An agent sends all it writes, this too,
   * on its host's stream, so its whole chain sits in one partition.
   */
  start(at: Date, stream = `producer/${this.producerId}`): ChainedEvent[] {
    return this.write([
      {
        stream,
        occurredAt: at,
        actor: { kind: events.ActorKind.ACTOR_KIND_SERVICE, id: this.producerId, origin: 'test' },
        payload: {
          type: 'ChainEpochStarted',
          data: {
            publicKey: this.key.rawPublicKey,
            previousEpoch: 0,
            reason: events.EpochReason.EPOCH_REASON_FIRST_START,
            detail: 'scripted',
          },
        },
      },
    ]);
  }

  write(drafts: readonly EventDraft[]): ChainedEvent[] {
    const out = appendToChain(this.head, drafts, this.key);
    this.head = out.head;
    return out.events;
  }
}

/** A plain kafkajs producer writing chained events with their stream as the key. */
/**
 * What the dispatcher's gateway writes when an agent relays its epoch start over a connection
 * holding the host's certificate (docs/adr/0012): the binding that makes the agent's key count.
 * For logs written straight to Kafka, signed by a dispatcher key the reader trusts.
 */
export function agentKeyBound(dispatcher: ScriptedProducer, agent: ScriptedProducer, at: Date): ChainedEvent[] {
  const hostId = agent.producerId.slice('agent/'.length);
  return dispatcher.write([
    {
      stream: `host/${hostId}`,
      occurredAt: at,
      payload: {
        type: 'AgentKeyBound',
        data: {
          hostId,
          producerId: agent.producerId,
          epoch: agent.head.epoch,
          publicKey: agent.key.rawPublicKey,
          certificateFingerprint: '',
          certificateIdentity: '',
        },
      },
    },
  ]);
}

/** An operator's revocation of an agent's epoch keys (0: every epoch bound so far), as the dispatcher writes it. */
export function agentKeyRevoked(
  dispatcher: ScriptedProducer,
  agent: ScriptedProducer,
  epoch: number,
  at: Date,
): ChainedEvent[] {
  const hostId = agent.producerId.slice('agent/'.length);
  return dispatcher.write([
    {
      stream: `host/${hostId}`,
      occurredAt: at,
      payload: { type: 'AgentKeyRevoked', data: { hostId, producerId: agent.producerId, epoch, reason: 'test' } },
    },
  ]);
}

export class LogWriter {
  private constructor(
    private readonly producer: Producer,
    readonly topic: string,
  ) {}

  static async open(kafka: Kafka, topic: string): Promise<LogWriter> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    return new LogWriter(producer, topic);
  }

  async send(chained: readonly ChainedEvent[]): Promise<void> {
    if (chained.length === 0) return;
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: chained.map((e) => ({ key: e.stream, value: e.envelope })),
    });
  }

  /** Raw bytes, for records no producer would write (tampered, forged, garbage). */
  async sendRaw(key: string, value: Buffer): Promise<void> {
    await this.producer.send({ topic: this.topic, acks: -1, messages: [{ key, value }] });
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}

/** A PostgreSQL database of its own on the server DATABASE_ADMIN_URL points at (else local trust auth). */
export async function createScratchDatabase(prefix = 'ledger_test'): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = process.env['DATABASE_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const client = new Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export interface FleetHistoryOptions {
  /** Total records to write (approximately: whole host rounds). */
  events: number;
  hosts: number;
  /** Each host's events are chained and sealed this many at a time. */
  eventsPerSeal?: number;
  start?: number;
  onProgress?: (written: number) => void;
}

const FLEET_KERNEL = '6.1.0-18-cloud-amd64';
const fleetFn = (name: string) => ({ object: 'vmlinux', name, sympos: 0 });
const FLEET_PATCHES = [
  {
    patchId: 'nft-verdict',
    version: '1',
    module: 'lp_nft_1',
    functions: [fleetFn('nft_verdict_init')],
    replace: false,
  },
  { patchId: 'tcp-ack', version: '1', module: 'lp_tcp_1', functions: [fleetFn('tcp_ack')], replace: false },
  {
    patchId: 'cumulative',
    version: '1',
    module: 'lp_cum_1',
    functions: [fleetFn('nft_verdict_init'), fleetFn('tcp_ack')],
    replace: true,
  },
] as const;

/**
 * A fleet's life as its agents report it, each agent's key bound by the dispatcher's gateway
 * (one sealed AgentKeyBound per host, on its stream, before its epoch): enrollment, then round after round of applying,
 * stacking, inventory, disabling a lower patch, an atomic replace and a reboot. Every host signs
 * its own chain (keyed host/<id>, one partition each); the builder publishes the patches first.
 */
export async function writeFleetHistory(
  writer: LogWriter,
  opts: FleetHistoryOptions,
): Promise<{ serviceKeys: Map<string, Uint8Array[]>; records: number }> {
  const start = opts.start ?? Date.UTC(2026, 0, 1);
  const perSeal = opts.eventsPerSeal ?? 16;
  let clock = start;
  const tick = () => new Date((clock += 7));
  const builder = new ScriptedProducer('builder');
  // The gateway that enrolled the hosts: it binds each agent's key before the agent's epoch start.
  const dispatcher = new ScriptedProducer('dispatcher');
  let batch: ChainedEvent[] = [...builder.start(tick()), ...dispatcher.start(tick())];
  for (const p of FLEET_PATCHES) {
    batch.push(
      ...builder.write([
        {
          stream: `patch/${p.patchId}`,
          occurredAt: tick(),
          payload: {
            type: 'PatchPublished',
            data: {
              patchId: p.patchId,
              version: p.version,
              buildId: `build-${p.patchId}`,
              artifacts: [
                { kernelRelease: FLEET_KERNEL, artifactDigest: `sha256:${p.module}`, vermagic: FLEET_KERNEL },
              ],
              cves: [{ id: `CVE-2026-${p.module}`, severity: events.Severity.SEVERITY_CRITICAL, cvssScore: '9.8' }],
              replace: p.replace,
              severity: events.Severity.SEVERITY_CRITICAL,
              patchName: p.patchId,
            },
          },
        },
      ]),
    );
  }
  let written = 0;
  const flush = async () => {
    await writer.send(batch);
    written += batch.length;
    batch = [];
    opts.onProgress?.(written);
  };
  const hosts = Array.from({ length: opts.hosts }, (_, i) => ({
    id: `host-${String(i).padStart(5, '0')}`,
    chain: new ScriptedProducer(`agent/host-${String(i).padStart(5, '0')}`),
    step: 0,
    boot: 1,
  }));
  const [a, b, cum] = FLEET_PATCHES;
  const live = (...ps: (typeof FLEET_PATCHES)[number][]): events.LivePatchState[] =>
    ps.map((p, i) => ({
      moduleName: p.module,
      enabled: true,
      transition: false,
      replace: p.replace,
      stackOrder: i + 1,
      functions: [...p.functions],
      objectsPatched: { vmlinux: true },
    }));
  const facts = (h: (typeof hosts)[number]): events.HostFacts => ({
    hostId: h.id,
    hostname: `${h.id}.fleet`,
    machineId: `m-${h.id}`,
    kernelRelease: FLEET_KERNEL,
    kernelVersion: '#1 SMP Debian',
    arch: 'x86_64',
    distro: 'debian 12',
    bootId: `${h.id}-boot-${h.boot}`,
    labels: { rack: `r${Number(h.id.slice(5)) % 20}` },
    agentVersion: '0.1.0',
    tainted: '32768',
    taintFlags: ['K'],
  });
  const applied = (h: (typeof hosts)[number], p: (typeof FLEET_PATCHES)[number], stack: events.LivePatchState[]) => ({
    type: 'PatchApplied' as const,
    data: {
      hostId: h.id,
      commandId: `c-${h.id}-${h.step}`,
      patchId: p.patchId,
      version: p.version,
      moduleName: p.module,
      transitionMs: '800',
      forced: false,
      replace: p.replace,
      functions: [...p.functions],
      stack,
    },
  });
  // One step of a host's cycle: the kernel state after each step follows from the one before.
  const next = (h: (typeof hosts)[number]): EventPayload => {
    const step = h.step++ % 8;
    switch (step) {
      case 0:
        return applied(h, a, live(a));
      case 1:
        return applied(h, b, live(a, b));
      case 2:
        return { type: 'HostInventoryReported', data: { facts: facts(h), patches: live(a, b) } };
      case 3:
        return {
          type: 'PatchReverted',
          data: {
            hostId: h.id,
            commandId: `c-${h.id}-${h.step}`,
            patchId: a.patchId,
            version: a.version,
            moduleName: a.module,
            transitionMs: '500',
            stack: live(b),
          },
        };
      case 4:
        return applied(h, cum, live(cum));
      case 5:
        return { type: 'HostInventoryReported', data: { facts: facts(h), patches: live(cum) } };
      case 6: {
        const previousBootId = `${h.id}-boot-${h.boot}`;
        h.boot += 1;
        return {
          type: 'HostBooted',
          data: { hostId: h.id, bootId: `${h.id}-boot-${h.boot}`, previousBootId, kernelRelease: FLEET_KERNEL },
        };
      }
      default:
        return { type: 'HostInventoryReported', data: { facts: facts(h), patches: [] } };
    }
  };
  const actor = (h: (typeof hosts)[number]) => ({ kind: events.ActorKind.ACTOR_KIND_HOST, id: h.id, origin: h.id });
  for (const h of hosts) {
    batch.push(...agentKeyBound(dispatcher, h.chain, tick()));
    batch.push(...h.chain.start(tick(), `host/${h.id}`));
    batch.push(
      ...h.chain.write([
        {
          stream: `host/${h.id}`,
          occurredAt: tick(),
          actor: actor(h),
          payload: { type: 'HostEnrolled', data: { facts: facts(h), agentPublicKey: h.chain.key.rawPublicKey } },
        },
      ]),
    );
    if (batch.length >= 2000) await flush();
  }
  while (written + batch.length < opts.events) {
    for (const h of hosts) {
      const n = Math.min(perSeal, opts.events - written - batch.length);
      if (n <= 0) break;
      const drafts: EventDraft[] = [];
      for (let i = 0; i < n; i++)
        drafts.push({ stream: `host/${h.id}`, occurredAt: tick(), actor: actor(h), payload: next(h) });
      batch.push(...h.chain.write(drafts));
      if (batch.length >= 2000) await flush();
    }
  }
  if (batch.length > 0) await flush();
  return {
    serviceKeys: new Map([
      ['builder', [builder.key.rawPublicKey]],
      ['dispatcher', [dispatcher.key.rawPublicKey]],
    ]),
    records: written,
  };
}
