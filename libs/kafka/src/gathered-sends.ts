// Many small deliveries to the log (agents' relayed events, an agent-side sink shared by many
// agents) gathered into bounded requests, one request under way at a time: a hundred thousand
// agents delivering at once cost a few hundred round trips, not a hundred thousand requests
// queued in the client, each waiting (and timing out) behind the others.
import type { Producer } from 'kafkajs';
import type { KeyedRecord, WholeSend } from './whole-send';

/** The broker refuses a record batch over message.max.bytes (1 MB by default). */
const MAX_REQUEST_BYTES = 256 * 1024;

export interface GatheredSendsOptions<Context> {
  readonly whole: WholeSend;
  /** The producer to send with (made on first use, and again after a failure). */
  producer(): Promise<Producer>;
  /** A request failed: the producer may hold a broken connection or idempotence state. */
  failed(error: Error): Promise<void>;
  /**
   * Deliveries gather only with those of the same key, and their request is sent `within` their
   * context: kafkajs gives a request one parent span, so one request holds one trace's deliveries.
   */
  keyOf?(context: Context): string;
  within?(context: Context, send: () => Promise<void>): Promise<void>;
  maxRequestBytes?: number;
}

interface Waiting<Context> {
  records: readonly KeyedRecord[];
  context: Context;
  resolve(): void;
  reject(error: Error): void;
}

export class GatheredSends<Context = undefined> {
  private queue: Waiting<Context>[] = [];
  private sending = false;

  constructor(private readonly opts: GatheredSendsOptions<Context>) {}

  /**
   * Resolves once all in-sync replicas hold every record of this delivery; rejects with the
   * request's failure (the whole request, so every delivery in it, is to be tried again).
   * One delivery is never split: its records stay in one request, in order.
   */
  send(records: readonly KeyedRecord[], context: Context): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ records, context, resolve, reject });
      void this.pump();
    });
  }

  /** Deliveries waiting for a request. */
  get waiting(): number {
    return this.queue.length;
  }

  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const max = this.opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
        const key = this.opts.keyOf?.(this.queue[0]!.context) ?? '';
        let bytes = 0;
        let take = 0;
        while (
          take < this.queue.length &&
          (take === 0 || (bytes < max && (this.opts.keyOf?.(this.queue[take]!.context) ?? '') === key))
        ) {
          for (const r of this.queue[take]!.records) bytes += r.value.length + r.key.length + 32;
          take += 1;
        }
        const batch = this.queue.splice(0, take);
        try {
          const producer = await this.opts.producer();
          const send = () =>
            this.opts.whole.send(
              producer,
              batch.flatMap((w) => w.records),
            );
          await (this.opts.within ? this.opts.within(batch[0]!.context, send) : send());
          for (const w of batch) w.resolve();
        } catch (error) {
          const reason = error instanceof Error ? error : new Error(String(error));
          await this.opts.failed(reason).catch(() => undefined);
          for (const w of batch) w.reject(reason);
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
