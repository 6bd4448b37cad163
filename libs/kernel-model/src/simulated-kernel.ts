import { randomUUID } from 'node:crypto';
import type { events } from '@rebootless/contracts';
import { KernelClock, systemClock } from './clock';
import { asSysfsFunction, functionKey, sortFunctions } from './functions';
import {
  KernelError,
  KernelErrorCode,
  KernelOperation,
  KernelPort,
  KLP_PATCHED,
  KLP_UNPATCHED,
  LoadModuleRequest,
} from './kernel-port';
import { LivepatchFeatures, livepatchFeatures, StackingRule } from './kernel-release';
import { TAINT_LIVEPATCH, TAINT_OOT_MODULE, TAINT_UNSIGNED_MODULE } from './taint';

export interface SimulatedKernelOptions {
  /** `uname -r`; decides the livepatch features unless overridden. Default "6.1.0-56-cloud-amd64". */
  release?: string;
  version?: string;
  arch?: string;
  /** How long a transition takes when no task blocks it. Default 0 (done at the next look). */
  transitionMs?: number;
  clock?: KernelClock;
  /** Force a stacking rule regardless of the release (e.g. 'top-only' on a new kernel). */
  stacking?: StackingRule;
  /** Override individual features (a distro kernel with backports). */
  features?: Partial<LivepatchFeatures>;
  /** Per-module signing and provenance; default unsigned and out-of-tree, like a kpatch build. */
  moduleProvenance?: (moduleName: string) => { signed: boolean; inTree: boolean };
  initialTaint?: number;
  bootId?: string;
  newBootId?: () => string;
}

export interface SleepingTaskSpec {
  /** Default: the next free pid from 1000. */
  pid?: number;
  comm: string;
  /** The function the task sleeps in; it blocks every transition that touches this function. */
  sleepsIn: events.PatchedFunction;
  /** Default: a one-frame stack naming the function, like /proc/<pid>/stack. */
  stack?: string[];
}

interface SimPatch {
  moduleName: string;
  functions: events.PatchedFunction[];
  replace: boolean;
  /** The value of /sys/kernel/livepatch/<patch>/enabled: the target state. */
  enabled: boolean;
}

interface SimModule {
  name: string;
  path: string;
  /** The patch while it exists in sysfs; undefined once disabled and gone. */
  patch: SimPatch | undefined;
  /** A forced transition leaves the module referenced forever: it can never be removed. */
  forced: boolean;
}

interface Transition {
  patch: SimPatch;
  /** true: patching (enabled=1), false: unpatching. */
  target: boolean;
  dueAt: number;
  /**
   * Tasks that never switched before this transition reversed the previous one: they are
   * already in the new target state, so they do not block it (klp_reverse_transition).
   */
  unswitched?: ReadonlySet<number>;
}

interface SleepingTask {
  pid: number;
  comm: string;
  sleepsIn: string;
  stack: string[];
}

/**
 * Everything a simulated kernel holds, as plain JSON: a kernel that outlives the agent process
 * (stored in a file, see SimulatedKernelFile in libs/agent-runtime) survives a SIGKILLed agent
 * the way a real kernel does.
 */
export interface SimulatedKernelState {
  format: 1;
  release: string;
  version: string;
  arch: string;
  bootId: string;
  taint: number;
  transitionMs: number;
  featureOverrides: Partial<LivepatchFeatures>;
  /** Kernel stack order, oldest first. */
  patches: Array<{ moduleName: string; functions: events.PatchedFunction[]; replace: boolean; enabled: boolean }>;
  modules: Array<{ name: string; path: string; forced: boolean; hasPatch: boolean }>;
  transition?: { moduleName: string; target: boolean; dueAt: number; unswitched?: number[] };
  tasks: Array<{ pid: number; comm: string; sleepsIn: string; stack: string[] }>;
  nextPid: number;
}

/** What a restored kernel cannot take from its state: how it tells time, taints and boots. */
export type SimulatedKernelRuntime = Pick<SimulatedKernelOptions, 'clock' | 'moduleProvenance' | 'newBootId'>;

/**
 * The upstream livepatch rules (DESIGN.md section 5) in memory, for tests and fleet simulations.
 *
 * Transitions are evaluated lazily against the clock on every call, never by a timer: an idle
 * instance costs nothing, so thousands fit in one process, and with a `ManualClock` every test is
 * deterministic. A transition ends once `transitionMs` has passed and no sleeping task blocks it.
 *
 * Simplification: a task blocks a transition when it sleeps in any function that transition
 * touches (for an atomic replace, also every function of the older patches, which it reverts to
 * the original). The real kernel checks the exact code version on the task's stack.
 */
