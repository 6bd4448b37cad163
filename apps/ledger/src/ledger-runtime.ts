import * as path from 'node:path';
import { Logger } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { kafkaClient } from '@rebootless/kafka';
import {
  LedgerConsumer,
  LedgerDatabase,
  LedgerKeyTrust,
  LedgerQueries,
  ReadModelChecker,
  serviceKeysFrom,
} from '@rebootless/ledger-store';
import { formatHostPort } from '@rebootless/service';
import type { LedgerConfig } from './config';

const log = new Logger('ledger');

/** Everything the ledger runs: its database, the consumer projecting into it, the queries over it. */
export class LedgerRuntime {
  private constructor(
    readonly config: LedgerConfig,
    readonly kafka: Kafka,
    readonly db: LedgerDatabase,
    readonly consumer: LedgerConsumer,
    readonly queries: LedgerQueries,
    readonly serviceKeys: Map<string, Uint8Array[]>,
  ) {
    this.readModels = new ReadModelChecker({ kafka, topic: config.eventsTopic, serviceKeys, stored: db });
  }

  /** `ledger verify`'s comparison of the read models with the log, its re-fold kept while the log stands. */
  readonly readModels: ReadModelChecker;

  static async open(config: LedgerConfig): Promise<LedgerRuntime> {
    const kafka = kafkaClient(config.kafkaBrokers.map(formatHostPort), 'rebootless-ledger');
    const db = await LedgerDatabase.open({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    // The ledger vouches for its own chain, the configured keys and the named services' data dirs.
    const serviceKeys = serviceKeysFrom(config.trustedProducers ?? [], [
      config.dataDir,
      ...(config.trustedDataDirs ?? []).map((d) => path.resolve(d)),
    ]);
    const consumer = new LedgerConsumer({
      kafka,
      db,
      topic: config.eventsTopic,
      serviceKeys,
      unsealedTailTimeoutMs: config.unsealedTailTimeoutMs,
      onRecovery: ({ attempt, error, retryInMs }) =>
        retryInMs === undefined
          ? log.log(`projecting again after ${attempt} attempt(s): the database answers`)
          : log.warn(
              `the database refused a write or a reload (${error?.message ?? 'unknown error'}); trying again in ${retryInMs} ms`,
            ),
    });
    const queries = new LedgerQueries(db, { onlineWindowMs: config.onlineWindowSeconds * 1000 });
    return new LedgerRuntime(config, kafka, db, consumer, queries, serviceKeys);
  }

  /** Trust for re-verifying the whole log: configured services plus every agent key the gateway bound so far. */
  keyTrust(): LedgerKeyTrust {
    return this.consumer.keyTrust();
  }

  async close(): Promise<void> {
    await this.readModels.close();
    await this.consumer.stop();
    await this.db.close();
  }
}

export const LEDGER_RUNTIME = Symbol('rebootless.ledger-runtime');
