import * as os from 'node:os';
import * as path from 'node:path';
import { Inject, Injectable, Logger, Module, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ArtifactStore } from '@rebootless/artifacts';
import { KERNEL_PROFILES } from '@rebootless/kernel-toolchain';
import type { EventPublisher } from '@rebootless/kafka';
import { EVENT_PUBLISHER, SERVICE_CONFIG, serviceActor } from '@rebootless/service';
import { BuildCoordinator } from './build-coordinator';
import { BuildController } from './build.controller';
import { SERVICE_NAME, type BuilderConfig } from './config';
import { analyseUnifiedDiff, debianKernelToolchain, isValidKernelRelease } from './kernel-ports';

const BUILDER_VERSION = '0.1.0';

function coordinatorFor(config: BuilderConfig, publisher: EventPublisher): BuildCoordinator {
  const logger = new Logger('Builds');
  const dataDir = path.resolve(config.dataDir);
  return new BuildCoordinator({
    dataDir,
    // The builder's own key signs manifests: agents pin it (DESIGN.md section 7).
    store: new ArtifactStore({ dir: path.join(dataDir, 'artifacts'), builderKey: publisher.key.rawPublicKey }),
    toolchain: debianKernelToolchain({
      cacheDir: config.kernelCacheDir,
      fetchTimeoutMs: config.fetchTimeoutMs,
      allowUnsandboxed: config.insecureUnsandboxedCompile,
      profiles: config.kernelProfiles.map((name) => KERNEL_PROFILES[name]!()),
      profileCacheDir: config.kernelProfileCacheDir,
      smoke: config.smoke,
    }),
    analyseDiff: analyseUnifiedDiff,
    isKernelRelease: isValidKernelRelease,
    publisher,
    actor: serviceActor(SERVICE_NAME),
    queueSize: config.queueSize,
    workers: config.workers,
    compileTimeoutMs: config.compileTimeoutMs,
    maxFixBytes: config.maxFixBytes,
    builderVersion: BUILDER_VERSION,
    workRoot: os.tmpdir(),
    log: {
      log: (message) => logger.log(message),
      warn: (message) => logger.warn(message),
      error: (message, stack) => logger.error(message, stack),
    },
  });
}

/** Recovers interrupted builds before serving; ends running builds when the service stops. */
@Injectable()
class BuildLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(BuildCoordinator) private readonly builds: BuildCoordinator) {}

  onModuleInit(): Promise<void> {
    return this.builds.start();
  }

  onApplicationShutdown(): Promise<void> {
    return this.builds.stop();
  }
}

@Module({
  controllers: [BuildController],
  providers: [
    { provide: BuildCoordinator, useFactory: coordinatorFor, inject: [SERVICE_CONFIG, EVENT_PUBLISHER] },
    BuildLifecycle,
  ],
})
export class AppModule {}
