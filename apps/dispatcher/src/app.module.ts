import { Inject, Injectable, Logger, Module, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import * as path from 'node:path';
import type { ArtifactCache } from '@rebootless/artifacts';
import { kafkaClient, serviceKeysFrom, type EventPublisher } from '@rebootless/kafka';
import { EVENT_PUBLISHER, SERVICE_CONFIG, clientCredentials, formatHostPort, serviceActor } from '@rebootless/service';
import { AgentGatewayController } from './agent-gateway.controller';
import { SERVICE_NAME, type DispatcherConfig } from './config';
import { SoleInstance, type Coordination } from './coordination';
import { PostgresCoordination } from './postgres-coordination';
import { EventRelay } from './event-relay';
import { LedgerClient } from './ledger-client';
import { RolloutEngine } from './rollout-engine';
import { RolloutOperations } from './rollout-operations';
import { RolloutController } from './rollout.controller';
import { QuarantineOperation } from './quarantine-operation';
import { BuilderArtifactSource, SERVE_SLOTS, SITE_ARTIFACTS, ServeSlots, openSiteArtifacts } from './site-artifacts';
import { UndoOperation } from './undo-operation';

const COORDINATION = Symbol('rebootless.dispatcher.coordination');

function brokersOf(config: DispatcherConfig): string[] {
  return config.kafkaBrokers.map(formatHostPort);
}

async function coordinationFor(config: DispatcherConfig): Promise<Coordination> {
  if (!config.instance || !config.databaseUrl) return new SoleInstance();
  const logger = new Logger('Coordination');
  return PostgresCoordination.open({
    instance: config.instance,
    databaseUrl: config.databaseUrl,
    log: { warn: (m) => logger.warn(m), error: (m) => logger.error(m) },
  });
}

function trustedDataDirs(config: DispatcherConfig): string[] {
  return (config.trustedDataDirs ?? []).map((d) => path.resolve(d));
}

function siteArtifactsFor(config: DispatcherConfig, engine: RolloutEngine): ArtifactCache | null {
  if (!config.builderAddress) return null;
  const logger = new Logger('ArtifactCache');
  const source = new BuilderArtifactSource(
    formatHostPort(config.builderAddress),
    clientCredentials(config.transport, { kind: 'service', id: SERVICE_NAME }, { kind: 'service', id: 'builder' }),
  );
  return openSiteArtifacts({
    dataDir: config.dataDir,
    maxBytes: config.artifactCacheMiB * 1024 * 1024,
    source,
    // The keys the dispatcher already trusts the builder's events by: a manifest signed by
    // another is not kept (agents would refuse it anyway, each with its own pinned key).
    builderKeys: () => serviceKeysFrom([], trustedDataDirs(config)).get('builder') ?? [],
    retraction: (patchId, version) => engine.catalog.find(patchId, version)?.retracted,
    warn: (message) => logger.warn(message),
  });
}

function engineFor(config: DispatcherConfig, publisher: EventPublisher, coordination: Coordination): RolloutEngine {
  const logger = new Logger('Rollouts');
  return new RolloutEngine({
    coordination,
    publisher,
    kafka: kafkaClient(brokersOf(config), `rebootless-${SERVICE_NAME}-follower`),
    topic: config.eventsTopic,
    actor: serviceActor(SERVICE_NAME),
    silenceGraceMs: config.silenceGraceSeconds * 1000,
    tickIntervalMs: config.tickIntervalMs,
    // Its own chain (its data dir) and the named services' chains; agents' keys only as its gateway bound them.
    serviceKeys: () => serviceKeysFrom([], [config.dataDir, ...trustedDataDirs(config)]),
    unsealedTailTimeoutMs: config.unsealedTailTimeoutMs,
    log: {
      log: (message) => logger.log(message),
      warn: (message) => logger.warn(message),
      error: (message, stack) => logger.error(message, stack),
    },
  });
}

/** Rebuilds the state from the log before the server answers anyone; stops following it at shutdown. */
@Injectable()
class DispatcherLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(EventRelay) private readonly relay: EventRelay,
    @Inject(LedgerClient) private readonly ledger: LedgerClient,
  ) {}

  onModuleInit(): Promise<void> {
    return this.engine.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.engine.stop();
    await this.relay.close();
    this.ledger.close();
  }
}

@Module({
  controllers: [RolloutController, AgentGatewayController],
  providers: [
    { provide: COORDINATION, useFactory: coordinationFor, inject: [SERVICE_CONFIG] },
    { provide: RolloutEngine, useFactory: engineFor, inject: [SERVICE_CONFIG, EVENT_PUBLISHER, COORDINATION] },
    {
      provide: EventRelay,
      useFactory: (config: DispatcherConfig) =>
        EventRelay.open(kafkaClient(brokersOf(config), `rebootless-${SERVICE_NAME}-relay`), config.eventsTopic),
      inject: [SERVICE_CONFIG],
    },
    {
      provide: LedgerClient,
      useFactory: (config: DispatcherConfig) =>
        new LedgerClient(
          formatHostPort(config.ledgerAddress),
          clientCredentials(config.transport, { kind: 'service', id: SERVICE_NAME }, { kind: 'service', id: 'ledger' }),
        ),
      inject: [SERVICE_CONFIG],
    },
    {
      provide: RolloutOperations,
      useFactory: (engine: RolloutEngine) => new RolloutOperations(engine),
      inject: [RolloutEngine],
    },
    {
      provide: UndoOperation,
      useFactory: (engine: RolloutEngine, ledger: LedgerClient) => new UndoOperation(engine, ledger),
      inject: [RolloutEngine, LedgerClient],
    },
    {
      provide: QuarantineOperation,
      useFactory: (engine: RolloutEngine, publisher: EventPublisher, coordination: Coordination) =>
        new QuarantineOperation(
          engine.agents,
          publisher,
          (commandId, hostId, sentHere) => engine.noteHostCommand(commandId, hostId, sentHere),
          {
            holds: (hostId) => coordination.elsewhere(hostId)?.online === true,
            answerOf: (commandId) => coordination.answerOf(commandId),
          },
        ),
      inject: [RolloutEngine, EVENT_PUBLISHER, COORDINATION],
    },
    { provide: SITE_ARTIFACTS, useFactory: siteArtifactsFor, inject: [SERVICE_CONFIG, RolloutEngine] },
    {
      provide: SERVE_SLOTS,
      useFactory: (config: DispatcherConfig) => new ServeSlots(config.artifactServes),
      inject: [SERVICE_CONFIG],
    },
    DispatcherLifecycle,
  ],
})
export class AppModule {}
