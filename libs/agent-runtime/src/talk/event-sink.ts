// How the agent's signed envelopes reach the log (brief: "delivery is through an EventSink port").
// Both sinks only carry bytes: the agent signed them, nobody on the way can alter them unseen.
import type { Kafka, Producer } from 'kafkajs';
import { GatheredSends, WholeSend } from '@rebootless/kafka';
import { traceFields, withTraceContext, type TraceFields } from '@rebootless/telemetry';

/** The agent's gateway stream, as a sink sees it. */
export interface GatewayRelay {
  /** The stream is up: a relay sent now is on its way, not refused at once. */
  readonly connected: boolean;
  /**
   * Sends RelayEvents; resolves on the dispatcher's Ack (the bytes are in Kafka), rejects when the
   * stream drops. `sentBefore`: some were sent before without an answer, so may be in the log.
   */
  relay(envelopes: readonly Buffer[], sentBefore?: boolean): Promise<void>;
}

export interface EventSink {
  /**
   * Writes one host's envelopes, in chain order, to the log; resolves once the log holds all of
   * them. A rejection means "try again later": the agent keeps them in its outbox. `sentBefore`:
   * some were handed to a delivery that never answered (they may have reached the log).
   */
  deliver(hostId: string, envelopes: readonly Buffer[], gateway: GatewayRelay, sentBefore?: boolean): Promise<void>;
  /** Deliveries go through the gateway stream: while it is down, none is tried. */
  readonly throughGateway?: boolean;
  close(): Promise<void>;
}

/** Through the dispatcher: for hosts that cannot reach Kafka. */
export class GatewayRelaySink implements EventSink {
  readonly throughGateway = true;

  deliver(_hostId: string, envelopes: readonly Buffer[], gateway: GatewayRelay, sentBefore = false): Promise<void> {
    return gateway.relay(envelopes, sentBefore);
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

/**
 * Straight to Kafka with acks from all replicas, key `host/<hostId>`. One instance (one
 * idempotent producer) serves any number of agents: their deliveries are gathered into one
 * request while the previous one is under way, so many agents cost one round trip, not many.
 */
export class KafkaEventSink implements EventSink {
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private closed = false;
  private readonly sends: GatheredSends<TraceFields>;

  constructor(private readonly options: KafkaEventSinkOptions) {
    this.sends = new GatheredSends<TraceFields>({
      whole: new WholeSend(options.kafka, options.topic),
      producer: () => this.connected(),
      // A producer that failed may hold a broken connection or idempotence state: start over.
      failed: async () => {
        const producer = this.producer;
        this.producer = undefined;
        if (producer) await producer.disconnect().catch(() => undefined);
      },
      keyOf: (trace) => trace.traceparent ?? '',
      within: (trace, send) => withTraceContext(trace, send),
    });
  }

  deliver(hostId: string, envelopes: readonly Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the Kafka event sink is closed'));
    const key = `host/${hostId}`;
    return this.sends.send(
      envelopes.map((value) => ({ key, value })),
      traceFields(),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const producer = this.producer;
    this.producer = undefined;
    this.connecting = undefined;
    if (producer) await producer.disconnect().catch(() => undefined);
  }

  private async connected(): Promise<Producer> {
    if (this.closed) throw new Error('the Kafka event sink is closed');
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
}