export class SimulatedKernel implements KernelPort {
  private featureSet: LivepatchFeatures;
  private readonly clock: KernelClock;
  private release: string;
  private version: string;
  private readonly machine: string;
  private readonly moduleProvenance: (moduleName: string) => { signed: boolean; inTree: boolean };
  private readonly newBootId: () => string;
  private transitionMs: number;
  private currentBootId: string;
  private taint: number;
  /** klp_patches: the kernel's stack, oldest first. */
  private patches: SimPatch[] = [];
  private readonly modules = new Map<string, SimModule>();
  private transition: Transition | undefined;
  private readonly tasks = new Map<number, SleepingTask>();
  private nextPid = 1000;
  private readonly injectedFailures = new Map<KernelOperation, KernelError>();
  private readonly featureOverrides: Partial<LivepatchFeatures>;

  constructor(options: SimulatedKernelOptions = {}) {
    this.release = options.release ?? '6.1.0-56-cloud-amd64';
    this.version = options.version ?? '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)';
    this.machine = options.arch ?? 'x86_64';
    this.featureOverrides = { ...options.features, ...(options.stacking ? { stacking: options.stacking } : {}) };
    this.featureSet = { ...livepatchFeatures(this.release), ...this.featureOverrides };
    this.transitionMs = options.transitionMs ?? 0;
    this.clock = options.clock ?? systemClock;
    this.moduleProvenance = options.moduleProvenance ?? (() => ({ signed: false, inTree: false }));
    this.newBootId = options.newBootId ?? randomUUID;
    this.currentBootId = options.bootId ?? this.newBootId();
    this.taint = options.initialTaint ?? 0;
  }

  /** What the livepatch interface of this kernel offers (derived from the release, then overrides). */
  get features(): LivepatchFeatures {
    return this.featureSet;
  }

  // ---- KernelPort ----

  async kernelRelease(): Promise<string> {
    return this.release;
  }

  async kernelVersion(): Promise<string> {
    return this.version;
  }

  async arch(): Promise<string> {
    return this.machine;
  }

  async bootId(): Promise<string> {
    return this.currentBootId;
  }

  async tainted(): Promise<number> {
    return this.taint;
  }

  async loadModule(request: LoadModuleRequest): Promise<void> {
    this.settle();
    this.throwInjected('loadModule', request.moduleName);
    const { moduleName } = request;
    const fail = (code: KernelErrorCode, why: string): never => {
      throw new KernelError(code, `could not insert module ${request.path}: ${why}`, 'loadModule', moduleName);
    };
    if (!this.featureSet.livepatch) fail('ENODEV', 'this kernel has no livepatch support');
    if (this.modules.has(moduleName)) fail('EEXIST', `a module named ${moduleName} is already loaded`);
    // load_module() taints before the module's init runs, so even a refused patch leaves its mark.
    this.taintForModule(moduleName);
    if (request.functions.length === 0) fail('EINVAL', 'the patch replaces no function');
    if (request.replace && !this.featureSet.atomicReplace) {
      fail('EINVAL', `atomic replace needs kernel 5.1 or newer (this is ${this.release})`);
    }
    if (this.transition) {
      fail('EBUSY', `patch ${this.transition.patch.moduleName} is still in transition`);
    }
    const top = this.patches[this.patches.length - 1];
    if (this.featureSet.disabledPatchPersists && top && !top.enabled) {
      // Before 5.1 a new patch could only be stacked on an enabled one.
      fail('EBUSY', `the topmost patch ${top.moduleName} is disabled`);
    }
    const patch: SimPatch = {
      moduleName,
      functions: sortFunctions(request.functions.map(asSysfsFunction)),
      replace: request.replace,
      enabled: true,
    };
    this.patches.push(patch);
    this.modules.set(moduleName, { name: moduleName, path: request.path, patch, forced: false });
    this.startTransition(patch, true);
  }

