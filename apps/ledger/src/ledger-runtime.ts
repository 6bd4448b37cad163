import * as path from 'node:path';
import { Logger } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { ChainStateFile, kafkaClient } from '@rebootless/kafka';
import {
  LedgerConsumer,
  LedgerDatabase,
  LedgerQueries,
  ReadModelChecker,
  serviceKeysFrom,
} from '@rebootless/ledger-store';
import { formatHostPort } from '@rebootless/service';
import { ledgerGroupId, type LedgerConfig } from './config';

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

  /** `rebuild`: a group of its own, never the live ledgers' (it replays into a fresh store). */
  static async open(config: LedgerConfig, opts: { rebuild?: boolean } = {}): Promise<LedgerRuntime> {
    const groupId = opts.rebuild ? undefined : ledgerGroupId(config);
    const kafka = kafkaClient(config.kafkaBrokers.map(formatHostPort), 'rebootless-ledger');
    const db = await LedgerDatabase.open({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    // The ledger's own key seals its checkpoints (docs/adr/0028); the database never holds it. Made
    // here if this is the first start, so that the keys read next include it.
    const producerId = config.instance ? `ledger/${config.instance}` : 'ledger';
    const { key } = new ChainStateFile(path.join(config.dataDir, 'chain'), producerId).loadOrCreateKey();
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
      checkpointSigner: { producerId, key },
      unsealedTailTimeoutMs: config.unsealedTailTimeoutMs,
      ...(groupId ? { groupId } : {}),
      sessionTimeoutMs: config.groupSessionTimeoutMs,
      onResume: (r) => {
        const took = `took over the projection of ${config.eventsTopic} (lease generation ${r.generation}, group ${groupId ?? 'of its own'}): `;
        if (r.refused.length > 0)
          return log.warn(
            `${took}its checkpoint was refused (an integrity finding names why), reading every partition from offset 0: ${r.refused.join('; ')}`,
          );
        log.log(
          took +
            (r.fromCheckpoint
              ? `resuming from the checkpoint at ${[...r.readFrom]
                  .sort(([a], [b]) => a - b)
                  .map(([p, o]) => `${p}:${o}`)
                  .join(' ')} with ${r.held} held record(s), loaded in ${r.loadMs} ms`
              : `no checkpoint, reading every partition from offset 0`),
        );
      },
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

  async close(): Promise<void> {
    await this.readModels.close();
    await this.consumer.stop();
    await this.db.close();
  }
}

export const LEDGER_RUNTIME = Symbol('rebootless.ledger-runtime');
