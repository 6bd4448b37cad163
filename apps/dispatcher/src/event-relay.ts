// Writes the signed envelopes an agent relays over its stream to the event log, byte for byte,
// keyed by its host, so its facts share a partition with the commands sent to it.
import type { Kafka, Producer } from 'kafkajs';
import { readEnvelope } from '@rebootless/events';
import { PermissionError } from './dispatcher-errors';

export class EventRelay {
  private constructor(
    private readonly producer: Producer,
    private readonly topic: string,
  ) {}

  static async open(kafka: Kafka, topic: string): Promise<EventRelay> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    return new EventRelay(producer, topic);
  }

  /**
   * Resolves once every envelope is acknowledged by all in-sync replicas; only then may the
   * agent drop them from its outbox. An agent may relay only its own chain.
   */
  async relay(hostId: string, envelopes: readonly Uint8Array[]): Promise<void> {
    const producerId = `agent/${hostId}`;
    for (const [i, bytes] of envelopes.entries()) {
      let claimed: string;
      try {
        claimed = readEnvelope(bytes).producerId;
      } catch (error) {
        throw new PermissionError(`relay_events.envelopes[${i}] is not an event envelope: ${String(error)}`);
      }
      if (claimed !== producerId) {
        throw new PermissionError(
          `relay_events.envelopes[${i}] belongs to producer ${claimed}; the agent of ${hostId} may relay only ${producerId}`,
        );
      }
    }
    if (envelopes.length === 0) return;
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: envelopes.map((value) => ({ key: `host/${hostId}`, value: Buffer.from(value) })),
    });
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
