#!/usr/bin/env node
// rebootless-agent status [--json] [--address host:port]: what `kpatch list` / `uptrack-show`
// would say, from the running agent's AgentControl. Exit codes as `kcarectl --status`:
// 0 every desired patch live, 1 none applied, 2 some missing, 3 kernel not covered; 4 no agent.
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@rebootless/contracts';
import { statusExitCode, statusJson, statusText } from '@rebootless/agent-runtime';
import { GET_STATUS_PATH } from './control-server';

const USAGE = 'usage: rebootless-agent status [--json] [--address host:port]';
const EXIT_NO_AGENT = 4;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let json = false;
  let address = process.env['AGENT_GRPC_ADDRESS'] ?? `127.0.0.1:${process.env['AGENT_GRPC_PORT'] ?? '7454'}`;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--json') json = true;
    else if (rest[i] === '--address' && rest[i + 1]) address = rest[++i]!;
    else {
      process.stderr.write(`${USAGE}\n`);
      return 64;
    }
  }
  if (command !== 'status') {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }
  const client = new Client(address, credentials.createInsecure());
  try {
    const answer = await new Promise<agent.GetStatusResponse>((resolve, reject) =>
      client.makeUnaryRequest(
        GET_STATUS_PATH,
        (m: agent.GetStatusRequest) => Buffer.from(agent.GetStatusRequest.encode(m).finish()),
        (b: Buffer) => agent.GetStatusResponse.decode(b),
        {},
        { deadline: new Date(Date.now() + 5_000) },
        (error: ServiceError | null, value?: agent.GetStatusResponse) => (error ? reject(error) : resolve(value!)),
      ),
    );
    if (json) process.stdout.write(JSON.stringify(statusJson(answer), null, 2) + '\n');
    else process.stdout.write(statusText(answer, new Date()).join('\n') + '\n');
    return statusExitCode(answer);
  } catch (error) {
    process.stderr.write(
      `rebootless-agent: no agent answers on ${address}: ${(error as ServiceError).details ?? String(error)}\n`,
    );
    return EXIT_NO_AGENT;
  } finally {
    client.close();
  }
}

void main(process.argv.slice(2)).then((code) => process.exit(code));
