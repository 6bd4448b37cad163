// Real gRPC servers for the agent's integration tests: a builder FetchArtifact endpoint serving a
// real ArtifactStore (optionally turned hostile, to prove the agent does not trust the wire), and
// a small AgentGateway that acknowledges every message and lets the test send commands. The
// gateway stands in only until the dispatcher's own AgentGateway exists.
import { Server, ServerCredentials, status, type ServerDuplexStream, type ServerWritableStream } from '@grpc/grpc-js';
import type { ArtifactStore } from '@rebootless/artifacts';
import { builder, dispatcher } from '@rebootless/contracts';
import type { Producer } from 'kafkajs';

export type HostileServing = 'truncate' | 'extra-bytes' | 'flip-byte' | undefined;

export interface ArtifactServer {
  readonly address: string;
  /** How the next fetches are served (undefined: honestly). */
  hostile: HostileServing;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return `127.0.0.1:${port}`;
}

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 1_000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startArtifactServer(store: ArtifactStore): Promise<ArtifactServer> {
  const server = new Server();
  const state: { hostile: HostileServing } = { hostile: undefined };
  server.addService(
    {
      fetchArtifact: {
        path: '/rebootless.builder.v1.BuildService/FetchArtifact',
        requestStream: false,
        responseStream: true,
        requestSerialize: (m: builder.FetchArtifactRequest) =>
          Buffer.from(builder.FetchArtifactRequest.encode(m).finish()),
        requestDeserialize: (b: Buffer) => builder.FetchArtifactRequest.decode(b),
        responseSerialize: (m: builder.FetchArtifactResponse) =>
          Buffer.from(builder.FetchArtifactResponse.encode(m).finish()),
        responseDeserialize: (b: Buffer) => builder.FetchArtifactResponse.decode(b),
      },
    },
    {
      fetchArtifact: (call: ServerWritableStream<builder.FetchArtifactRequest, builder.FetchArtifactResponse>) => {
        void (async () => {
          const artifact = await store.open(call.request.artifactDigest);
          call.write({ header: { manifest: artifact.manifestBytes, manifestSignature: artifact.signature } });
          const chunks: Buffer[] = [];
          for await (const chunk of store.chunks(artifact, 1024)) chunks.push(Buffer.from(chunk));
          const module = Buffer.concat(chunks);
          const served =
            state.hostile === 'truncate'
              ? module.subarray(0, module.length - 7)
              : state.hostile === 'extra-bytes'
                ? Buffer.concat([module, Buffer.from('appended by a man in the middle')])
                : state.hostile === 'flip-byte'
                  ? Buffer.from(module.map((b, i) => (i === 10 ? b ^ 0xff : b)))
                  : module;
          for (let at = 0; at < served.length; at += 1024) call.write({ chunk: served.subarray(at, at + 1024) });
          call.end();
        })().catch((error: Error) => {
          const code =
            error.name === 'RetractedArtifactError'
              ? status.FAILED_PRECONDITION
              : error.name === 'ArtifactNotFoundError'
                ? status.NOT_FOUND
                : status.INTERNAL;
          call.emit('error', { code, details: error.message });
        });
      },
    },
  );
  const address = await listen(server);
  return {
    address,
    get hostile() {
      return state.hostile;
    },
    set hostile(value: HostileServing) {
      state.hostile = value;
    },
    close: () => shutdown(server),
  };
}

type ConnectCall = ServerDuplexStream<dispatcher.ConnectRequest, dispatcher.ConnectResponse>;

export interface TestGateway {
  readonly address: string;
  /** Everything each host sent, in order. */
  received(hostId: string): dispatcher.ConnectRequest[];
  connected(hostId: string): boolean;
  send(hostId: string, command: dispatcher.ConnectResponse): void;
  /** Ends every stream from the server side (a dispatcher restart, as the agent sees it). */
  dropAll(): void;
  /** How many results with this outcome arrived, all hosts together (cheap: for benchmarks). */
  countResults(outcome: dispatcher.CommandOutcome): number;
  /** Resolves once a result with this outcome arrived for the command. */
  result(
    hostId: string,
    commandId: string,
    outcome: dispatcher.CommandOutcome,
    timeoutMs?: number,
  ): Promise<dispatcher.CommandResult>;
  waitFor(check: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Where RelayEvents go (as the dispatcher does: bytes unchanged, key host/<hostId>, ack after). */
  readonly relayTo?: { producer: Producer; topic: string };
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const server = new Server();
  const messages = new Map<string, dispatcher.ConnectRequest[]>();
  const calls = new Map<string, ConnectCall>();
  const resultCounts = new Map<dispatcher.CommandOutcome, number>();
  server.addService(
    {
      connect: {
        path: '/rebootless.dispatcher.v1.AgentGateway/Connect',
        requestStream: true,
        responseStream: true,
        requestSerialize: (m: dispatcher.ConnectRequest) => Buffer.from(dispatcher.ConnectRequest.encode(m).finish()),
        requestDeserialize: (b: Buffer) => dispatcher.ConnectRequest.decode(b),
        responseSerialize: (m: dispatcher.ConnectResponse) =>
          Buffer.from(dispatcher.ConnectResponse.encode(m).finish()),
        responseDeserialize: (b: Buffer) => dispatcher.ConnectResponse.decode(b),
      },
    },
    {
      connect: (call: ConnectCall) => {
        let hostId: string | undefined;
        call.on('data', (request: dispatcher.ConnectRequest) => {
          if (request.hello) {
            hostId = request.hello.facts?.hostId ?? '';
            calls.set(hostId, call);
          }
          if (hostId === undefined) {
            call.destroy(new Error('hello first'));
            return;
          }
          const list = messages.get(hostId) ?? [];
          list.push(request);
          if (request.commandResult) {
            const outcome = request.commandResult.outcome;
            resultCounts.set(outcome, (resultCounts.get(outcome) ?? 0) + 1);
          }
          messages.set(hostId, list);
          const ack = () => call.write({ ack: { messageId: request.messageId } });
          if (request.relayEvents && options.relayTo) {
            const key = `host/${hostId}`;
            options.relayTo.producer
              .send({
                topic: options.relayTo.topic,
                acks: -1,
                messages: request.relayEvents.envelopes.map((value) => ({ key, value: Buffer.from(value) })),
              })
              .then(ack, () => undefined); // not acknowledged: the agent sends them again
            return;
          }
          ack();
        });
        const gone = () => {
          if (hostId !== undefined && calls.get(hostId) === call) calls.delete(hostId);
        };
        call.on('end', () => {
          gone();
          call.end();
        });
        call.on('error', gone);
        call.on('cancelled', gone);
      },
    },
  );
  const address = await listen(server);
  const waitFor = async (check: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    address,
    received: (hostId) => messages.get(hostId) ?? [],
    countResults: (outcome) => resultCounts.get(outcome) ?? 0,
    connected: (hostId) => calls.has(hostId),
    send(hostId, command) {
      const call = calls.get(hostId);
      if (!call) throw new Error(`host ${hostId} is not connected`);
      call.write(command);
    },
    dropAll() {
      for (const call of calls.values()) call.end();
      calls.clear();
    },
    async result(hostId, commandId, outcome, timeoutMs = 15_000) {
      const find = () =>
        (messages.get(hostId) ?? []).find(
          (m) => m.commandResult?.commandId === commandId && m.commandResult.outcome === outcome,
        )?.commandResult;
      await waitFor(() => find() !== undefined, timeoutMs, `result ${outcome} of ${commandId} from ${hostId}`);
      return find()!;
    },
    waitFor,
    close: () => shutdown(server),
  };
}
