// First, before anything loads grpc-js or kafkajs: tracing patches them as they load.
import {
  createLogger,
  rebootlessMeter,
  startMetrics,
  startTelemetry,
  type LogRecordFormat,
  type RebootlessLogger,
} from '@rebootless/telemetry';
startTelemetry('agent');

// The agent daemon: configuration, the kernel port, the event sink, the embeddable Agent
// (libs/agent-runtime) and AgentControl on the host. Not bootService: the agent must start and
// keep working with Kafka unreachable (its events wait in its outbox), and its event chain is
// the Agent's own, signed in its data dir.
import { ServerCredentials } from '@grpc/grpc-js';
import { grpcServices } from '@rebootless/contracts';
import {
  Agent,
  GatewayRelaySink,
  KafkaEventSink,
  LivepatchSysfs,
  RemoteKernelPort,
  type EventSink,
} from '@rebootless/agent-runtime';
import type { KernelPort } from '@rebootless/kernel-model';
import { kafkaClient } from '@rebootless/kafka';
import {
  ConfigError,
  EXIT_CANTCREAT,
  EXIT_CONFIG,
  addReflection,
  clientCredentials,
  formatConfigProblem,
  formatHostPort,
  guardRequestDeserializers,
  loadConfig,
  malformedRequestInterceptor,
  serverTransport,
  serviceStarted,
  serviceStopped,
} from '@rebootless/service';
import { mkdirSync } from 'node:fs';
import { HealthImplementation } from 'grpc-health-check';
import { SERVICE_NAME, agentSettings, type AgentConfig } from './config';
import { GET_STATUS_PATH, agentControlDefinition, serveAgentControl } from './control-server';
import { ControlSocketError, prepareControlSocket, restrictControlSocket } from './control-socket';

// `rebootless-agent run --json` or LOG_FORMAT=json: one JSON object a line, for journald and log
// shippers, in the shape every service writes (@rebootless/telemetry). Until the host id is
// known (configuration errors) lines go to stderr as plain text.
function logFormat(): LogRecordFormat | undefined {
  if (process.argv.includes('--json')) return 'json';
  const format = process.env['LOG_FORMAT'];
  return format === 'json' || format === 'text' || format === undefined || format === '' ? format || 'text' : undefined;
}

let log: RebootlessLogger | undefined;

function line(message: string): void {
  log?.info(message);
}

