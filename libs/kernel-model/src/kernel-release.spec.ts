import { compareKernelVersions, livepatchFeatures, parseKernelRelease } from './kernel-release';

describe('kernel release parsing', () => {
  it.each([
    ['6.1.0-56-cloud-amd64', 6, 1, 0, '-56-cloud-amd64'],
    ['5.14.0-427.el9.x86_64', 5, 14, 0, '-427.el9.x86_64'],
    ['6.12.48+deb13-cloud-amd64', 6, 12, 48, '+deb13-cloud-amd64'],
    ['4.19', 4, 19, 0, ''],
    ['6.8.0-1015-aws', 6, 8, 0, '-1015-aws'],
  ])('%s', (release, major, minor, patch, suffix) => {
    expect(parseKernelRelease(release)).toEqual({ release, major, minor, patch, suffix });
  });

  it('refuses what is not a release, saying what it expected', () => {
    expect(() => parseKernelRelease('linux')).toThrow(/expected "<major>\.<minor>/);
    expect(() => parseKernelRelease('')).toThrow(/kernel release/);
  });

  it('compares upstream versions, ignoring the distro suffix', () => {
    const v = parseKernelRelease;
    expect(compareKernelVersions(v('5.10.0-30-amd64'), v('5.4.0'))).toBeGreaterThan(0);
    expect(compareKernelVersions(v('6.1.0-56-cloud-amd64'), v('6.1.0-13-amd64'))).toBe(0);
    expect(compareKernelVersions(v('4.19.300'), v('5.0'))).toBeLessThan(0);
  });
});

describe('livepatch features per release', () => {
  it('before 5.1: top-only stacking, no atomic replace, disabled patches persist', () => {
    expect(livepatchFeatures('5.0.21')).toMatchObject({
      livepatch: true,
      transitionAttribute: true,
      forceAttribute: true,
      stacking: 'top-only',
      atomicReplace: false,
      disabledPatchPersists: true,
      patchedAttribute: false,
    });
  });

  it('5.1: any-order disable and atomic replace', () => {
    expect(livepatchFeatures('5.1.0')).toMatchObject({
      stacking: 'any-order',
      atomicReplace: true,
      disabledPatchPersists: false,
    });
  });

  it('6.0 adds <object>/patched, 6.11 the replace attribute, 6.13 stack_order', () => {
    const attrs = (release: string) => {
      const f = livepatchFeatures(release);
      return [f.patchedAttribute, f.replaceAttribute, f.stackOrderAttribute];
    };
    expect(attrs('5.19.17')).toEqual([false, false, false]);
    expect(attrs('6.0.0')).toEqual([true, false, false]);
    expect(attrs('6.1.0-56-cloud-amd64')).toEqual([true, false, false]);
    expect(attrs('6.11.0')).toEqual([true, true, false]);
    expect(attrs('6.13.0')).toEqual([true, true, true]);
    expect(attrs('7.0.0')).toEqual([true, true, true]);
  });

  it('a forced transition pins every patch before 5.18, only the patches being removed since', () => {
    expect(livepatchFeatures('5.17.15').forcePins).toBe('every-patch');
    expect(livepatchFeatures('5.18.0').forcePins).toBe('removed-patches');
  });

  it('the consistency model (transition) from 4.12, force from 4.15, livepatch itself from 4.0', () => {
    expect(livepatchFeatures('3.19.0').livepatch).toBe(false);
    expect(livepatchFeatures('4.11.0')).toMatchObject({ livepatch: true, transitionAttribute: false });
    expect(livepatchFeatures('4.14.0')).toMatchObject({ transitionAttribute: true, forceAttribute: false });
    expect(livepatchFeatures('4.15.0').forceAttribute).toBe(true);
  });
});
