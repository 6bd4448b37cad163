import { KernelReleaseError, LedgerModelError } from './errors';
import { kernelRules } from './kernel-rules';

describe('kernel rules by release', () => {
  it.each([
    ['6.1.0-26-cloud-amd64', 6, 1, 0, 'any'],
    ['5.10.0-30-amd64', 5, 10, 0, 'any'],
    ['5.1', 5, 1, 0, 'any'],
    ['5.0.21', 5, 0, 21, 'top-only'],
    ['4.18.0-513.el8.x86_64', 4, 18, 0, 'top-only'],
    ['4.19.0-27-amd64', 4, 19, 0, 'top-only'],
    ['6.12.48+deb13-cloud-amd64', 6, 12, 48, 'any'],
  ])('%s: upstream %i.%i.%i, disable order %s', (release, major, minor, patch, disableOrder) => {
    expect(kernelRules(release)).toMatchObject({ release, major, minor, patch, disableOrder });
  });

  it('from 5.1: atomic replace, and a disabled patch disappears', () => {
    expect(kernelRules('6.1.0-26-cloud-amd64')).toMatchObject({ atomicReplace: true, disabledPatchPersists: false });
  });

  it('before 5.1: no atomic replace, a disabled patch stays listed', () => {
    expect(kernelRules('5.0.21')).toMatchObject({ atomicReplace: false, disabledPatchPersists: true });
  });

  it('force pins every patch before 5.18, only the removed ones since', () => {
    expect(kernelRules('5.17.0').forcePins).toBe('every-patch');
    expect(kernelRules('5.18.0').forcePins).toBe('removed-patches');
  });

  it('explains the rule in words naming the release', () => {
    expect(kernelRules('4.18.0-513.el8.x86_64').explanation).toMatch(/4\.18\.0-513\.el8\.x86_64 .*only the topmost/);
    expect(kernelRules('6.1.0-26-cloud-amd64').explanation).toMatch(/any order/);
  });

  it('takes a backport into account when told (RHEL 8 carries the 5.1 livepatch work)', () => {
    expect(kernelRules('4.18.0-513.el8.x86_64', { disableOrder: 'any', atomicReplace: true })).toMatchObject({
      disableOrder: 'any',
      atomicReplace: true,
    });
  });

  it.each(['', 'linux', '6', '6.x', '6.1foo', 'v6.1.0'])('refuses %j with an error naming the field', (release) => {
    let error: unknown;
    try {
      kernelRules(release);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KernelReleaseError);
    expect(error).toBeInstanceOf(LedgerModelError);
    expect(error).toMatchObject({ kind: 'invalid-argument', field: 'kernel_release' });
    expect((error as Error).message).toContain(`kernel_release: expected a kernel release`);
    expect((error as Error).message).toContain(JSON.stringify(release));
  });

  it('names another field when asked', () => {
    expect(() => kernelRules('nope', {}, 'facts.kernel_release')).toThrow(/^facts\.kernel_release: /);
  });
});
