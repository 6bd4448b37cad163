// Progress for people: bars for a build's stages per kernel release and a rollout's waves.
// The frames are pure strings; LiveFrame redraws them in place on a terminal.
import { builder, dispatcher } from '@rebootless/contracts';
import { enumLabel } from './flags';

export function bar(done: number, total: number, width = 24): string {
  const filled = total <= 0 ? 0 : Math.min(width, Math.round((done / total) * width));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** The stages the builder reports, in order (apps/builder). */
export const BUILD_STAGES = ['queued', 'analyse', 'fetch-headers', 'compile', 'smoke', 'sign', 'store'] as const;

export interface KernelProgress {
  readonly release: string;
  readonly stage: string;
  readonly state: builder.BuildState;
}

/** Folds a stage change into the per-release view, keeping the releases in first-seen order. */
export function applyStageChange(
  kernels: readonly KernelProgress[],
  change: builder.BuildStageChanged,
): KernelProgress[] {
  const next = { release: change.kernelRelease, stage: change.stage, state: change.state };
  const index = kernels.findIndex((k) => k.release === change.kernelRelease);
  return index < 0 ? [...kernels, next] : kernels.map((k, i) => (i === index ? next : k));
}

export function kernelsOf(build: builder.Build): KernelProgress[] {
  return build.kernels.map((k) => ({ release: k.kernelRelease, stage: k.stage, state: k.state }));
}

/** "compile running", "store succeeded", and "queued" rather than "queued queued". */
export function stageText(stage: string, state: builder.BuildState): string {
  const label = enumLabel(builder.BuildState, state, 'BUILD_STATE_');
  return stage === label || !stage ? label : `${stage} ${label}`;
}

function stageStep(kernel: KernelProgress): number {
  if (kernel.state === builder.BuildState.BUILD_STATE_SUCCEEDED) return BUILD_STAGES.length;
  const index = BUILD_STAGES.indexOf(kernel.stage as (typeof BUILD_STAGES)[number]);
  return Math.max(0, index);
}

export function buildFrame(buildId: string, kernels: readonly KernelProgress[]): string[] {
  const width = Math.max(0, ...kernels.map((k) => k.release.length));
  return [
    `build ${buildId}`,
    ...kernels.map((k) => {
      const step = stageStep(k);
      return `  ${k.release.padEnd(width)}  ${bar(step, BUILD_STAGES.length)} ${step}/${BUILD_STAGES.length}  ${stageText(k.stage, k.state)}`;
    }),
  ];
}

const HOST_DONE = new Set([
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_SUCCEEDED,
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_FAILED,
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_SKIPPED,
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_TIMED_OUT,
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_REVERTED,
]);

export interface WaveCounts {
  readonly done: number;
  readonly total: number;
  readonly failed: number;
}

const HOST_FAILED = new Set([
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_FAILED,
  dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_TIMED_OUT,
]);

/** From the wave's counts by state, which every view carries (the summary has no host list). */
export function waveCounts(wave: dispatcher.Wave): WaveCounts {
  const hostsIn = (states?: ReadonlySet<dispatcher.HostRolloutState>) =>
    (wave.hostCounts ?? []).reduce((n, c) => (!states || states.has(c.state) ? n + c.hosts : n), 0);
  return { done: hostsIn(HOST_DONE), total: hostsIn(), failed: hostsIn(HOST_FAILED) };
}

export function rolloutFrame(rollout: dispatcher.Rollout): string[] {
  const state = enumLabel(dispatcher.RolloutState, rollout.state, 'ROLLOUT_STATE_');
  const width = Math.max(0, ...rollout.waves.map((w) => w.name.length));
  return [
    `rollout ${rollout.rolloutId}  ${rollout.patchId} ${rollout.version}  ${state}${rollout.stateReason ? `: ${rollout.stateReason}` : ''}`,
    ...rollout.waves.map((wave) => {
      const c = waveCounts(wave);
      const waveState = enumLabel(dispatcher.WaveState, wave.state, 'WAVE_STATE_');
      return `  ${wave.name.padEnd(width)}  ${bar(c.done, c.total)} ${c.done}/${c.total} hosts${c.failed ? `, ${c.failed} failed` : ''}  ${waveState}`;
    }),
  ];
}

/** Redraws a block of lines in place on a terminal (stderr), or prints nothing when disabled. */
export class LiveFrame {
  private drawn = 0;

  constructor(private readonly out: { write(text: string): unknown; columns?: number }) {}

  draw(lines: readonly string[]): void {
    // A pty without a size reports 0 columns: draw as if wide rather than cut every line.
    const width = this.out.columns && this.out.columns >= 40 ? this.out.columns : 160;
    const fitted = lines.map((l) => (l.length > width - 1 ? `${l.slice(0, width - 2)}…` : l));
    const up = this.drawn > 0 ? `\x1b[${this.drawn}A\r\x1b[0J` : '';
    this.out.write(up + fitted.join('\n') + '\n');
    this.drawn = fitted.length;
  }

  /** Prints a line above the frame (a log line), then the frame again below it. */
  note(line: string, lines: readonly string[]): void {
    const up = this.drawn > 0 ? `\x1b[${this.drawn}A\r\x1b[0J` : '';
    this.out.write(`${up}${line}\n`);
    this.drawn = 0;
    this.draw(lines);
  }
}