  async removeModule(moduleName: string): Promise<void> {
    this.settle();
    this.throwInjected('removeModule', moduleName);
    const module = this.modules.get(moduleName);
    const fail = (code: KernelErrorCode, why: string): never => {
      throw new KernelError(code, `could not remove module ${moduleName}: ${why}`, 'removeModule', moduleName);
    };
    if (!module) return fail('ENOENT', 'module is not currently loaded');
    if (module.forced) fail('EBUSY', 'module is in use (a forced transition holds it until reboot)');
    if (module.patch && (module.patch.enabled || this.transition?.patch === module.patch)) {
      fail('EBUSY', 'module is in use (its patch is enabled or in transition: disable it first)');
    }
    if (module.patch) {
      // Before 5.1 a disabled patch stays registered until its module goes away.
      this.patches = this.patches.filter((p) => p !== module.patch);
    }
    this.modules.delete(moduleName);
  }

  async moduleLoaded(moduleName: string): Promise<boolean> {
    this.settle();
    return this.modules.has(moduleName);
  }

  async listPatches(): Promise<events.LivePatchState[]> {
    this.settle();
    this.throwInjected('listPatches');
    return this.patches.map((patch, index) => {
      const state: events.LivePatchState = {
        moduleName: patch.moduleName,
        enabled: patch.enabled,
        transition: this.featureSet.transitionAttribute && this.transition?.patch === patch,
        functions: patch.functions.map((fn) => ({ ...fn })),
        objectsPatched: {},
      };
      if (this.featureSet.replaceAttribute) state.replace = patch.replace;
      if (this.featureSet.stackOrderAttribute) state.stackOrder = index + 1;
      if (this.featureSet.patchedAttribute) {
        // Objects stay patched until the disable transition completes (then the patch is gone).
        const patched = patch.enabled || this.transition?.patch === patch;
        for (const fn of patch.functions) state.objectsPatched[fn.object] = patched;
      }
      return state;
    });
  }

  async setEnabled(moduleName: string, enabled: boolean): Promise<void> {
    this.settle();
    this.throwInjected('setEnabled', moduleName);
    const fail = (code: KernelErrorCode, why: string): never => {
      throw new KernelError(
        code,
        `write ${enabled ? 1 : 0} to ${moduleName}/enabled: ${why}`,
        'setEnabled',
        moduleName,
      );
    };
    const patch = this.patchNamed(moduleName);
    if (!patch) return fail('ENOENT', 'no such patch in /sys/kernel/livepatch');
    if (patch.enabled === enabled) fail('EINVAL', `the patch is already ${enabled ? 'enabled' : 'disabled'}`);
    if (this.transition) {
      if (this.transition.patch === patch) {
        // Writing the opposite value during its own transition reverses it. The tasks that held
        // the transition up never left the state the reversal returns to, so they let it finish.
        const unswitched = new Set(this.blockers(this.transition).map((task) => task.pid));
        patch.enabled = enabled;
        this.startTransition(patch, enabled, unswitched);
        return;
      }
      fail('EBUSY', `patch ${this.transition.patch.moduleName} is in transition`);
    }
    const index = this.patches.indexOf(patch);
    if (!enabled) {
      const newer = this.patches.slice(index + 1).find((p) => p.enabled);
      if (this.featureSet.stacking === 'top-only' && newer) {
        fail('EBUSY', `only the topmost patch may be disabled on this kernel (${newer.moduleName} is above)`);
      }
      patch.enabled = false;
      this.startTransition(patch, false);
      return;
    }
    if (!this.featureSet.disabledPatchPersists) {
      return fail('EINVAL', 'a disabled patch cannot be enabled again: remove and load its module');
    }
    const older = this.patches[index - 1];
    if (older && !older.enabled) fail('EBUSY', `the patch below it (${older.moduleName}) is disabled`);
    patch.enabled = true;
    this.startTransition(patch, true);
  }

  async force(moduleName: string): Promise<void> {
    this.settle();
    this.throwInjected('force', moduleName);
    const fail = (code: KernelErrorCode, why: string): never => {
      throw new KernelError(code, `write 1 to ${moduleName}/force: ${why}`, 'force', moduleName);
    };
    const patch = this.patchNamed(moduleName);
    if (!patch) return fail('ENOENT', 'no such patch in /sys/kernel/livepatch');
    if (!this.featureSet.forceAttribute) fail('ENOENT', 'this kernel has no force attribute');
    if (this.transition?.patch !== patch) return fail('EINVAL', 'the patch is not in transition');
    // A forced module stays referenced forever: it can never be removed, only rebooted away.
    const transition = this.transition;
    const pinned =
      this.featureSet.forcePins === 'every-patch'
        ? this.patches
        : !transition.target
          ? [patch]
          : patch.replace
            ? this.patches.filter((p) => p !== patch)
            : [];
    for (const p of pinned) {
      const module = this.modules.get(p.moduleName);
      if (module) module.forced = true;
    }
    // The kernel finishes at its next retry (within a second); here at once.
    this.completeTransition();
  }

