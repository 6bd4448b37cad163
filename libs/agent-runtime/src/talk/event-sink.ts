// How the agent's signed envelopes reach the log (brief: "delivery is through an EventSink port").
// Both sinks only carry bytes: the agent signed them, nobody on the way can alter them unseen.
import type { Kafka, Producer } from 'kafkajs';
import { WholeSend } from '@rebootless/kafka';
import { traceFields, withTraceContext, type TraceFields } from '@rebootless/telemetry';

/** The agent's gateway stream, as a sink sees it. */
export interface GatewayRelay {
  /** Sends RelayEvents; resolves on the dispatcher's Ack (the bytes are in Kafka), rejects when the stream drops. */
  relay(envelopes: readonly Buffer[]): Promise<void>;
}

export interface EventSink {
  /**
   * Writes one host's envelopes, in chain order, to the log; resolves once the log holds all of
   * them. A rejection means "try again later": the agent keeps them in its outbox.
   */
  deliver(hostId: string, envelopes: readonly Buffer[], gateway: GatewayRelay): Promise<void>;
  close(): Promise<void>;
}

/** Through the dispatcher: for hosts that cannot reach Kafka. */
export class GatewayRelaySink implements EventSink {
  deliver(_hostId: string, envelopes: readonly Buffer[], gateway: GatewayRelay): Promise<void> {
    return gateway.relay(envelopes);
  }

  /** Nothing to release: the stream belongs to the agent. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface KafkaEventSinkOptions {
  readonly kafka: Kafka;
  readonly topic: string;
}

const MAX_REQUEST_BYTES = 256 * 1024;

interface Waiting {
  messages: { key: string; value: Buffer }[];
  /** The trace the delivery was asked in (the agent's outbox sends under the span that recorded it). */
  trace: TraceFields;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Straight to Kafka with acks from all replicas, key `host/<hostId>`. One instance (one
 * idempotent producer) serves any number of agents: their deliveries are gathered into one
 * request while the previous one is under way, so many agents cost one round trip, not many.
 */
export class KafkaEventSink implements EventSink {
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private queue: Waiting[] = [];
  private sending = false;
  private closed = false;

  private readonly whole: WholeSend;

  constructor(private readonly options: KafkaEventSinkOptions) {
    this.whole = new WholeSend(options.kafka, options.topic);
  }

  deliver(hostId: string, envelopes: readonly Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the Kafka event sink is closed'));
    const key = `host/${hostId}`;
    return new Promise((resolve, reject) => {
      this.queue.push({ messages: envelopes.map((value) => ({ key, value })), trace: traceFields(), resolve, reject });
      void this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const producer = this.producer;
    this.producer = undefined;
    this.connecting = undefined;
    if (producer) await producer.disconnect().catch(() => undefined);
  }

  private async connected(): Promise<Producer> {
    if (this.producer) return this.producer;
    this.connecting ??= (async () => {
      const producer = this.options.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // A few quick retries: the agent's outbox retries for as long as it takes.
        retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 },
      });
      try {
        await producer.connect();
      } catch (error) {
        await producer.disconnect().catch(() => undefined);
        throw error;
      }
      this.producer = producer;
      return producer;
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        // Bounded requests: the broker refuses a record batch over message.max.bytes (1 MB by
        // default), and one delivery alone is never split, so its envelopes stay together.
        // kafkajs gives a send one parent span: one request holds one trace's deliveries
        // (untraced, all have none: gathered as before).
        let bytes = 0;
        let take = 0;
        const trace = this.queue[0]!.trace;
        while (
          take < this.queue.length &&
          (take === 0 || (bytes < MAX_REQUEST_BYTES && this.queue[take]!.trace.traceparent === trace.traceparent))
        ) {
          for (const m of this.queue[take]!.messages) bytes += m.value.length + m.key.length + 32;
          take += 1;
        }
        const batch = this.queue.splice(0, take);
        try {
          const producer = await this.connected();
          // Checked partition by partition: kafkajs can report whole a send it left a partition out of.
          await withTraceContext(trace, () =>
            this.whole.send(
              producer,
              batch.flatMap((w) => w.messages),
            ),
          );
          for (const w of batch) w.resolve();
        } catch (error) {
          // A producer that failed may hold a broken connection or idempotence state: start over.
          const producer = this.producer;
          this.producer = undefined;
          if (producer) await producer.disconnect().catch(() => undefined);
          const reason = error instanceof Error ? error : new Error(String(error));
          for (const w of batch) w.reject(reason);
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
