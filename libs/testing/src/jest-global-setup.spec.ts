import { skipReason } from './jest-global-setup';

describe('which runs start a Kafka broker', () => {
  const config = { rootDir: '/repo' };
  it('the kernel tier needs one (its agent in QEMU is driven by the real services)', () => {
    expect(skipReason(config, {}, ['jest', '--selectProjects', 'kernel'])).toBeNull();
    expect(skipReason(config, {}, ['jest', '--selectProjects=kernel'])).toBeNull();
  });

  it('the unit tier alone does not', () => {
    expect(skipReason(config, {}, ['jest', '--selectProjects', 'unit'])).toBe('no int, e2e or kernel project selected');
    expect(skipReason(config, {}, ['jest', '--ignoreProjects', 'int', 'e2e', 'kernel'])).not.toBeNull();
  });

  it('a plain run and REBOOTLESS_NO_KAFKA=1 behave as before', () => {
    expect(skipReason(config, {}, ['jest'])).toBeNull();
    expect(skipReason(config, { REBOOTLESS_NO_KAFKA: '1' }, ['jest'])).toBe('REBOOTLESS_NO_KAFKA=1');
  });
});
