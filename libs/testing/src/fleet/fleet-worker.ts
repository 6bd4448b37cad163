// One child process of a ForkedFleet: a SimulatedFleet for the hosts it was given, reporting
// how many of its agents are connected to the parent until told to close.
import type { WorkerReport, WorkerRequest } from './forked-fleet';
import { SimulatedFleet } from './simulated-fleet';

let fleet: SimulatedFleet | undefined;
let reporter: NodeJS.Timeout | undefined;

function report(message: WorkerReport): void {
  // The parent gone (a bench that ended on a failure): 'disconnect' below ends this process.
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
}

process.on('message', (request: WorkerRequest) => {
  void (async () => {
    if (request.type === 'start') {
      const { builderPublicKey, ...options } = request.options;
      fleet = new SimulatedFleet({ ...options, builderPublicKey: Buffer.from(builderPublicKey, 'hex') }, request.specs);
      const f = fleet;
      // Counted where the agents are, sent only when it changes.
      let last = -1;
      reporter = setInterval(() => {
        const count = f.connectedCount();
        if (count !== last) report({ type: 'connected', count });
        last = count;
      }, 200);
      await f.start(undefined, request.concurrency);
      report({ type: 'started' });
    } else if (request.type === 'close') {
      if (reporter) clearInterval(reporter);
      await fleet?.close();
      report({ type: 'closed' });
      process.exit(0);
    }
  })().catch((error: unknown) => {
    report({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  });
});

process.on('disconnect', () => process.exit(0));
