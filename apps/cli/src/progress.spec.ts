import { builder, dispatcher } from '@rebootless/contracts';
import { LiveFrame, applyStageChange, bar, buildFrame, rolloutFrame } from './progress';

const { BUILD_STATE_RUNNING, BUILD_STATE_SUCCEEDED, BUILD_STATE_FAILED } = builder.BuildState;
const H = dispatcher.HostRolloutState;

describe('progress', () => {
  it('draws bars', () => {
    expect(bar(0, 4, 8)).toBe('[........]');
    expect(bar(2, 4, 8)).toBe('[####....]');
    expect(bar(4, 4, 8)).toBe('[########]');
    expect(bar(0, 0, 4)).toBe('[....]');
  });

  it('shows each kernel release’s stage as the build moves, releases in first-seen order', () => {
    let kernels = applyStageChange([], {
      kernelRelease: 'r1',
      stage: 'compile',
      state: BUILD_STATE_RUNNING,
      diagnostics: [],
    });
    kernels = applyStageChange(kernels, {
      kernelRelease: 'r2',
      stage: 'fetch-headers',
      state: BUILD_STATE_RUNNING,
      diagnostics: [],
    });
    kernels = applyStageChange(kernels, {
      kernelRelease: 'r1',
      stage: 'store',
      state: BUILD_STATE_SUCCEEDED,
      diagnostics: [],
    });
    expect(buildFrame('b1', kernels)).toEqual([
      'build b1',
      '  r1  [########################] 7/7  store succeeded',
      '  r2  [#######.................] 2/7  fetch-headers running',
    ]);
    kernels = applyStageChange(kernels, {
      kernelRelease: 'r2',
      stage: 'compile',
      state: BUILD_STATE_FAILED,
      diagnostics: [],
    });
    expect(buildFrame('b1', kernels)[2]).toBe('  r2  [##########..............] 3/7  compile failed');
  });

  it('counts hosts done per wave, failures included', () => {
    const rollout = {
      rolloutId: 'r-1',
      patchId: 'p',
      version: '1',
      state: dispatcher.RolloutState.ROLLOUT_STATE_RUNNING,
      stateReason: '',
      waves: [
        {
          index: 0,
          name: 'canary',
          state: dispatcher.WaveState.WAVE_STATE_COMPLETED,
          hosts: [],
          hostCounts: [
            { state: H.HOST_ROLLOUT_STATE_SUCCEEDED, hosts: 1 },
            { state: H.HOST_ROLLOUT_STATE_SKIPPED, hosts: 1 },
          ],
        },
        {
          index: 1,
          name: 'wave 1',
          state: dispatcher.WaveState.WAVE_STATE_RUNNING,
          // As the summary view gives it: counts, no hosts.
          hosts: [],
          hostCounts: [
            { state: H.HOST_ROLLOUT_STATE_PENDING, hosts: 1 },
            { state: H.HOST_ROLLOUT_STATE_IN_PROGRESS, hosts: 1 },
            { state: H.HOST_ROLLOUT_STATE_SUCCEEDED, hosts: 1 },
            { state: H.HOST_ROLLOUT_STATE_TIMED_OUT, hosts: 1 },
          ],
        },
      ],
    } as unknown as dispatcher.Rollout;
    expect(rolloutFrame(rollout)).toEqual([
      'rollout r-1  p 1  running',
      '  canary  [########################] 2/2 hosts  completed',
      '  wave 1  [############............] 2/4 hosts, 1 failed  running',
    ]);
  });

  it('redraws in place: moves up over the previous frame and clears it', () => {
    let written = '';
    const frame = new LiveFrame({ write: (t: string) => (written += t), columns: 80 });
    frame.draw(['a', 'b']);
    frame.draw(['c']);
    expect(written).toBe('a\nb\n\x1b[2A\r\x1b[0Jc\n');
  });
});
