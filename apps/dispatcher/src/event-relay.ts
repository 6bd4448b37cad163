// Writes the signed envelopes an agent relays over its stream to the event log, byte for byte,
// keyed by its host, so its facts share a partition with the commands sent to it.
import type { Kafka, Producer } from 'kafkajs';
import type { events } from '@rebootless/contracts';
import { authorityViolation, decodeEvent } from '@rebootless/events';
import { GatheredSends, WholeSend } from '@rebootless/kafka';
import { withTraceContext, type TraceFields } from '@rebootless/telemetry';
import { PermissionError } from './dispatcher-errors';

export class EventRelay {
  /** The agents' relays, gathered into bounded requests (thousands of agents relay at once). */
  private readonly sends: GatheredSends<TraceFields>;

  private constructor(
    private readonly kafka: Kafka,
    private producer: Producer,
    topic: string,
  ) {
    this.sends = new GatheredSends<TraceFields>({
      whole: new WholeSend(kafka, topic),
      producer: () => Promise.resolve(this.producer),
      // After a failed send kafkajs' idempotence sequence may be out of step: start a new producer.
      failed: async () => {
        const old = this.producer;
        this.producer = newProducer(this.kafka);
        await old.disconnect().catch(() => undefined);
        await this.producer.connect().catch(() => undefined); // connected again on the next send
      },
      // Each request's producer span joins the trace of the agent work that recorded its events.
      keyOf: (trace) => trace.traceparent ?? '',
      within: (trace, send) => withTraceContext(trace, send),
    });
  }

  static async open(kafka: Kafka, topic: string): Promise<EventRelay> {
    const producer = newProducer(kafka);
    await producer.connect();
    return new EventRelay(kafka, producer, topic);
  }

  /**
   * Resolves once every envelope is acknowledged by all in-sync replicas; only then may the
   * agent drop them from its outbox. An agent may relay only its own chain, and in it only what
   * the producer authority table lets an agent say about its own host (docs/adr/0012): one
   * envelope that is not its to say refuses the whole batch, before anything is written.
   */
  async relay(hostId: string, envelopes: readonly Uint8Array[], trace: TraceFields = {}): Promise<void> {
    this.check(hostId, envelopes);
    if (envelopes.length === 0) return;
    const records = envelopes.map((value) => ({ key: `host/${hostId}`, value: Buffer.from(value) }));
    // Checked partition by partition (WholeSend); a refusal leaves the envelopes in the agent's outbox.
    await this.sends.send(records, trace);
  }

  /**
   * Throws a PermissionError naming the first envelope that is not the agent's to relay.
   * `refusal`: why an envelope may not be relayed (default: the producer authority table alone;
   * the gateway adds the commands it sent and the keys operators revoked).
   */
  check(
    hostId: string,
    envelopes: readonly Uint8Array[],
    refusal: (body: events.EventBody) => string | undefined = (b) => authorityViolation(b),
  ): void {
    const producerId = `agent/${hostId}`;
    for (const [i, bytes] of envelopes.entries()) {
      let body;
      try {
        body = decodeEvent(bytes).body;
      } catch (error) {
        throw new PermissionError(`relay_events.envelopes[${i}] is not an event envelope: ${String(error)}`);
      }
      const claimed = body.producer?.producerId ?? '';
      if (claimed !== producerId) {
        throw new PermissionError(
          `relay_events.envelopes[${i}] belongs to producer ${claimed}; the agent of ${hostId} may relay only ${producerId}`,
        );
      }
      const why = refusal(body);
      if (why) throw new PermissionError(`relay_events.envelopes[${i}]: ${why}`);
    }
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}

function newProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
}
