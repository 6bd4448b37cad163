// rebootless-agent status|uname: what `kpatch list` / `uptrack-show` and `uptrack-uname -r` /
// `kcarectl --uname` would say, from the running agent's AgentControl, reached the way it is
// deployed: its Unix socket (AGENT_CONTROL_SOCKET, root only), or its TCP port over TLS with the
// host's own certificate (REBOOTLESS_PKI_DIR, the same material the agent uses), or plaintext
// only where the agent runs with REBOOTLESS_INSECURE=true. Exit codes as `kcarectl --status`:
// 0 every desired patch live, 1 none applied, 2 some missing, 3 kernel not covered; 4 no agent.
import { isIP } from 'node:net';
import { Client, credentials, type ChannelCredentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@rebootless/contracts';
import { statusExitCode, statusJson, statusText } from '@rebootless/agent-runtime';
import {
  ConfigError,
  EXIT_CONFIG,
  clientCredentials,
  formatConfigProblem,
  formatHostPort,
  loadConfig,
} from '@rebootless/service';
import { agentSettings } from './config';
import { GET_STATUS_PATH } from './control-server';
import { effectiveKernel } from './effective-kernel';

export const STATUS_USAGE = [
  'usage: rebootless-agent status [--json] [--socket PATH | --address HOST:PORT]',
  '       rebootless-agent uname [--json]   the effective kernel: release plus the live patches in effect',
].join('\n');
export const EXIT_USAGE = 64;
const EXIT_NO_AGENT = 4;

/** Where and how to reach AgentControl, or the problem that says why we cannot tell. */
function target(
  socket: string | undefined,
  address: string | undefined,
): { where: string; how: ChannelCredentials; options: ChannelOptions; what: string } {
  const env = process.env;
  const local = socket ?? (address === undefined ? env['AGENT_CONTROL_SOCKET'] : undefined);
  if (local) return { where: `unix:${local}`, how: credentials.createInsecure(), options: {}, what: `unix:${local}` };
  const { grpcListen, hostId, transport } = loadConfig(
    { grpcListen: agentSettings.grpcListen, hostId: agentSettings.hostId, transport: agentSettings.transport },
    env,
  );
  const where = address ?? formatHostPort(grpcListen);
  // The host's certificate: the identity the agent itself presents to the dispatcher.
  // The server must be this host's agent service, not any holder of a certificate of the CA.
  const how = clientCredentials(transport, { kind: 'host', id: hostId }, { kind: 'service', id: 'agent' });
  // An IP literal as the TLS server name is deprecated (RFC 6066); the pki's certificates also name localhost.
  const options =
    transport.mode === 'tls' && isIP(where.slice(0, where.lastIndexOf(':')).replace(/^\[|\]$/g, ''))
      ? { 'grpc.ssl_target_name_override': 'localhost' }
      : {};
  return {
    where,
    how,
    options,
    what: `${where} (${transport.mode === 'tls' ? `TLS as host:${hostId}` : 'plaintext'})`,
  };
}

export async function statusCommand(command: 'status' | 'uname', args: string[]): Promise<number> {
  let json = false;
  let address: string | undefined;
  let socket: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--address' && command === 'status' && args[i + 1]) address = args[++i]!;
    else if (arg === '--socket' && command === 'status' && args[i + 1]) socket = args[++i]!;
    else {
      process.stderr.write(`rebootless-agent: unexpected argument "${arg}"\n${STATUS_USAGE}\n`);
      return EXIT_USAGE;
    }
  }
  if (address !== undefined && socket !== undefined) {
    process.stderr.write(`rebootless-agent: give --socket or --address, not both\n${STATUS_USAGE}\n`);
    return EXIT_USAGE;
  }
  let reach;
  try {
    reach = target(socket, address);
  } catch (error) {
    const problems =
      error instanceof ConfigError ? error.problems.map((p) => `  ${formatConfigProblem(p)}`) : [`  ${String(error)}`];
    process.stderr.write(
      ['rebootless-agent: cannot tell how to reach the agent (the same settings as the agent):', ...problems].join(
        '\n',
      ) + '\n',
    );
    return EXIT_CONFIG;
  }
  const client = new Client(reach.where, reach.how, reach.options);
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
    const kernel = effectiveKernel(answer);
    if (command === 'uname') {
      process.stdout.write(json ? JSON.stringify(kernel, null, 2) + '\n' : `${kernel.effective}\n`);
      return 0;
    }
    if (json) {
      process.stdout.write(
        JSON.stringify({ ...statusJson(answer), effectiveKernel: kernel.effective }, null, 2) + '\n',
      );
    } else {
      const lines = statusText(answer, new Date());
      // Right under "kernel:", as uptrack-uname -r beside uname -r.
      const at = lines.findIndex((l) => l.startsWith('kernel:'));
      lines.splice(at + 1, 0, `effective kernel: ${kernel.effective}`);
      process.stdout.write(lines.join('\n') + '\n');
    }
    return statusExitCode(answer);
  } catch (error) {
    process.stderr.write(
      `rebootless-agent: no agent answers on ${reach.what}: ${(error as ServiceError).details ?? String(error)}\n`,
    );
    return EXIT_NO_AGENT;
  } finally {
    client.close();
  }
}

// Still runnable on its own (`node dist/status-command.js status ...`), as before `rebootless-agent` grew subcommands.
if (require.main === module) {
  const [command, ...rest] = process.argv.slice(2);
  const run =
    command === 'status' || command === 'uname'
      ? statusCommand(command, rest)
      : Promise.resolve((process.stderr.write(`${STATUS_USAGE}\n`), EXIT_USAGE));
  void run.then((code) => process.exit(code));
}
