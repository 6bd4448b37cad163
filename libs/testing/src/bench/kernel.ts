// npm run bench:kernel — the kernel lab's costs on this machine: preparing the lab (release,
// kernel image, bundles, initramfs), booting Debian's cloud kernel in QEMU (TCG) to the probe's
// ready line, one livepatch cycle (insmod, transition, disable, rmmod), a reboot, a stop, and
// BENCH_KERNEL_PARALLEL guests booted at once, and the lab kernel profile's figures (cold profile
// build, warm diff build, the builder's smoke test, diff → live in its guest). Prints progress on stderr and one JSON object as the
// last line of stdout; writes it to bench/results/kernel-<date>.json.
// Settings: BENCH_KERNEL_ROUNDS (default 3), BENCH_KERNEL_PARALLEL (default 4).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KernelLab, profileKernelImage, smokeTestModule, type GuestVm } from '@rebootless/kernel-lab';
import {
  buildFromDiff,
  compileLivepatchModule,
  defaultProfileCacheDir,
  KernelHeadersCache,
  KernelProfileCache,
  labProfile,
  livepatchSample,
} from '@rebootless/kernel-toolchain';
import { REPO_ROOT } from '../process';
import { machineFacts } from './machine';

const ROUNDS = Number(process.env['BENCH_KERNEL_ROUNDS'] ?? 3);
const PARALLEL = Number(process.env['BENCH_KERNEL_PARALLEL'] ?? 4);
const say = (line: string) => process.stderr.write(`bench:kernel: ${line}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = Date.now();
  const value = await fn();
  return [value, Date.now() - started];
}

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    min_ms: sorted[0] ?? null,
    median_ms: sorted[Math.floor(sorted.length / 2)] ?? null,
    max_ms: sorted.at(-1) ?? null,
    all_ms: values,
  };
}

async function main(): Promise<void> {
  const [lab, prepareMs] = await timed(() => KernelLab.prepare({ log: say }));
  say(`lab ready in ${prepareMs} ms: ${lab.release}, initramfs ${(lab.initramfs.sizeBytes / 1e6).toFixed(1)} MB`);

  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-kernel-'));
  const vms: GuestVm[] = [];
  try {
    const headers = await new KernelHeadersCache().ensure(lab.release);
    const [module, buildMs] = await timed(() =>
      compileLivepatchModule({
        source: livepatchSample({ moduleName: 'rbl_bench', replacementText: 'rebootless bench' }),
        moduleName: 'rbl_bench',
        headers,
        workDir,
        timeoutMs: 180_000,
      }),
    );
    const ko = fs.readFileSync(module.modulePath);

    const boot: number[] = [];
    const cycle: number[] = [];
    const reboot: number[] = [];
    const stop: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const [vm, bootMs] = await timed(() => lab.boot());
      vms.push(vm);
      boot.push(bootMs);
      const [, cycleMs] = await timed(async () => {
        await vm.probe.putModule('rbl_bench', ko);
        const insmod = await vm.probe.insmod('rbl_bench');
        if (insmod.code !== 0) throw new Error(`insmod failed: ${insmod.stderr}`);
        await vm.probe.waitFor(
          (s) => s.cmdline === 'rebootless bench' && s.livepatch.every((p) => p.transition === '0'),
          'the patch',
        );
        await vm.probe.writeEnabled('rbl_bench', 0);
        await vm.probe.waitFor((s) => s.livepatch.length === 0, 'the patch to go');
        for (let i = 0; (await vm.probe.rmmod('rbl_bench')).code !== 0; i++) {
          if (i > 20) throw new Error('rmmod kept failing');
          await new Promise((r) => setTimeout(r, 100));
        }
      });
      cycle.push(cycleMs);
      reboot.push((await timed(() => vm.reboot()))[1]);
      stop.push((await timed(() => vm.stop()))[1]);
      say(`round ${round + 1}: boot ${bootMs} ms, livepatch cycle ${cycleMs} ms, reboot ${reboot.at(-1)} ms`);
    }

    const [parallel, parallelMs] = await timed(() => Promise.all(Array.from({ length: PARALLEL }, () => lab.boot())));
    vms.push(...parallel);
    await Promise.all(parallel.map((vm) => vm.stop()));
    say(`${PARALLEL} guests booted at once in ${parallelMs} ms`);

    const labProfile = await measureLabProfile(workDir);

    const out = {
      bench: 'kernel',
      date: new Date().toISOString(),
      machine: { ...machineFacts(), load_average_1m: Math.round(os.loadavg()[0]! * 100) / 100 },
      settings: { rounds: ROUNDS, parallel: PARALLEL, accel: 'tcg', memory_mb: 512, cpus: 1 },
      release: lab.release,
      kernel_package: lab.kernel.package,
      initramfs_bytes: lab.initramfs.sizeBytes,
      initramfs_built: lab.initramfs.built,
      prepare_ms: prepareMs,
      prepare_steps_ms: lab.timings,
      module_build_ms: buildMs,
      boot_to_ready: summary(boot),
      livepatch_cycle: summary(cycle),
      reboot: summary(reboot),
      stop: summary(stop),
      parallel_boot_all_ready_ms: parallelMs,
      lab_profile: labProfile,
    };
    const dir = path.join(REPO_ROOT, 'bench', 'results');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `kernel-${out.date.replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
    say(`wrote ${path.relative(REPO_ROOT, file)}`);
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await Promise.all(vms.map((vm) => vm.stop()));
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/**
 * The lab kernel profile (issue 18, ADR 0027): its cold build as recorded when the cache was made
 * (`npm run kernel:profile` builds it if missing), a warm klp-build of one diff, and diff → live:
 * a build, then the module loaded into a booted guest of that kernel until /proc/cmdline shows it.
 */
async function measureLabProfile(workDir: string) {
  const cache = new KernelProfileCache({ cacheDir: defaultProfileCacheDir(), onProgress: say });
  const [profile, ensureMs] = await timed(() => cache.ensure(labProfile()));
  const diff = fs.readFileSync(
    path.join(REPO_ROOT, 'libs', 'kernel-toolchain', 'testdata', 'klp-corpus', '01-function-body.patch'),
    'utf8',
  );
  const warm: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    warm.push((await timed(() => buildFromDiff(profile, diff, { replace: false, workRoot: workDir })))[1]);
    say(`lab profile: warm diff build ${warm.at(-1)} ms`);
  }
  const lab = await KernelLab.prepare({ kernel: profileKernelImage(profile), log: say });
  // The builder's smoke stage on its own: a guest booted, the module loaded, exercised, unloaded.
  const smokeModule = await buildFromDiff(profile, diff, { replace: false, workRoot: workDir });
  const [smoke, smokeMs] = await timed(() =>
    smokeTestModule(lab, { name: smokeModule.moduleName, bytes: smokeModule.module }),
  );
  say(`lab profile: smoke test ${smokeMs} ms (${smoke.exercisedFiles} files read with the patch live)`);
  const [vm, bootMs] = await timed(() => lab.boot({ memoryMb: 768 }));
  try {
    const before = vm.probe;
    const [, liveMs] = await timed(async () => {
      const built = await buildFromDiff(profile, diff, { replace: false, workRoot: workDir });
      await before.putModule(built.moduleName, built.module);
      const insmod = await before.insmod(built.moduleName);
      if (insmod.code !== 0) throw new Error(`insmod failed: ${insmod.stderr}`);
      await before.waitFor(
        (s) => s.cmdline.startsWith('rebootless-livepatched ') && s.livepatch.every((p) => p.transition === '0'),
        'the patch in the lab kernel',
      );
    });
    say(`lab profile: diff → live ${liveMs} ms`);
    return {
      release: profile.release,
      profile_key: profile.key,
      cold_build_ms: Object.values(profile.timings).reduce((a, b) => a + b, 0) || null,
      cold_build_steps_ms: profile.timings,
      cold_build_recorded: profile.fromCache ? 'when the cache was made (see profile.json)' : 'in this run',
      ensure_ms: ensureMs,
      warm_diff_build: summary(warm),
      boot_to_ready_ms: bootMs,
      diff_to_live_ms: liveMs,
      smoke_test_ms: smokeMs,
      smoke_exercised_files: smoke.exercisedFiles,
    };
  } finally {
    await vm.stop();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:kernel: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
