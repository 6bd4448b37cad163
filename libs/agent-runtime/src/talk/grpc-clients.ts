// The agent's two gRPC clients, written against the generated codecs (no proto loading per
// agent). Clients are shared per (address, credentials): grpc-js then multiplexes every agent
// of a process over one HTTP/2 connection, which is what lets thousands run side by side.
import { ChannelCredentials, Client, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { builder, dispatcher } from '@rebootless/contracts';

/** Keepalive so a dead dispatcher or a silent network is noticed without a per-agent timer. */
export const AGENT_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 0,
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
} as const;

let insecure: ChannelCredentials | undefined;

/**
 * One insecure credentials object for the process: clients are shared per credentials instance,
 * so agents that each made their own would each open their own connection.
 */
export function insecureCredentials(): ChannelCredentials {
  insecure ??= ChannelCredentials.createInsecure();
  return insecure;
}

const clients = new Map<string, { client: Client; users: number }>();
const credentialIds = new WeakMap<ChannelCredentials, number>();
let nextCredentialId = 0;

function key(address: string, credentials: ChannelCredentials): string {
  let id = credentialIds.get(credentials);
  if (id === undefined) {
    id = nextCredentialId++;
    credentialIds.set(credentials, id);
  }
  return `${address}#${id}`;
}

/** A client shared with every other user of the same address and credentials; release it when done. */
export function sharedClient(address: string, credentials: ChannelCredentials): { client: Client; release(): void } {
  const k = key(address, credentials);
  let entry = clients.get(k);
  if (!entry) {
    entry = { client: new Client(address, credentials, AGENT_CHANNEL_OPTIONS), users: 0 };
    clients.set(k, entry);
  }
  entry.users += 1;
  const held = entry;
  let released = false;
  return {
    client: held.client,
    release() {
      if (released) return;
      released = true;
      held.users -= 1;
      if (held.users === 0) {
        held.client.close();
        clients.delete(k);
      }
    },
  };
}

const CONNECT_PATH = '/rebootless.dispatcher.v1.AgentGateway/Connect';
/** The builder's FetchArtifact, and the dispatcher's site cache that answers with the same messages (ADR 0026). */
export const FETCH_ARTIFACT_PATHS = {
  builder: '/rebootless.builder.v1.BuildService/FetchArtifact',
  dispatcher: '/rebootless.dispatcher.v1.AgentGateway/FetchArtifact',
} as const;
export type ArtifactSourceKind = keyof typeof FETCH_ARTIFACT_PATHS;

export function openConnectStream(
  client: Client,
): ClientDuplexStream<dispatcher.ConnectRequest, dispatcher.ConnectResponse> {
  return client.makeBidiStreamRequest(
    CONNECT_PATH,
    (m: dispatcher.ConnectRequest) => Buffer.from(dispatcher.ConnectRequest.encode(m).finish()),
    (b: Buffer) => dispatcher.ConnectResponse.decode(b),
  );
}

export function openFetchArtifact(
  client: Client,
  request: builder.FetchArtifactRequest,
  deadline: Date,
  from: ArtifactSourceKind = 'builder',
): ClientReadableStream<builder.FetchArtifactResponse> {
  // Both answer with the same wire messages, so one codec reads either.
  return client.makeServerStreamRequest(
    FETCH_ARTIFACT_PATHS[from],
    (m: builder.FetchArtifactRequest) => Buffer.from(builder.FetchArtifactRequest.encode(m).finish()),
    (b: Buffer) => builder.FetchArtifactResponse.decode(b),
    request,
    { deadline },
  );
}
