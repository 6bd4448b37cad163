// AgentControl on the host only (loopback or a Unix socket): the status command's way in.
// Plain grpc-js with the generated codecs: the agent runs no framework, so a host with little
// memory to spare pays for none.
import {
  Server,
  status,
  type ServerCredentials,
  type ServerInterceptor,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { agent, grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import type { Agent } from '@rebootless/agent-runtime';

function loadedControl(): Record<string, MethodDefinition<object, object>> {
  const { protoPath, packageName, serviceName } = grpcServices.agentControl;
  return loadSync(protoPath, protoLoaderOptions)[`${packageName}.${serviceName}`] as unknown as Record<
    string,
    MethodDefinition<object, object>
  >;
}

export const GET_STATUS_PATH = '/rebootless.agent.v1.AgentControl/GetStatus';

export const agentControlDefinition = {
  getStatus: {
    path: GET_STATUS_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m: agent.GetStatusRequest) => Buffer.from(agent.GetStatusRequest.encode(m).finish()),
    // Requests are decoded as every other service decodes them (proto-loader), so the agent
    // accepts and refuses exactly the bytes the others do.
    requestDeserialize: loadedControl().GetStatus!.requestDeserialize as (b: Buffer) => agent.GetStatusRequest,
    requestType: { type: { name: 'GetStatusRequest' } },
    responseSerialize: (m: agent.GetStatusResponse) => Buffer.from(agent.GetStatusResponse.encode(m).finish()),
    responseDeserialize: (b: Buffer) => agent.GetStatusResponse.decode(b),
  },
} as const;

export async function serveAgentControl(
  running: Agent,
  address: string,
  credentials: ServerCredentials,
  log: (message: string) => void,
  addMore?: (server: Server) => void,
  interceptors: ServerInterceptor[] = [],
): Promise<{ server: Server; address: string }> {
  const server = new Server({ interceptors });
  addMore?.(server);
  server.addService(agentControlDefinition, {
    getStatus: (
      _call: ServerUnaryCall<agent.GetStatusRequest, agent.GetStatusResponse>,
      done: sendUnaryData<agent.GetStatusResponse>,
    ) => {
      running.status().then(
        (answer) => done(null, answer),
        (error: unknown) => {
          log(`GetStatus failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
          done({ code: status.UNAVAILABLE, details: `the agent cannot read the kernel now: ${String(error)}` });
        },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (error, p) => (error ? reject(error) : resolve(p))),
  );
  return { server, address: address.replace(/:0$/, `:${port}`) };
}