/** "agent ready on ...", "agent stopped": the lines supervisors and the stack runner wait for, in either format. */
function lifecycle(message: string): void {
  log?.info(`${SERVICE_NAME} ${message}`);
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadConfig(agentSettings, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      [`${SERVICE_NAME}: configuration error:`, ...error.problems.map((p) => `  ${formatConfigProblem(p)}`)].join(
        '\n',
      ) + '\n',
    );
    process.exit(EXIT_CONFIG);
  }
  const format = logFormat();
  if (format === undefined) {
    process.stderr.write(
      `${SERVICE_NAME}: configuration error:\n  LOG_FORMAT=${JSON.stringify(process.env['LOG_FORMAT'])}: expected one of text, json\n`,
    );
    process.exit(EXIT_CONFIG);
  }
  log = createLogger({ service: SERVICE_NAME, hostId: config.hostId, level: 'info', format });
  try {
    mkdirSync(config.dataDir, { recursive: true });
  } catch (error) {
    process.stderr.write(`${SERVICE_NAME}: cannot create REBOOTLESS_DATA_DIR ${config.dataDir}: ${String(error)}\n`);
    process.exit(EXIT_CANTCREAT);
  }
  // Toward the dispatcher and the builder the agent speaks as its host (its certificate names
  // it); AgentControl is served as the agent service, as every service of the stack is.
  const hostIdentity = { kind: 'host' as const, id: config.hostId };
  const serverIdentity = { kind: 'service' as const, id: SERVICE_NAME };
  const talks = config.dispatcherAddress !== undefined || config.builderAddress !== undefined;
  let credentials;
  try {
    // One channel configuration reaches both: either service's certificate, no other, is accepted.
    credentials = talks
      ? clientCredentials(config.transport, hostIdentity, [
          { kind: 'service', id: 'dispatcher' },
          { kind: 'service', id: 'builder' },
        ])
      : undefined;
  } catch (error) {
    process.stderr.write(`${SERVICE_NAME}: configuration error: ${String(error)}\n`);
    process.exit(EXIT_CONFIG);
  }
  const kernel: KernelPort = config.kernelSocket
    ? new RemoteKernelPort(config.kernelSocket)
    : new LivepatchSysfs({ root: config.sysfsRoot });
  const sink: EventSink =
    config.eventSink === 'kafka'
      ? new KafkaEventSink({
          kafka: kafkaClient(config.kafkaBrokers.map(formatHostPort), `agent-${config.hostId}`, 2),
          topic: config.eventsTopic,
        })
      : new GatewayRelaySink();
  const agent = new Agent({
    kernel,
    dataDir: config.dataDir,
    hostId: config.hostId,
    labels: config.labels,
    ...(config.dispatcherAddress ? { dispatcherAddress: config.dispatcherAddress.map(formatHostPort) } : {}),
    builderAddress: config.builderAddress ? formatHostPort(config.builderAddress) : '',
    builderPublicKey: config.builderPublicKey ?? Buffer.alloc(0),
    sink,
    ...(credentials ? { credentials } : {}),
    reapply: config.reapply,
    timeouts: { transitionMs: config.transitionTimeoutMs, startedHoldMs: config.startedHoldMs },
    log: line,
  });
  if (!config.builderPublicKey || (!config.builderAddress && !config.dispatcherAddress)) {
    log.warn(
      'AGENT_BUILDER_PUBLIC_KEY is unset, or neither AGENT_DISPATCHER_ADDRESS nor AGENT_BUILDER_ADDRESS is: every apply command will be refused',
    );
  }
  if (config.eventSink === 'gateway' && !config.dispatcherAddress) {
    // Nothing is tried without a stream to relay through: say so once, here.
    log.warn(
      'AGENT_EVENT_SINK is gateway and AGENT_DISPATCHER_ADDRESS is unset: events stay in the outbox until a dispatcher is configured',
    );
  }
  await agent.start();
  startMetrics(SERVICE_NAME);
  const meter = rebootlessMeter();
  // Events recorded and not yet acknowledged by Kafka or the dispatcher's relay.
  meter
    .createObservableGauge('rebootless.agent.outbox.depth', { description: 'events waiting in the agent outbox' })
    .addCallback((result) => result.observe(agent.pendingEvents, { host: config.hostId }));
  const deniedCalls = meter.createCounter('rebootless.calls.denied', {
    description: 'calls refused for want of a certificate, a token or a role',
  });
  const transport = serverTransport(config.transport, serverIdentity, (denied) => {
    deniedCalls.add(1, { service: SERVICE_NAME, method: denied.method, code: denied.code });
    log?.warn(`${denied.code} ${denied.method} for ${denied.subject} from ${denied.peer}: ${denied.reason}`);
  });
  const credentialsForServer: ServerCredentials = transport.credentials;
  // The same access rules and garbage handling as every other service (libs/service).
  guardRequestDeserializers({ [GET_STATUS_PATH]: agentControlDefinition });
  const health = new HealthImplementation();
  const addStandard = (server: Parameters<typeof health.addToServer>[0]) => {
    health.addToServer(server);
    try {
      addReflection(server, [grpcServices.agentControl]);
    } catch (error) {
      // The single-file agent bundled for small hosts (the kernel lab's guest) carries no
      // descriptor files: it serves AgentControl and health, without reflection.
      log?.warn(`reflection is off: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const control = await serveAgentControl(
    agent,
    formatHostPort(config.grpcListen),
    credentialsForServer,
    line,
    addStandard,
    [...transport.interceptors, malformedRequestInterceptor],
  );
  // On the host's own Unix socket the file system decides who may ask: no TLS, no token.
  let local: Awaited<ReturnType<typeof serveAgentControl>> | undefined;
  if (config.controlSocket) {
    try {
      prepareControlSocket(config.controlSocket);
    } catch (error) {
      if (!(error instanceof ControlSocketError)) throw error;
      process.stderr.write(`${SERVICE_NAME}: configuration error: AGENT_CONTROL_SOCKET: ${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    local = await serveAgentControl(
      agent,
      `unix:${config.controlSocket}`,
      ServerCredentials.createInsecure(),
      line,
      addStandard,
      [malformedRequestInterceptor],
    );
    restrictControlSocket(config.controlSocket);
    line(`AgentControl on unix:${config.controlSocket} (mode 0600, for the agent's user only)`);
  }
  agent.recordServiceEvents([serviceStarted(SERVICE_NAME, `agent/${config.hostId}`, control.address)]);
  // Best effort: with Kafka reachable the run is in the log before the agent says it is ready.
  await agent.drain(5_000).catch(() => undefined);
  for (const name of ['', 'rebootless.agent.v1.AgentControl']) health.setStatus(name, 'SERVING');
  lifecycle(`ready on ${control.address} (host ${config.hostId}, agent key ${agent.publicKey.toString('hex')})`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    lifecycle(`stopping (${signal})`);
    setTimeout(() => process.exit(1), 10_000).unref();
    for (const name of ['', 'rebootless.agent.v1.AgentControl']) health.setStatus(name, 'NOT_SERVING');
    control.server.forceShutdown();
    local?.server.forceShutdown();
    agent.recordServiceEvents([serviceStopped(SERVICE_NAME, `agent/${config.hostId}`, signal)]);
    await agent.drain(3_000).catch(() => undefined);
    await agent.stop({ clean: true });
    await sink.close();
    lifecycle('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`${SERVICE_NAME}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
