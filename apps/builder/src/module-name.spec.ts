import { MODULE_NAME_PATTERN } from '@rebootless/kernel-toolchain';
import { moduleNameFor } from './module-name';

describe('the module name of a patch version', () => {
  it('Given a patch name and version, Then the module is named after both', () => {
    expect(moduleNameFor('cve-2024-1086-nf-tables', '1.0.2')).toBe('lp_cve_2024_1086_nf_tables__v1_0_2');
  });

  it('Given names that would read the same with single separators, Then their modules differ', () => {
    expect(moduleNameFor('a-1', '2')).not.toBe(moduleNameFor('a', '1.2'));
  });

  it('Given a long patch name, Then the module name fits the kernel limit and stays distinct per version', () => {
    const long = 'cve-2024-1086-nf-tables-verdict-init-and-more-words';
    const one = moduleNameFor(long, '1.0.0');
    const two = moduleNameFor(long, '1.0.1');

    expect(one.length).toBeLessThanOrEqual(55);
    expect(one).toMatch(MODULE_NAME_PATTERN);
    expect(one).not.toBe(two);
  });
});
