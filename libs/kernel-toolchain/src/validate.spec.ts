import {
  assertKernelRelease,
  assertModuleName,
  assertSafeDir,
  compareReleases,
  isValidKernelRelease,
  releaseMajorMinor,
} from './validate';
import { ToolchainError } from './errors';

function caught(fn: () => unknown): ToolchainError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ToolchainError) return error;
    throw error;
  }
  throw new Error('expected a ToolchainError');
}

describe('kernel release validation', () => {
  it.each([
    '6.1.0-56-cloud-amd64',
    '6.1.0-56-amd64',
    '6.1.0-56-rt-amd64',
    '6.12.117+deb12-cloud-amd64',
    '6.12.12+bpo-cloud-amd64',
    '6.1.0-56-cloud-arm64',
    '9.9.9-1-cloud-amd64',
  ])('accepts the Debian release %s', (release) => {
    expect(isValidKernelRelease(release)).toBe(true);
    expect(() => assertKernelRelease(release)).not.toThrow();
  });

  it.each([
    '6.1.0;rm -rf /',
    '6.1.0-56-cloud-amd64 ',
    ' 6.1.0-56-cloud-amd64',
    '6.1.0-56-cloud-amd64\n',
    '../../etc-amd64',
    '6.1.0-56-cloud-amd64/../../x',
    '6.1.0-56-Cloud-amd64',
    '6.1.0-56',
    '6.1-cloud-amd64',
    '-6.1.0-56-cloud-amd64',
    '6.1.0-56-cloud-amd64$(id)',
    '6.1.0-56-cloud_amd64',
    '',
    `6.1.0-56-${'a'.repeat(70)}`,
  ])('rejects %j before anything runs', (release) => {
    const error = caught(() => assertKernelRelease(release));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.stage).toBe('fetch-headers');
    expect(error.message).toContain('invalid kernel release');
  });

  it('rejects what is not a string', () => {
    expect(caught(() => assertKernelRelease(42 as unknown as string)).code).toBe('INVALID_ARGUMENT');
    expect(caught(() => assertKernelRelease(undefined as unknown as string)).message).toContain('undefined');
  });

  it('names major.minor', () => {
    expect(releaseMajorMinor('6.1.0-56-cloud-amd64')).toBe('6.1');
    expect(releaseMajorMinor('6.12.117+deb12-cloud-amd64')).toBe('6.12');
  });

  it('orders releases numerically, not as text', () => {
    const sorted = [
      '6.12.117+deb12-cloud-amd64',
      '6.1.0-56-cloud-amd64',
      '6.1.0-9-cloud-amd64',
      '6.12.9+deb12-cloud-amd64',
      '6.1.0-47-cloud-amd64',
    ].sort(compareReleases);
    expect(sorted).toEqual([
      '6.1.0-9-cloud-amd64',
      '6.1.0-47-cloud-amd64',
      '6.1.0-56-cloud-amd64',
      '6.12.9+deb12-cloud-amd64',
      '6.12.117+deb12-cloud-amd64',
    ]);
  });
});

describe('module name validation', () => {
  it.each(['rbl_cmdline', 'a', 'livepatch_6_1_0', 'x'.repeat(55)])('accepts %s', (name) => {
    expect(() => assertModuleName(name)).not.toThrow();
  });

  it.each(['', 'Upper', 'with-dash', 'dot.ko', 'x'.repeat(56), 'a b', 'a;b', '../x', 'obj-m'])('rejects %j', (name) => {
    const error = caught(() => assertModuleName(name));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.stage).toBe('compile');
  });
});

describe('directories handed to make', () => {
  it.each([
    '/tmp/klp-AbC123',
    '/root/.cache/rebootless/kernels/releases/6.12.117+deb12-cloud-amd64/usr/src/x',
    '/a_b/c-d/e@f',
  ])('accepts %s', (dir) => {
    expect(() => assertSafeDir(dir, 'dir', 'compile')).not.toThrow();
  });

  it.each([
    'relative/dir',
    '/tmp/with space',
    '/tmp/$(id)',
    '/tmp/a:b',
    '/tmp/a#b',
    '/tmp/../etc',
    '/tmp/./x',
    '/tmp//x',
    '/tmp/x/',
    '/',
    '/tmp/a\nb',
  ])('rejects %j', (dir) => {
    expect(caught(() => assertSafeDir(dir, 'the work directory', 'compile')).code).toBe('INVALID_ARGUMENT');
  });
});
