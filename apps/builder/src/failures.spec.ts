import { SmokeTestFailed } from '@rebootless/kernel-lab';
import { ToolchainError } from '@rebootless/kernel-toolchain';
import { BuildCancelledError, stageFailureOf } from './failures';
import { checkVermagic } from './kernel-build';

const running = new AbortController().signal;

describe('what a failed stage reports', () => {
  it('Given the compiler refused the source, Then INVALID_ARGUMENT with the compiler’s own lines', () => {
    const error = new ToolchainError('INVALID_ARGUMENT', 'compile', 'the module does not compile', [
      "lp_x__v1.c:5:51: error: 'no_such_function' undeclared here (not in a function)",
    ]);

    expect(stageFailureOf(error, 'compile', running)).toEqual({
      code: 'INVALID_ARGUMENT',
      stage: 'compile',
      diagnostics: ["lp_x__v1.c:5:51: error: 'no_such_function' undeclared here (not in a function)"],
      message: 'the module does not compile',
    });
  });

  it('Given the module oopsed the smoke guest, Then FAILED_PRECONDITION at smoke with the kernel’s lines', () => {
    const error = new SmokeTestFailed('exercise', 'the kernel reported trouble during exercise (tainted 32896)', [
      'BUG: kernel NULL pointer dereference, address: 0000000000000001',
      'RIP: 0010:version_proc_show+0x1c/0x40 [lp_x__v1]',
    ]);

    expect(stageFailureOf(error, 'smoke', running)).toEqual({
      code: 'FAILED_PRECONDITION',
      stage: 'smoke',
      diagnostics: [
        'smoke test (exercise) in a guest of the target kernel: the kernel reported trouble during exercise (tainted 32896)',
        'BUG: kernel NULL pointer dereference, address: 0000000000000001',
        'RIP: 0010:version_proc_show+0x1c/0x40 [lp_x__v1]',
      ],
      message:
        'smoke test (exercise) in a guest of the target kernel: the kernel reported trouble during exercise (tainted 32896)',
    });
  });

  it('Given a cancel while compiling, Then CANCELLED with the operator’s reason, whatever the compiler said', () => {
    const controller = new AbortController();
    controller.abort(new BuildCancelledError('wrong text'));

    expect(
      stageFailureOf(new ToolchainError('INTERNAL', 'compile', 'make killed'), 'compile', controller.signal),
    ).toMatchObject({
      code: 'CANCELLED',
      diagnostics: ['cancelled: wrong text (during compile)'],
    });
  });

  it('Given an unexpected error, Then INTERNAL naming the stage', () => {
    expect(stageFailureOf(new TypeError('x is undefined'), 'sign', running)).toMatchObject({
      code: 'INTERNAL',
      diagnostics: ['internal error in sign: x is undefined'],
    });
  });
});

describe('the vermagic check', () => {
  it('Given a module built for the release, Then it passes', () => {
    expect(() =>
      checkVermagic('6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ', '6.1.0-56-cloud-amd64'),
    ).not.toThrow();
  });

  it('Given a module whose vermagic names another release (even a longer one), Then it is refused', () => {
    expect(() => checkVermagic('6.1.0-56-cloud-amd64-rt SMP ', '6.1.0-56-cloud-amd64')).toThrow(
      'would not load on that kernel',
    );
    expect(() => checkVermagic('6.1.0-55-cloud-amd64 SMP ', '6.1.0-56-cloud-amd64')).toThrow(
      'does not start with 6.1.0-56-cloud-amd64',
    );
  });
});
