// The smoke test a module passes before it is published (issue 18): booted in a QEMU guest of
// the kernel it was built for, loaded, its transition finished, the kernel exercised while it is
// live, then disabled and unloaded. klp-build's SUCCESS is not the last word: a module the kernel
// refuses, one whose transition never ends, or one that oopses or warns when its code runs fails
// here, with the kernel's own lines as the evidence. The guest is the sandbox: the module's code
// never runs on the builder's kernel.
import type { GuestVm } from './guest-vm';
import type { KernelLab } from './kernel-lab';

export type SmokeStep = 'load' | 'transition' | 'exercise' | 'disable' | 'unload';

export interface SmokeResult {
  readonly release: string;
  readonly bootId: string;
  readonly bootMs: number;
  readonly loadMs: number;
  readonly transitionMs: number;
  /** How many /proc and /sys files the exercise read with the module live. */
  readonly exercisedFiles: number;
  /** The kernel's log lines from the module's load to its unload. */
  readonly kernelLog: string[];
}

/** The module did not pass: the step, and the kernel's words (or the guest's console) saying why. */
export class SmokeTestFailed extends Error {
  constructor(
    readonly step: SmokeStep,
    message: string,
    readonly evidence: readonly string[],
  ) {
    super(message);
    this.name = 'SmokeTestFailed';
  }
}

// Taint bits a module must not cause: D (an oops, "died") and W (a kernel warning).
const TAINT_DIE = 1 << 7;
const TAINT_WARN = 1 << 9;
const TROUBLE =
  /\b(Oops|BUG:|general protection fault|Kernel panic|WARNING:|Unable to handle|unable to handle|Call Trace:|livepatch: .*(failed|error))/;
const TRANSITION_TIMEOUT_MS = 60_000;

export interface SmokeOptions {
  readonly signal?: AbortSignal;
  readonly onLog?: (line: string) => void;
  readonly memoryMb?: number;
}

export async function smokeTestModule(
  lab: KernelLab,
  module: { readonly name: string; readonly bytes: Buffer },
  options: SmokeOptions = {},
): Promise<SmokeResult> {
  const log = options.onLog ?? (() => undefined);
  const consoleTail: string[] = [];
  const bootStarted = Date.now();
  const vm = await lab.boot({
    memoryMb: options.memoryMb ?? 512,
    onConsole: (line) => {
      consoleTail.push(line);
      if (consoleTail.length > 80) consoleTail.shift();
    },
  });
  const stopOnAbort = () => void vm.stop();
  options.signal?.addEventListener('abort', stopOnAbort, { once: true });
  try {
    const bootMs = Date.now() - bootStarted;
    const before = await vm.probe.state();
    log(`smoke: ${before.release} booted in ${bootMs} ms (boot ${before.bootId})`);
    // The ring buffer may drop its oldest lines as new ones come: count from the last line seen
    // (each carries its timestamp), not from a line number.
    const last = (await dmesgLines(vm)).at(-1);
    const since = async () => {
      const lines = await dmesgLines(vm);
      const at = last === undefined ? -1 : lines.lastIndexOf(last);
      return lines.slice(at + 1);
    };
    // Any probe error from here on is the guest going away under the module: the console says why.
    const guarded = async <T>(step: SmokeStep, what: () => Promise<T>): Promise<T> => {
      try {
        return await what();
      } catch (error) {
        if (error instanceof SmokeTestFailed || options.signal?.aborted) throw error;
        throw new SmokeTestFailed(step, `the guest stopped answering during ${step}: ${(error as Error).message}`, [
          ...consoleTail.filter((l) => l.trim() !== ''),
        ]);
      }
    };
    const healthy = async (step: SmokeStep) => {
      const lines = await since();
      const trouble = lines.filter((l) => TROUBLE.test(l));
      const tainted = (await vm.probe.state()).tainted;
      if (trouble.length > 0 || (tainted & (TAINT_DIE | TAINT_WARN)) !== (before.tainted & (TAINT_DIE | TAINT_WARN))) {
        throw new SmokeTestFailed(
          step,
          `the kernel reported trouble during ${step} (tainted ${tainted})`,
          trouble.length > 0
            ? lines.slice(Math.max(0, lines.indexOf(trouble[0]!) - 2), lines.indexOf(trouble[0]!) + 20)
            : lines.slice(-20),
        );
      }
      return lines;
    };

    await vm.probe.putModule(module.name, module.bytes);
    const loadStarted = Date.now();
    const insmod = await guarded('load', () => vm.probe.insmod(module.name));
    const loadMs = Date.now() - loadStarted;
    if (insmod.code !== 0) {
      const lines = await since();
      throw new SmokeTestFailed('load', `the kernel refused to load ${module.name}: ${insmod.stderr.trim()}`, [
        insmod.stderr.trim(),
        ...lines.slice(-10),
      ]);
    }
    log(`smoke: ${module.name} loaded in ${loadMs} ms`);
    const transitionStarted = Date.now();
    await guarded('transition', () =>
      vm.probe
        .waitFor(
          (s) => s.livepatch.some((p) => p.name === module.name && p.enabled === '1' && p.transition === '0'),
          `${module.name}'s transition to finish`,
          TRANSITION_TIMEOUT_MS,
        )
        .catch(async (error: Error) => {
          if (!/timed out|timeout/i.test(error.message)) throw error;
          throw new SmokeTestFailed(
            'transition',
            `${module.name} was still in transition after ${TRANSITION_TIMEOUT_MS / 1000} s (a task sleeping in a patched function never lets it finish)`,
            (await since()).slice(-10),
          );
        }),
    );
    const transitionMs = Date.now() - transitionStarted;
    await healthy('transition');

    const exercised = await guarded('exercise', () => vm.probe.exercise());
    await healthy('exercise');
    if (exercised.code !== 0) {
      throw new SmokeTestFailed('exercise', `the exercise did not finish: ${exercised.stderr.trim()}`, []);
    }
    const exercisedFiles = Number(exercised.stdout.trim()) || 0;
    log(`smoke: read ${exercisedFiles} /proc and /sys files with ${module.name} live, the kernel stayed quiet`);

    const disabled = await guarded('disable', () => vm.probe.writeEnabled(module.name, 0));
    if (!disabled.ok) throw new SmokeTestFailed('disable', `disabling ${module.name} failed: ${disabled.message}`, []);
    await guarded('disable', () =>
      vm.probe.waitFor(
        (s) => !s.livepatch.some((p) => p.name === module.name && (p.enabled === '1' || p.transition === '1')),
        `${module.name} to be disabled`,
        TRANSITION_TIMEOUT_MS,
      ),
    );
    let unloaded = false;
    for (let attempt = 0; attempt < 50 && !unloaded; attempt++) {
      unloaded = (await guarded('unload', () => vm.probe.rmmod(module.name))).code === 0;
      if (!unloaded) await new Promise((r) => setTimeout(r, 200));
    }
    if (!unloaded)
      throw new SmokeTestFailed('unload', `${module.name} could not be unloaded after it was disabled`, []);
    const kernelLog = await healthy('unload');
    log(`smoke: ${module.name} disabled and unloaded cleanly`);
    return {
      release: before.release,
      bootId: before.bootId,
      bootMs,
      loadMs,
      transitionMs,
      exercisedFiles,
      kernelLog,
    };
  } finally {
    options.signal?.removeEventListener('abort', stopOnAbort);
    await vm.stop();
  }
}

async function dmesgLines(vm: GuestVm): Promise<string[]> {
  return (await vm.probe.dmesg()).stdout.split('\n').filter((l) => l.length > 0);
}
