// A fault loaded into a real dispatcher process with `node --require` (the dispatcher-instances
// e2e test): it holds one write of commands after the instance confirmed its leases, as a
// stalled process or a slow network would, until the test lets it go. No service loads it.
//
// FAULT_HOLD_DIR names a directory: once `armed` exists there (its text: "<n> <host id prefix>",
// which write carrying commands to hosts of that prefix, counted from then, to hold), that write
// waits; `held` is written with its command ids when it starts waiting, and the write goes on
// once `release` exists. Commands: a rollout's applies, an operator's quarantine clears.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { EventPublisher as EventPublisherType } from '@rebootless/kafka';

const dir = process.env['FAULT_HOLD_DIR'];
const KAFKA_LIB = '@rebootless/kafka';

async function hold(commandIds: string[]): Promise<void> {
  fs.writeFileSync(path.join(dir!, 'held'), JSON.stringify(commandIds));
  while (!fs.existsSync(path.join(dir!, 'release'))) await new Promise((r) => setTimeout(r, 20));
}

function install(): void {
  // The service's own EventPublisher, the one its main module loaded (after its tracing
  // patches); through createRequire, as a test harness's lookup rather than a dependency.
  const { EventPublisher } = createRequire(__filename)(KAFKA_LIB) as { EventPublisher: typeof EventPublisherType };
  const publish = EventPublisher.prototype.publish;
  let counted = 0;
  EventPublisher.prototype.publish = async function (this: EventPublisherType, drafts) {
    const armed = path.join(dir!, 'armed');
    if (!fs.existsSync(armed)) counted = 0;
    else {
      const [nth, prefix = ''] = fs.readFileSync(armed, 'utf8').trim().split(' ');
      const list = Array.isArray(drafts) ? drafts : [drafts];
      const commandIds = list.flatMap((d) =>
        (d.payload.type === 'HostApplyRequested' || d.payload.type === 'QuarantineClearRequested') &&
        d.payload.data.hostId.startsWith(prefix)
          ? [d.payload.data.commandId]
          : [],
      );
      if (commandIds.length > 0 && ++counted === Number(nth)) await hold(commandIds);
    }
    return publish.call(this, drafts);
  };
}

if (dir) setImmediate(install);
