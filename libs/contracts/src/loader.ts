// The one place servers and clients take their gRPC loading options from. The runtime loader
// (@grpc/proto-loader, under NestJS) must hand out the same shapes as the ts-proto types:
// camelCase fields, 64-bit integers as strings (forceLong=string), enums as numbers, every
// scalar present (ts-proto makes them non-optional), oneofs as plain optional fields.
import { join, resolve } from 'node:path';
import type { Options } from '@grpc/proto-loader';
import { AGENT_CONTROL_SERVICE_NAME } from './gen/rebootless/agent/v1/agent_control';
import { BUILD_SERVICE_NAME } from './gen/rebootless/builder/v1/builder';
import { AGENT_GATEWAY_SERVICE_NAME } from './gen/rebootless/dispatcher/v1/agent_gateway';
import { ROLLOUT_SERVICE_NAME } from './gen/rebootless/dispatcher/v1/rollout';
import { LEDGER_SERVICE_NAME } from './gen/rebootless/ledger/v1/ledger';

/** The repository's proto/ directory. libs/contracts/src and libs/contracts/dist both sit three levels below the root. */
export const protoRoot = resolve(__dirname, '..', '..', '..', 'proto');

/**
 * Every proto and its imports as one FileDescriptorSet with source info (comments included),
 * for tools in other languages (npm run proto:descriptors regenerates it).
 */
export const descriptorSetPath = resolve(__dirname, '..', 'rebootless.binpb');

export const protoLoaderOptions = {
  keepCase: false,
  longs: String,
  enums: Number,
  defaults: true,
  oneofs: true,
  includeDirs: [protoRoot],
} satisfies Options;

export interface GrpcServiceContract {
  /** The proto package, e.g. "rebootless.builder.v1". */
  readonly packageName: string;
  readonly serviceName: string;
  /** Absolute path of the .proto file that declares the service. */
  readonly protoPath: string;
}

function contract(packageName: string, serviceName: string, file: string): GrpcServiceContract {
  return { packageName, serviceName, protoPath: join(protoRoot, file) };
}

// Service names come from the generated code, so renaming a service breaks the build here.
export const grpcServices = {
  build: contract('rebootless.builder.v1', BUILD_SERVICE_NAME, 'rebootless/builder/v1/builder.proto'),
  rollout: contract('rebootless.dispatcher.v1', ROLLOUT_SERVICE_NAME, 'rebootless/dispatcher/v1/rollout.proto'),
  agentGateway: contract(
    'rebootless.dispatcher.v1',
    AGENT_GATEWAY_SERVICE_NAME,
    'rebootless/dispatcher/v1/agent_gateway.proto',
  ),
  agentControl: contract('rebootless.agent.v1', AGENT_CONTROL_SERVICE_NAME, 'rebootless/agent/v1/agent_control.proto'),
  ledger: contract('rebootless.ledger.v1', LEDGER_SERVICE_NAME, 'rebootless/ledger/v1/ledger.proto'),
} as const satisfies Record<string, GrpcServiceContract>;

/**
 * The `options` of a NestJS `Transport.GRPC` server or client for the given services
 * (kept free of NestJS types so plain @grpc/grpc-js clients can use it too).
 */
export function grpcTransportOptions(url: string, ...services: readonly GrpcServiceContract[]) {
  if (services.length === 0) throw new Error('grpcTransportOptions: name at least one service');
  return {
    url,
    package: [...new Set(services.map((s) => s.packageName))],
    protoPath: [...new Set(services.map((s) => s.protoPath))],
    loader: protoLoaderOptions,
  };
}
