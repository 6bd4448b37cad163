// Boots one rebootless service as a NestJS gRPC microservice and owns its process lifecycle:
// configuration check, listening, health, and shutdown on SIGTERM/SIGINT. It calls process.exit,
// so only an app's main.ts calls it.
import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import { Module, type DynamicModule, type INestMicroservice, type LoggerService, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import type { Server } from '@grpc/grpc-js';
import { grpcTransportOptions, type GrpcServiceContract } from '@rebootless/contracts';
import {
  ConfigError,
  formatConfigProblem,
  formatHostPort,
  loadConfig,
  type ConfigOf,
  type ConfigSpec,
  type Env,
} from './config';
import type { EventPublisher } from '@rebootless/kafka';
import { EVENT_PUBLISHER, openServiceEventLog, serviceStarted, serviceStopped } from './event-log';
import { ServiceHealth } from './health';
import { addReflection } from './reflection';
import { guardRequestDeserializers, malformedRequestInterceptor } from './malformed-requests';
import { callDenied, serverTransport, type ServerTransport } from './transport';
import type { Identity } from '@rebootless/trust';
import { createServiceLogger } from './logger';
import { answerVersion } from './version';
import { rebootlessMeter, shutdownMetrics, shutdownTelemetry, startMetrics } from '@rebootless/telemetry';
import type { ServiceConfig, serviceSettings } from './service-settings';

/** sysexits.h: the configuration is wrong, restarting will not help. */
export const EXIT_CONFIG = 78;
/** sysexits.h: a file or directory the service needs cannot be created. */
export const EXIT_CANTCREAT = 73;
/** sysexits.h: a service it depends on (Kafka) is unavailable. */
export const EXIT_UNAVAILABLE = 69;
/** From the first signal to a forced exit(1). */
export const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How long in-flight calls (long-lived streams included) may run on after a stop signal. */
export const DRAIN_GRACE_MS = 5_000;

/** Inject the loaded configuration with `@Inject(SERVICE_CONFIG) config: <App>Config`. */
export const SERVICE_CONFIG = Symbol('rebootless.service-config');

export interface ServiceContext<C> {
  readonly name: string;
  readonly config: C;
  /** The address the gRPC server is bound to, as host:port. */
  readonly address: string;
  /** The running Nest application: `ctx.app.get(SomeProvider)`. */
  readonly app: INestMicroservice;
  readonly logger: LoggerService;
  /** The service's publisher into the event log. */
  readonly events: EventPublisher;
}

export type StopReason = 'SIGTERM' | 'SIGINT' | 'start-failed';

type ServiceSpec = ReturnType<typeof serviceSettings>;

export interface BootServiceOptions<S extends ConfigSpec & ServiceSpec> {
  /** Short name, e.g. "ledger", as in log lines and error messages. */
  readonly name: string;
  readonly module: Type<unknown>;
  /** The services this app serves, from `grpcServices` in @rebootless/contracts. */
  readonly grpc: readonly GrpcServiceContract[];
  /** The app's settings spec (apps/<svc>/src/config.ts). */
  readonly config: S;
  /** Defaults to process.env. */
  readonly env?: Env;
  /** The identity its TLS certificate names; defaults to service:<name>. */
  readonly tlsIdentity?: (config: ConfigOf<S>) => Identity;
  /** The producer id of the service's hash chain; defaults to its name. */
  readonly producerId?: (config: ConfigOf<S>) => string;
  /**
   * Runs once the server listens, before health turns SERVING and the ready line is written.
   * If it throws, the service stops and exits 1.
   */
  readonly onStarted?: (ctx: ServiceContext<ConfigOf<S>>) => void | Promise<void>;
  /**
   * Runs on shutdown after the gRPC server stopped accepting and drained in-flight calls, before
   * the Nest application closes (its onModuleDestroy/onApplicationShutdown hooks run after).
   */
  readonly onStopping?: (ctx: ServiceContext<ConfigOf<S>>, reason: StopReason) => void | Promise<void>;
}

@Module({})
class ServiceRootModule {}

function rootModule(module: Type<unknown>, config: unknown, publisher: EventPublisher): DynamicModule {
  return {
    module: ServiceRootModule,
    global: true,
    imports: [module],
    providers: [
      { provide: SERVICE_CONFIG, useValue: config },
      { provide: EVENT_PUBLISHER, useValue: publisher },
    ],
    exports: [SERVICE_CONFIG, EVENT_PUBLISHER],
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function stackOf(error: unknown): string | undefined {
  return error instanceof Error ? error.stack : undefined;
}

/** Stops accepting calls at once; gives in-flight calls `graceMs` to finish, then cuts them. */
function drainGrpc(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function bootService<S extends ConfigSpec & ServiceSpec>(options: BootServiceOptions<S>): Promise<void> {
  const { name } = options;
  type Config = ConfigOf<S>;

  let config: Config;
  if (answerVersion(`rebootless-${name}`)) process.exit(0);
  try {
    config = loadConfig(options.config, options.env ?? process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      [`${name}: configuration error:`, ...error.problems.map((p) => `  ${formatConfigProblem(p)}`)].join('\n') + '\n',
    );
    process.exit(EXIT_CONFIG);
  }
  // Safe: S extends the common settings spec, so the loaded object has their typed values.
  const common = config as unknown as ServiceConfig;
  const address = formatHostPort(common.grpcListen);

  try {
    mkdirSync(common.dataDir, { recursive: true });
  } catch (error) {
    process.stderr.write(
      `${name}: cannot create REBOOTLESS_DATA_DIR ${JSON.stringify(common.dataDir)}: ${messageOf(error)}\n`,
    );
    process.exit(EXIT_CANTCREAT);
  }

  const logger = createServiceLogger(name, { level: common.logLevel, format: common.logFormat });
  // Ready, stopping and failure lines are written whatever LOG_LEVEL says: supervisors and
  // operators rely on them.
  const lifecycle = createServiceLogger(name, { level: 'info', format: common.logFormat });

  const producerId = options.producerId?.(config) ?? name;
  // Metrics (REBOOTLESS_METRICS_ADDRESS, OTLP): the service's own instruments register in onStarted.
  startMetrics(name);
  const deniedCalls = rebootlessMeter().createCounter('rebootless.calls.denied', {
    description: 'calls refused for want of a certificate, a token or a role',
  });
  let publisher: EventPublisher;
  try {
    publisher = await openServiceEventLog({
      name,
      producerId,
      brokers: common.kafkaBrokers,
      dataDir: common.dataDir,
      topic: common.eventsTopic,
      // Withdrawn, re-sent and settled batches: what an operator needs after a broker failed.
      log: (line) => logger.warn(`event log: ${line}`),
    });
  } catch (error) {
    lifecycle.error(`${name}: cannot write to the event log: ${messageOf(error)}`);
    process.exit(EXIT_UNAVAILABLE);
  }

  let transportSecurity: ServerTransport;
  try {
    transportSecurity = serverTransport(
      common.transport,
      options.tlsIdentity?.(config) ?? { kind: 'service', id: name },
      (denied) => {
        deniedCalls.add(1, { service: name, method: denied.method, code: denied.code });
        logger.warn(
          `${name}: ${denied.code} ${denied.method} for ${denied.subject} from ${denied.peer}: ${denied.reason}`,
        );
        publisher.publish(callDenied(producerId, denied)).catch((error: unknown) => {
          lifecycle.error(`${name}: could not record a denied call in the event log: ${messageOf(error)}`);
        });
      },
      common.maxTokenLifetimeSeconds,
    );
  } catch (error) {
    process.stderr.write(`${name}: configuration error: ${messageOf(error)}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (common.transport.mode === 'insecure') lifecycle.warn(`${name}: ${transportSecurity.description}`);
  else lifecycle.log(`${name}: ${transportSecurity.description}`);

  const health = new ServiceHealth(options.grpc.map((service) => `${service.packageName}.${service.serviceName}`));
  let grpcServer: Server | undefined;
  let app: INestMicroservice | undefined;
  let ctx: ServiceContext<Config> | undefined = undefined;
  let stopping = false;

  const stop = async (reason: StopReason, exitCode: 0 | 1): Promise<void> => {
    if (stopping) {
      lifecycle.error(`${name}: ${reason} while stopping, exiting now`);
      process.exit(1);
    }
    stopping = true;
    setTimeout(() => {
      lifecycle.error(`${name}: not stopped ${SHUTDOWN_TIMEOUT_MS / 1000} s after ${reason}, exiting now`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    lifecycle.log(`${name} stopping (${reason})`);
    try {
      health.setAll('NOT_SERVING');
      if (grpcServer) await drainGrpc(grpcServer, DRAIN_GRACE_MS);
      if (ctx && options.onStopping) await options.onStopping(ctx, reason);
      if (app) await app.close();
      await publisher.publish(serviceStopped(name, producerId, reason));
      await publisher.close();
    } catch (error) {
      lifecycle.error(`${name}: failed to stop cleanly: ${messageOf(error)}`, stackOf(error));
      process.exit(1);
    }
    lifecycle.log(`${name} stopped`);
    // process.exit drops what the span exporter still buffers (@rebootless/telemetry).
    await Promise.all([shutdownTelemetry(), shutdownMetrics()]);
    process.exit(exitCode);
  };
  // Not app.enableShutdownHooks(): Nest's handler re-raises the signal once done, so the exit
  // status would be 143 rather than 0, and it knows no drain or deadline. app.close() below runs
  // the same onModuleDestroy/beforeApplicationShutdown/onApplicationShutdown hooks.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => void stop(signal, 0));
  }

  const transport: GrpcOptions = {
    transport: Transport.GRPC,
    options: {
      ...grpcTransportOptions(address, ...options.grpc),
      credentials: transportSecurity.credentials,
      // Nest hands channelOptions to the grpc-js Server constructor, which takes its interceptors there.
      channelOptions: {
        interceptors: [...transportSecurity.interceptors, malformedRequestInterceptor],
      } as Record<string, unknown>,
      // Nest calls this after binding, with the grpc-js server: the one place to add services
      // of our own next to the controllers'.
      onLoadPackageDefinition: (packageDefinition: Record<string, unknown>, server: Server) => {
        guardRequestDeserializers(packageDefinition);
        grpcServer = server;
        health.implementation.addToServer(server);
        addReflection(server, options.grpc);
      },
    },
  };

  try {
    app = await NestFactory.createMicroservice(rootModule(options.module, config, publisher), {
      ...transport,
      logger,
      abortOnError: false,
    });
  } catch (error) {
    lifecycle.error(`${name}: failed to start: ${messageOf(error)}`, stackOf(error));
    process.exit(1);
  }

  try {
    await app.listen();
  } catch (error) {
    // Nest hands us the server only once bound, so no server means the bind itself failed.
    const what = grpcServer
      ? 'failed to start serving gRPC'
      : `cannot listen on ${address} (change ${options.config.grpcListen.env.join(' or ')})`;
    lifecycle.error(`${name}: ${what}: ${messageOf(error)}`);
    process.exit(1);
  }
  if (stopping) return;

  ctx = { name, config, address, app, logger, events: publisher };
  try {
    await publisher.publish(serviceStarted(name, producerId, address));
    await options.onStarted?.(ctx);
  } catch (error) {
    lifecycle.error(`${name}: start hook failed: ${messageOf(error)}`, stackOf(error));
    await stop('start-failed', 1);
    return;
  }
  if (stopping) return;

  health.setAll('SERVING');
  lifecycle.log(`${name} ready on ${address}`);
}
