// Hands one apply command straight to the real Agent (libs/agent-runtime) on the guest's real
// kernel (LivepatchSysfs), without a dispatcher, and prints the agent's answer as one JSON line.
// For commands no dispatcher would send (e.g. a module built for another kernel release): the
// test sees the agent's own verification refuse it, and checks through the probe that the kernel
// was never touched. It prints the agent's answer and the facts it recorded to report.
// Usage in the guest: node /guest/agent-command.js '<json>' with
//   { hostId, builderAddress, builderPublicKey (hex), dataDir, apply: ApplyCommand fields }
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Agent, EventOutbox, GatewayRelaySink, LivepatchSysfs } from '@rebootless/agent-runtime';
import type { dispatcher } from '@rebootless/contracts';
import { decodeEvent } from '@rebootless/events';

interface Request {
  hostId: string;
  builderAddress: string;
  builderPublicKey: string;
  dataDir: string;
  apply: Pick<dispatcher.ApplyCommand, 'commandId' | 'patchId' | 'version' | 'kernelRelease' | 'artifactDigest'>;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as Request;
  fs.mkdirSync(request.dataDir, { recursive: true });
  const logs: string[] = [];
  const agent = new Agent({
    kernel: new LivepatchSysfs(),
    dataDir: request.dataDir,
    hostId: request.hostId,
    builderAddress: request.builderAddress,
    builderPublicKey: Buffer.from(request.builderPublicKey, 'hex'),
    // No dispatcher: its events stay in its outbox in dataDir.
    sink: new GatewayRelaySink(),
    driftCheckMs: 0,
    log: (line) => logs.push(line),
  });
  await agent.start();
  const apply: dispatcher.ApplyCommand = { rolloutId: '', allowForce: false, allowDowngrade: false, ...request.apply };
  const result = await agent.handle({ apply });
  const pendingEvents = agent.pendingEvents;
  await agent.stop();
  // What the agent would report: the signed facts waiting in its outbox (no dispatcher here).
  const { outbox } = EventOutbox.open({
    dir: path.join(request.dataDir, 'chain'),
    producerId: `agent/${request.hostId}`,
  });
  const reported = outbox.pending().map((r) => decodeEvent(r.envelope).body);
  outbox.close();
  process.stdout.write(`${JSON.stringify({ result, pendingEvents, reported, logs })}\n`);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
