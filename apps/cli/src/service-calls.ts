// gRPC to the builder, dispatcher and ledger as the CLI's user: TLS with the CLI's certificate
// (user:cli) or plaintext when told, the operator token on every call, and every failure turned
// into a CliError that names the address and what to change.
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { PkiError, channelCredentials, loadTlsMaterial } from '@rebootless/trust';
import { callError } from './call-errors';
import { CliError, UsageError } from './errors';
import { ExitCode } from './exit-codes';
import type { TypeDefinitions } from './json-view';
import type { ConnectionSettings, ServiceName } from './settings';

const SERVICE_OF: Readonly<Record<ServiceName, string>> = {
  builder: `${grpcServices.build.packageName}.${grpcServices.build.serviceName}`,
  dispatcher: `${grpcServices.rollout.packageName}.${grpcServices.rollout.serviceName}`,
  ledger: `${grpcServices.ledger.packageName}.${grpcServices.ledger.serviceName}`,
};

export const UNARY_TIMEOUT_SECONDS = 30;

let loaded: PackageDefinition | undefined;

/** The three operator-facing services' definitions, loaded once. */
export function operatorDefinitions(): PackageDefinition {
  loaded ??= loadSync(
    [grpcServices.build.protoPath, grpcServices.rollout.protoPath, grpcServices.ledger.protoPath],
    protoLoaderOptions,
  );
  return loaded;
}

function readToken(settings: ConnectionSettings): string | undefined {
  const source = settings.token;
  if (source.kind === 'none') return undefined;
  if (source.kind === 'value') return source.token;
  try {
    const token = fs.readFileSync(source.path, 'utf8').trim();
    if (!token) throw new UsageError(`REBOOTLESS_TOKEN_FILE ${source.path} is empty`);
    return token;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read REBOOTLESS_TOKEN_FILE ${source.path}: ${(error as Error).message}`);
  }
}

export class ServiceCalls {
  private readonly definitions = operatorDefinitions();
  private readonly clients = new Map<ServiceName, grpc.Client>();
  private readonly token: string | undefined;
  private readonly active = new Set<grpc.ClientReadableStream<unknown>>();

  constructor(private readonly settings: ConnectionSettings) {
    this.token = readToken(settings);
  }

  get typeDefinitions(): TypeDefinitions {
    return this.definitions as unknown as TypeDefinitions;
  }

  private method(service: ServiceName, rpc: string): grpc.MethodDefinition<object, unknown> {
    const definition = this.definitions[SERVICE_OF[service]] as unknown as grpc.ServiceDefinition;
    const method = definition[rpc];
    if (!method) throw new Error(`${SERVICE_OF[service]} has no method ${rpc}`);
    return method as grpc.MethodDefinition<object, unknown>;
  }

  private channelCredentials(service: ServiceName): grpc.ChannelCredentials {
    const security = this.settings.security;
    if (security.mode === 'insecure') return grpc.credentials.createInsecure();
    try {
      // Each service must show its own certificate: a host's, also signed by the CA, is refused.
      return channelCredentials(loadTlsMaterial(security.pkiDir, { kind: 'user', id: 'cli' }), {
        kind: 'service',
        id: service,
      });
    } catch (error) {
      if (error instanceof PkiError) throw new UsageError(`the CLI's certificate: ${error.message}`);
      throw error;
    }
  }

  private client(service: ServiceName): grpc.Client {
    let client = this.clients.get(service);
    if (!client) {
      const { address } = this.settings.endpoints[service];
      const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      // Certificates name "localhost"; an IP address is checked against that name.
      const options: grpc.ChannelOptions =
        this.settings.security.mode === 'tls' && isIP(host) ? { 'grpc.ssl_target_name_override': 'localhost' } : {};
      client = new grpc.Client(address, this.channelCredentials(service), options);
      this.clients.set(service, client);
    }
    return client;
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.token) metadata.set('authorization', `Bearer ${this.token}`);
    return metadata;
  }

  private failure(service: ServiceName, rpc: string, error: grpc.ServiceError, timeoutSeconds?: number): CliError {
    return callError({
      endpoint: this.settings.endpoints[service],
      method: `${SERVICE_OF[service].split('.').pop()}/${rpc}`,
      code: error.code,
      details: error.details,
      security: this.settings.security,
      hasToken: this.token !== undefined,
      timeoutSeconds,
    });
  }

  unary<Res>(service: ServiceName, rpc: string, request: object): Promise<Res> {
    const method = this.method(service, rpc);
    const client = this.client(service);
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata(),
        { deadline: Date.now() + UNARY_TIMEOUT_SECONDS * 1000 },
        (error, response) =>
          error ? reject(this.failure(service, rpc, error, UNARY_TIMEOUT_SECONDS)) : resolve(response as Res),
      );
    });
  }

  /** Calls `onMessage` for each message; resolves when the stream ends. */
  stream<Res>(service: ServiceName, rpc: string, request: object, onMessage: (message: Res) => void): Promise<void> {
    const method = this.method(service, rpc);
    const call = this.client(service).makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      this.metadata(),
      {},
    );
    this.active.add(call);
    return new Promise<void>((resolve, reject) => {
      call.on('data', (message: Res) => {
        try {
          onMessage(message);
        } catch (error) {
          call.cancel();
          reject(error);
        }
      });
      call.on('error', (error: grpc.ServiceError) =>
        reject(
          error.code === grpc.status.CANCELLED
            ? new CliError('stopped', ExitCode.Interrupted)
            : this.failure(service, rpc, error),
        ),
      );
      call.on('end', () => resolve());
    }).finally(() => this.active.delete(call));
  }

  /** Ends every stream in flight (Ctrl-C while watching). */
  cancelStreams(): void {
    this.active.forEach((call) => call.cancel());
  }

  close(): void {
    this.clients.forEach((client) => client.close());
    this.clients.clear();
  }
}
