// Runs the agent's real kernel port (LivepatchSysfs from libs/agent-runtime) inside the guest and
// prints what it reads as one JSON line, so a test can compare it with the probe's own reading.
// Usage in the guest: node /guest/sysfs-port.js <snapshot|listPatches|tainted|bootId|kernelRelease|moduleLoaded NAME>
// (snapshot: all of release, boot id, tainted and patches in one run; Node starts slowly under TCG).
import { LivepatchSysfs } from '@rebootless/agent-runtime';

async function main(): Promise<void> {
  const port = new LivepatchSysfs();
  const [what, arg] = process.argv.slice(2);
  let result: unknown;
  switch (what) {
    case 'snapshot': {
      const [release, bootId, tainted, patches] = await Promise.all([
        port.kernelRelease(),
        port.bootId(),
        port.tainted(),
        port.listPatches(),
      ]);
      result = { release, bootId, tainted, patches };
      break;
    }
    case 'listPatches':
      result = await port.listPatches();
      break;
    case 'tainted':
      result = await port.tainted();
      break;
    case 'bootId':
      result = await port.bootId();
      break;
    case 'kernelRelease':
      result = await port.kernelRelease();
      break;
    case 'moduleLoaded':
      result = await port.moduleLoaded(arg ?? '');
      break;
    default:
      throw new Error(`unknown query ${String(what)}`);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
