import { classifyKlpFailure } from './klp-build';
import { missingOptions } from './kernel-profile';

describe("klp-build's refusals, classified", () => {
  it.each([
    ['changed-data', ['Building patch module', 'vmlinux.o: error: objtool: changed data: panic_timeout']],
    ['unsupported-file', ['error: klp-build: /tmp/x.patch: unsupported patch to lib/string.c']],
    ['no-changes', ['Diffing objects', 'error: klp-build: no changes detected']],
    ['patch-does-not-apply', ['error: klp-build: /tmp/x.patch did not apply']],
    ['static-branch', ['foo()+0x12: unsupported static branch key bar.  Use static_key_enabled() instead']],
    ['compile-error', ['fs/proc/cmdline.c:9:2: error: expected ‘;’ before ‘}’ token']],
  ] as const)('%s, with the line that says it', (kind, lines) => {
    const found = classifyKlpFailure(lines);
    expect(found.kind).toBe(kind);
    expect(lines).toContain(found.evidence);
  });

  it('an output it does not know is "other", with its last line', () => {
    expect(classifyKlpFailure(['something odd', '', 'the end'])).toEqual({
      kind: 'other',
      reason: 'klp-build failed',
      evidence: 'the end',
    });
  });
});

describe('a profile fragment against the config olddefconfig made', () => {
  it('names each =y or =m option that did not survive, and ignores =n and strings', () => {
    const fragment = 'CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\nCONFIG_D="x"\n# comment\nCONFIG_E=y\n';
    const config = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_E=y\n';
    expect(missingOptions(fragment, config)).toEqual(['CONFIG_B=m']);
  });
});
