// The agent's one long-lived stream to the dispatcher's AgentGateway. Hello first, then whatever
// the agent has to say; every message carries an id the dispatcher acknowledges once durable.
// Messages that must survive a dropped stream (command results) are sent again, with the same
// id, on the next connection. While connected, no timer runs: keepalive is grpc-js's, per channel.
import type { ChannelCredentials, ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import type { dispatcher } from '@rebootless/contracts';
import { traceFields } from '@rebootless/telemetry';
import type { GatewayRelay } from './event-sink';
import { openConnectStream, sharedClient } from './grpc-clients';

type Payload = Omit<dispatcher.ConnectRequest, 'messageId'>;

interface Outgoing {
  request: dispatcher.ConnectRequest;
  /** Sent again on reconnect until acknowledged. */
  durable: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface GatewayLinkOptions {
  /**
   * The dispatcher, or several instances of it: the stream goes to one, and when it drops, the
   * next connection tries the next one (docs/adr/0025).
   */
  readonly address: string | readonly string[];
  /** Which address to try first (an agent spreads its fleet by its host id); default 0. */
  readonly firstAddress?: number;
  readonly credentials: ChannelCredentials;
  /** Hello and inventory, built fresh on every connection. */
  readonly greeting: () => Promise<{ hello: dispatcher.AgentHello; inventory: dispatcher.Inventory }>;
  readonly onCommand: (command: dispatcher.ConnectResponse) => void;
  /** After hello and inventory went out and the unacknowledged messages were sent again. */
  readonly onConnected: () => void;
  readonly log: (message: string) => void;
  readonly backoff?: { minMs: number; maxMs: number };
  readonly now?: () => number;
}

export class StreamDroppedError extends Error {
  override readonly name = 'StreamDroppedError';
}

export class GatewayLink implements GatewayRelay {
  private call: ClientDuplexStream<dispatcher.ConnectRequest, dispatcher.ConnectResponse> | undefined;
  private held: { client: import('@grpc/grpc-js').Client; release(): void };
  private readonly addresses: readonly string[];
  private addressIndex: number;
  private readonly unacked = new Map<string, Outgoing>();
  private nextId: bigint;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private ready = false;
  lastSentAt: number | undefined;
  lastAckAt: number | undefined;

  constructor(private readonly options: GatewayLinkOptions) {
    this.addresses = typeof options.address === 'string' ? [options.address] : options.address;
    if (this.addresses.length === 0) throw new Error('the gateway link needs at least one dispatcher address');
    this.addressIndex = (options.firstAddress ?? 0) % this.addresses.length;
    this.held = sharedClient(this.address, options.credentials);
    // Unique per host across restarts without storing a counter: microseconds at start.
    this.nextId = BigInt(Date.now()) * 1000n;
  }

  get connected(): boolean {
    return this.ready;
  }

  /** The client of the dispatcher instance this link talks to now: its site artifact cache is asked on it too. */
  get client(): import('@grpc/grpc-js').Client {
    return this.held.client;
  }

  /** The dispatcher address the stream goes to (or will go to next). */
  get address(): string {
    return this.addresses[this.addressIndex]!;
  }

  /** After a drop, the next instance: one that died is not waited for. */
  private moveOn(): void {
    if (this.addresses.length < 2) return;
    this.addressIndex = (this.addressIndex + 1) % this.addresses.length;
    const old = this.held;
    this.held = sharedClient(this.address, this.options.credentials);
    old.release();
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const call = this.call;
    this.call = undefined;
    this.ready = false;
    call?.end();
    call?.cancel();
    for (const o of this.unacked.values()) o.reject(new StreamDroppedError('the agent is stopping'));
    this.unacked.clear();
    this.held.release();
  }

  /** Sends a message that must arrive: kept and sent again after a reconnect until acknowledged. */
  sendDurable(payload: Payload): Promise<void> {
    return this.enqueue(payload, true);
  }

  relay(envelopes: readonly Buffer[], sentBefore = false): Promise<void> {
    if (!this.ready) return Promise.reject(new StreamDroppedError('not connected to the dispatcher'));
    // The active trace (the outbox sends under the span that recorded the events): the
    // dispatcher writes them to Kafka under it.
    return this.enqueue({ relayEvents: { envelopes: [...envelopes], sentBefore }, ...traceFields() }, false);
  }

  /** Inventory is only worth sending while connected: each connection starts with a fresh one. */
  sendInventory(inventory: dispatcher.Inventory): void {
    if (!this.ready) return;
    this.enqueue({ inventory }, false).catch(() => undefined);
  }

  private enqueue(payload: Payload, durable: boolean): Promise<void> {
    const messageId = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const outgoing: Outgoing = { request: { messageId, ...payload }, durable, resolve, reject };
      this.unacked.set(messageId, outgoing);
      if (this.ready) this.write(outgoing.request);
    });
  }

  private write(request: dispatcher.ConnectRequest): void {
    this.call?.write(request);
    this.lastSentAt = (this.options.now ?? Date.now)();
  }

  private connect(): void {
    if (this.stopped) return;
    const call = openConnectStream(this.held.client);
    this.call = call;
    let greeted = false;
    call.on('data', (response: dispatcher.ConnectResponse) => {
      if (this.call !== call) return;
      if (response.ack) {
        this.lastAckAt = (this.options.now ?? Date.now)();
        this.failures = 0;
        const outgoing = this.unacked.get(response.ack.messageId);
        if (outgoing) {
          this.unacked.delete(response.ack.messageId);
          outgoing.resolve();
        }
        return;
      }
      this.options.onCommand(response);
    });
    const dropped = (why: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      this.ready = false;
      for (const [id, o] of this.unacked) {
        if (!o.durable) {
          this.unacked.delete(id);
          o.reject(new StreamDroppedError(why));
        }
      }
      if (!this.stopped) this.scheduleReconnect(why);
    };
    call.on('error', (error: ServiceError) => dropped(`${error.code} ${error.details}`));
    call.on('end', () => dropped('the dispatcher ended the stream'));
    void this.options
      .greeting()
      .then(({ hello, inventory }) => {
        if (this.call !== call || greeted) return;
        greeted = true;
        // Hello first, always; then the fresh inventory, then what was never acknowledged.
        this.write({ messageId: String(this.nextId++), hello });
        this.ready = true;
        this.write({ messageId: String(this.nextId++), inventory });
        for (const o of this.unacked.values()) this.write(o.request);
        this.options.onConnected();
      })
      .catch((error: unknown) => {
        this.options.log(`gateway: cannot greet the dispatcher: ${String(error)}`);
        call.cancel();
      });
  }

  private scheduleReconnect(why: string): void {
    const { minMs, maxMs } = this.options.backoff ?? { minMs: 500, maxMs: 30_000 };
    const from = this.address;
    this.moveOn();
    this.failures += 1;
    const base = Math.min(maxMs, minMs * 2 ** Math.min(this.failures - 1, 16));
    // Jitter, so a dispatcher restart is not met by every agent in the same instant.
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.options.log(
      `gateway: stream to ${from} dropped (${why}); reconnecting${from === this.address ? '' : ` to ${this.address}`} in ${delay} ms`,
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }
}