  async stalledTasks(): Promise<events.StalledTask[]> {
    this.settle();
    this.throwInjected('stalledTasks');
    if (!this.transition) return [];
    const patchState = this.transition.target ? KLP_UNPATCHED : KLP_PATCHED;
    return this.blockers(this.transition).map((task) => ({
      pid: task.pid,
      comm: task.comm,
      patchState,
      stack: [...task.stack],
    }));
  }

  // ---- Simulation controls (not part of the port) ----

  toState(): SimulatedKernelState {
    this.settle();
    return {
      format: 1,
      release: this.release,
      version: this.version,
      arch: this.machine,
      bootId: this.currentBootId,
      taint: this.taint,
      transitionMs: this.transitionMs,
      featureOverrides: { ...this.featureOverrides },
      patches: this.patches.map((p) => ({ ...p, functions: p.functions.map((fn) => ({ ...fn })) })),
      modules: [...this.modules.values()].map((m) => ({
        name: m.name,
        path: m.path,
        forced: m.forced,
        hasPatch: m.patch !== undefined,
      })),
      ...(this.transition
        ? {
            transition: {
              moduleName: this.transition.patch.moduleName,
              target: this.transition.target,
              dueAt: this.transition.dueAt,
              ...(this.transition.unswitched ? { unswitched: [...this.transition.unswitched] } : {}),
            },
          }
        : {}),
      tasks: [...this.tasks.values()].map((t) => ({ ...t, stack: [...t.stack] })),
      nextPid: this.nextPid,
    };
  }

  static fromState(state: SimulatedKernelState, runtime: SimulatedKernelRuntime = {}): SimulatedKernel {
    if (state.format !== 1) throw new Error(`SimulatedKernel: unknown state format ${String(state.format)}`);
    const kernel = new SimulatedKernel({
      ...runtime,
      release: state.release,
      version: state.version,
      arch: state.arch,
      bootId: state.bootId,
      initialTaint: state.taint,
      transitionMs: state.transitionMs,
      features: state.featureOverrides,
    });
    kernel.patches = state.patches.map((p) => ({ ...p, functions: p.functions.map((fn) => ({ ...fn })) }));
    for (const m of state.modules) {
      const patch = m.hasPatch ? kernel.patchNamed(m.name) : undefined;
      kernel.modules.set(m.name, { name: m.name, path: m.path, forced: m.forced, patch });
    }
    if (state.transition) {
      const patch = kernel.patchNamed(state.transition.moduleName);
      if (!patch)
        throw new Error(`SimulatedKernel: state has ${state.transition.moduleName} in transition but no such patch`);
      kernel.transition = {
        patch,
        target: state.transition.target,
        dueAt: state.transition.dueAt,
        ...(state.transition.unswitched ? { unswitched: new Set(state.transition.unswitched) } : {}),
      };
    }
    for (const t of state.tasks) kernel.tasks.set(t.pid, { ...t, stack: [...t.stack] });
    kernel.nextPid = state.nextPid;
    return kernel;
  }

  /** A task sleeping in a function: every transition touching that function waits for it. */
  addSleepingTask(spec: SleepingTaskSpec): number {
    // A transition already due must end before the task arrives, not be blocked by it afterwards.
    this.settle();
    const pid = spec.pid ?? this.nextFreePid();
    if (this.tasks.has(pid)) throw new Error(`SimulatedKernel: pid ${pid} already sleeps somewhere`);
    const fn = spec.sleepsIn;
    this.tasks.set(pid, {
      pid,
      comm: spec.comm,
      sleepsIn: functionKey(fn),
      stack: spec.stack ?? [`[<0>] ${fn.name}+0x1c/0x90${fn.object === 'vmlinux' ? '' : ` [${fn.object}]`}`],
    });
    return pid;
  }

  /** The task wakes up (or exits): it no longer blocks anything. */
  wakeTask(pid: number): void {
    if (!this.tasks.delete(pid)) throw new Error(`SimulatedKernel: no sleeping task with pid ${pid}`);
  }

  setTransitionMs(ms: number): void {
    if (!(ms >= 0)) throw new Error(`SimulatedKernel: transitionMs must be >= 0, got ${ms}`);
    this.settle();
    this.transitionMs = ms;
  }

