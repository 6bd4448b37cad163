// The demo fleet of `npm start` as its own process: simulated hosts (real agents on simulated
// kernels, libs/agent-runtime) connected to the dispatcher's gateway over TLS, each with its own
// host certificate from the development PKI, delivering their events through the gateway as a
// real agent without Kafka access would.
//
//   node libs/testing/dist/demo/demo-fleet.js <fleet.json>
//
// fleet.json is a DemoFleetConfig (written by scripts/stack.mjs). Prints "demo fleet ready: ..."
// once every host is connected, and stops every agent cleanly on SIGTERM or SIGINT.
// First, before grpc-js and kafkajs load: with `--tracing` the fleet's agents send their spans
// (agent verify, agent transition) as the agent daemon does.
import { startTelemetry } from '@rebootless/telemetry';
startTelemetry('agent', { 'rebootless.fleet': 'demo' });

import * as fs from 'node:fs';
import { channelCredentials, loadTlsMaterial } from '@rebootless/trust';
import { SimulatedFleet, type SimulatedHostSpec } from '../fleet/simulated-fleet';
import { STALLED_FUNCTION } from './demo-plan';

export interface DemoFleetConfig {
  /** Where each host's agent keeps its data dir. */
  root: string;
  pkiDir: string;
  dispatcherAddress: string;
  builderAddress: string;
  /** The builder's raw Ed25519 public key in hex: agents load only what it signed. */
  builderPublicKey: string;
  brokers: string;
  topic: string;
  hosts: { hostId: string; kernelRelease: string; labels: Record<string, string> }[];
  /** A task sleeps in the patched function on this host: its transition can never finish. */
  stallHostId?: string;
  /** How long an agent waits for a transition before it reverses it and reports the stall. */
  transitionTimeoutMs: number;
}

function say(line: string): void {
  process.stdout.write(`demo fleet: ${line}\n`);
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: demo-fleet.js <fleet.json>');
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as DemoFleetConfig;
  // Every agent relays through the gateway, which binds its key (no reader counts one it did not bind).
  const specs: SimulatedHostSpec[] = config.hosts;
  const fleet = new SimulatedFleet(
    {
      root: config.root,
      dispatcherAddress: config.dispatcherAddress,
      builderAddress: config.builderAddress,
      builderPublicKey: Buffer.from(config.builderPublicKey, 'hex'),
      agentTransitionTimeoutMs: config.transitionTimeoutMs,
      sharedArtifacts: true,
      credentials: (hostId) =>
        channelCredentials(loadTlsMaterial(config.pkiDir, { kind: 'host', id: hostId }), [
          { kind: 'service', id: 'dispatcher' },
          { kind: 'service', id: 'builder' },
        ]),
    },
    specs,
  );
  if (config.stallHostId) {
    fleet.get(config.stallHostId).kernel.addSleepingTask({ comm: 'nfsd', sleepsIn: STALLED_FUNCTION });
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`stopping (${signal})`);
    setTimeout(() => process.exit(1), 10_000).unref();
    await fleet.close();
    say('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  await fleet.start();
  const deadline = Date.now() + 120_000;
  while (fleet.connectedCount() < specs.length) {
    if (Date.now() > deadline) throw new Error(`only ${fleet.connectedCount()} of ${specs.length} hosts connected`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const releases = [...new Set(specs.map((s) => s.kernelRelease))].join(', ');
  say(`ready: ${specs.length} hosts connected (${releases}), pid ${process.pid}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo fleet: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
