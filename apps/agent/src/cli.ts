#!/usr/bin/env node
// rebootless-agent: `run` is the daemon (systemd's ExecStart), `status` and `uname` ask it.
// Nothing is loaded before the subcommand is known: `run` must load telemetry before grpc-js.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const USAGE = `usage: rebootless-agent run [--json]          the agent daemon (--json: one JSON object a log line)
       rebootless-agent status [--json] [--socket PATH | --address HOST:PORT]
       rebootless-agent uname [--json]
       rebootless-agent --version [--json]`;

function version(json: boolean): number {
  const { version: v } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
  process.stdout.write(
    json ? `${JSON.stringify({ name: 'rebootless-agent', version: v })}\n` : `rebootless-agent ${v}\n`,
  );
  return 0;
}

async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json') || command === '--json';
  if (command === '--version' || argv.includes('--version')) return version(json);
  if (command === 'run') {
    const unknown = rest.filter((a) => a !== '--json');
    if (unknown.length > 0) {
      process.stderr.write(
        `rebootless-agent run: unexpected argument "${unknown[0]}" (settings come from the environment)\n${USAGE}\n`,
      );
      return 64;
    }
    await import('./main');
    return undefined; // the daemon runs until a signal ends it
  }
  if (command === 'status' || command === 'uname') {
    const { statusCommand } = await import('./status-command');
    return statusCommand(command, rest);
  }
  if (command === '--help' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  process.stderr.write(`${command ? `rebootless-agent: unknown command "${command}"\n` : ''}${USAGE}\n`);
  return 64;
}

void main(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exit(code);
});
