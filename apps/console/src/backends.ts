// gRPC to the ledger, dispatcher and builder as the signed-in person: the console's certificate
// (service:console) for TLS, the user's own token on every call, so each service checks that
// person's roles and records that person in its audit events. The console holds no data itself.
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { channelCredentials, loadTlsMaterial } from '@rebootless/trust';
import type { HostPort, TransportSecurity } from '@rebootless/service';
import { formatHostPort } from '@rebootless/service';
import { fromGrpc } from './api-error';

export type Backend = 'ledger' | 'dispatcher' | 'builder';

const SERVICE_OF: Readonly<Record<Backend, string>> = {
  builder: `${grpcServices.build.packageName}.${grpcServices.build.serviceName}`,
  dispatcher: `${grpcServices.rollout.packageName}.${grpcServices.rollout.serviceName}`,
  ledger: `${grpcServices.ledger.packageName}.${grpcServices.ledger.serviceName}`,
};

const UNARY_DEADLINE_MS = 30_000;

/** Enum names rather than numbers: the API and the pages show them as they are in the protos. */
function definitions(): PackageDefinition {
  return loadSync([grpcServices.build.protoPath, grpcServices.rollout.protoPath, grpcServices.ledger.protoPath], {
    ...protoLoaderOptions,
    enums: String,
  });
}

export interface Caller {
  /** The signed-in person's bearer token, forwarded as is. */
  readonly token: string;
}

export class Backends {
  private readonly definitions = definitions();
  private readonly clients = new Map<Backend, grpc.Client>();
  private readonly credentials: Readonly<Record<Backend, grpc.ChannelCredentials>>;

  constructor(
    private readonly security: TransportSecurity,
    private readonly addresses: Readonly<Record<Backend, HostPort>>,
  ) {
    // Each backend must show its own service certificate, not merely one the CA signed (ADR 0013).
    const to = (backend: Backend): grpc.ChannelCredentials =>
      security.mode === 'insecure'
        ? grpc.credentials.createInsecure()
        : channelCredentials(loadTlsMaterial(security.pkiDir, { kind: 'service', id: 'console' }), {
            kind: 'service',
            id: backend,
          });
    this.credentials = { ledger: to('ledger'), dispatcher: to('dispatcher'), builder: to('builder') };
  }

  private method(backend: Backend, rpc: string): grpc.MethodDefinition<object, unknown> {
    const service = this.definitions[SERVICE_OF[backend]] as unknown as grpc.ServiceDefinition;
    const method = service[rpc];
    if (!method) throw new Error(`${SERVICE_OF[backend]} has no method ${rpc}`);
    return method as grpc.MethodDefinition<object, unknown>;
  }

  private client(backend: Backend): grpc.Client {
    let client = this.clients.get(backend);
    if (!client) {
      const address = this.addresses[backend];
      // Certificates name "localhost"; an IP address is checked against that name.
      const options: grpc.ChannelOptions =
        this.security.mode === 'tls' && isIP(address.host) ? { 'grpc.ssl_target_name_override': 'localhost' } : {};
      client = new grpc.Client(formatHostPort(address), this.credentials[backend], options);
      this.clients.set(backend, client);
    }
    return client;
  }

  private metadata(caller: Caller): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${caller.token}`);
    return metadata;
  }

  unary<Res>(caller: Caller, backend: Backend, rpc: string, request: object): Promise<Res> {
    const method = this.method(backend, rpc);
    return new Promise((resolve, reject) => {
      this.client(backend).makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata(caller),
        { deadline: Date.now() + UNARY_DEADLINE_MS },
        (error, response) => (error ? reject(fromGrpc(backend, error.code, error.details)) : resolve(response as Res)),
      );
    });
  }

  /** Every message of a server stream, collected (audit queries: bounded by the caller's filters). */
  async collect<Res>(caller: Caller, backend: Backend, rpc: string, request: object, limit: number): Promise<Res[]> {
    const out: Res[] = [];
    await this.stream<Res>(caller, backend, rpc, request, (message) => {
      out.push(message);
      return out.length < limit;
    }).done;
    return out;
  }

  /** A server stream; `onMessage` returns false to stop. `cancel` ends it (the viewer left). */
  stream<Res>(
    caller: Caller,
    backend: Backend,
    rpc: string,
    request: object,
    onMessage: (message: Res) => boolean | void,
  ): { done: Promise<void>; cancel: () => void } {
    const method = this.method(backend, rpc);
    const call = this.client(backend).makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      this.metadata(caller),
      {},
    );
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (message: Res) => {
        if (onMessage(message) === false) call.cancel();
      });
      call.on('error', (error: grpc.ServiceError) =>
        error.code === grpc.status.CANCELLED ? resolve() : reject(fromGrpc(backend, error.code, error.details)),
      );
      call.on('end', () => resolve());
    });
    return { done, cancel: () => call.cancel() };
  }

  close(): void {
    this.clients.forEach((client) => client.close());
    this.clients.clear();
  }
}