  /** The next call of that operation fails with this error (disk full, bad vermagic...). */
  failNext(operation: KernelOperation, error: KernelError): void {
    this.injectedFailures.set(operation, error);
  }

  /** Every live patch is gone, taint is clean, a new boot id; optionally boots another kernel. */
  reboot(into: { release?: string; version?: string } = {}): void {
    if (into.release !== undefined) {
      this.release = into.release;
      this.featureSet = { ...livepatchFeatures(into.release), ...this.featureOverrides };
    }
    if (into.version !== undefined) this.version = into.version;
    this.patches = [];
    this.modules.clear();
    this.transition = undefined;
    this.tasks.clear();
    this.taint = 0;
    this.currentBootId = this.newBootId();
  }

  /**
   * Which module's version of a function runs once the current transition is settled the way it
   * started (a patch being enabled does not count yet, one being disabled still does), or
   * undefined for the original code. The most recently enabled patch wins.
   */
  runningVersion(fn: events.PatchedFunction): string | undefined {
    this.settle();
    const key = functionKey(fn);
    for (let i = this.patches.length - 1; i >= 0; i -= 1) {
      const patch = this.patches[i]!;
      const inTransition = this.transition?.patch === patch;
      const counts = inTransition ? !this.transition!.target : patch.enabled;
      if (counts && patch.functions.some((f) => functionKey(f) === key)) return patch.moduleName;
    }
    return undefined;
  }

  /** Module names currently loaded, for assertions and drift scenarios. */
  loadedModules(): string[] {
    this.settle();
    return [...this.modules.keys()];
  }

  // ---- Rules ----

  private startTransition(patch: SimPatch, target: boolean, unswitched?: ReadonlySet<number>): void {
    this.transition = {
      patch,
      target,
      dueAt: this.clock.now() + this.transitionMs,
      ...(unswitched ? { unswitched } : {}),
    };
    // Before 4.12 there was no consistency model: every task switched at once.
    if (!this.featureSet.transitionAttribute) this.completeTransition();
    this.settle();
  }

  /** Completes the running transition if its time has come and nothing blocks it. */
  private settle(): void {
    const transition = this.transition;
    if (!transition || this.clock.now() < transition.dueAt) return;
    if (this.blockers(transition).length > 0) return;
    this.completeTransition();
  }

  private completeTransition(): void {
    const transition = this.transition;
    if (!transition) return;
    this.transition = undefined;
    const { patch, target } = transition;
    if (target) {
      if (patch.replace) {
        // Atomic replace: every older patch is disabled and gone when the transition completes.
        for (const older of this.patches.filter((p) => p !== patch)) this.dropPatch(older);
      }
      return;
    }
    if (!this.featureSet.disabledPatchPersists) this.dropPatch(patch);
  }

  /** The patch leaves sysfs; its module stays loaded (and removable unless it was forced). */
  private dropPatch(patch: SimPatch): void {
    patch.enabled = false;
    this.patches = this.patches.filter((p) => p !== patch);
    const module = this.modules.get(patch.moduleName);
    if (module) module.patch = undefined;
  }

  private blockers(transition: Transition): SleepingTask[] {
    if (this.tasks.size === 0) return [];
    const touched = new Set(transition.patch.functions.map(functionKey));
    if (transition.patch.replace) {
      for (const p of this.patches) for (const fn of p.functions) touched.add(functionKey(fn));
    }
    return [...this.tasks.values()].filter(
      (task) => touched.has(task.sleepsIn) && !transition.unswitched?.has(task.pid),
    );
  }

  private patchNamed(moduleName: string): SimPatch | undefined {
    return this.patches.find((p) => p.moduleName === moduleName);
  }

  private taintForModule(moduleName: string): void {
    const { signed, inTree } = this.moduleProvenance(moduleName);
    this.taint |= TAINT_LIVEPATCH;
    if (!signed) this.taint |= TAINT_UNSIGNED_MODULE;
    if (!inTree) this.taint |= TAINT_OOT_MODULE;
  }

  private throwInjected(operation: KernelOperation, moduleName?: string): void {
    const error = this.injectedFailures.get(operation);
    if (!error) return;
    this.injectedFailures.delete(operation);
    if (moduleName !== undefined && error.moduleName === undefined) {
      throw new KernelError(error.code, error.message.replace(/^[A-Z]+: /, ''), operation, moduleName);
    }
    throw error;
  }

  private nextFreePid(): number {
    while (this.tasks.has(this.nextPid)) this.nextPid += 1;
    return this.nextPid++;
  }
}
