// `npm run kernel:profile [-- --json]`: builds the lab kernel profile into the cache if it is not
// there (the cold run takes minutes on two cores; progress on stderr), then says where it is.
// CI runs it before the tests so the kernel tier finds it warm, and its figure is in the log.
import { defaultProfileCacheDir, KernelProfileCache, labProfile } from './kernel-profile';

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const cacheDir = defaultProfileCacheDir();
  const started = Date.now();
  const cache = new KernelProfileCache({ cacheDir, onProgress: (line) => process.stderr.write(`${line}\n`) });
  const build = await cache.ensure(labProfile());
  const summary = { ...build, seconds: Math.round((Date.now() - started) / 1000) };
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else
    process.stdout.write(
      `kernel profile ${build.profile} (${build.release}): ${build.fromCache ? 'cached' : `built in ${summary.seconds} s`}, ${build.dir}\n`,
    );
}

main().catch((error: unknown) => {
  process.stderr.write(`kernel:profile: ${error instanceof Error ? error.message : String(error)}\n`);
  const diagnostics = (error as { diagnostics?: string[] }).diagnostics;
  if (diagnostics?.length) process.stderr.write(`${diagnostics.join('\n')}\n`);
  process.exit(1);
});
