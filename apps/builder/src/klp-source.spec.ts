import { livepatchSample } from '@rebootless/kernel-toolchain';
import { patchedFunctionsOf, replaceFlagOf } from './klp-source';

describe('reading what a livepatch source replaces', () => {
  it('Given the cmdline_proc_show sample, When read, Then it replaces vmlinux:cmdline_proc_show and does not replace older patches', () => {
    const source = livepatchSample({ moduleName: 'lp_demo__v1', replacementText: 'patched' });

    expect(patchedFunctionsOf(source)).toEqual([{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }]);
    expect(replaceFlagOf(source)).toBe(false);
  });

  it('Given functions in vmlinux and in a module, with a sympos, When read, Then each is named under its object', () => {
    const source = `
      static struct klp_func core_funcs[] = {
        { .old_name = "cmdline_proc_show", .new_func = a, },
        { .old_name = "meminfo_proc_show", .new_func = b, .old_sympos = 2 },
        { }
      };
      static struct klp_func ext4_funcs[] = {
        { .old_name = "ext4_fill_super", .new_func = c },
        {}
      };
      static struct klp_object objs[] = {
        { /* vmlinux */ .funcs = core_funcs, },
        { .name = "ext4", .funcs = ext4_funcs, },
        { }
      };
      static struct klp_patch patch = { .mod = THIS_MODULE, .objs = objs, .replace = true };`;

    expect(patchedFunctionsOf(source)).toEqual([
      { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 },
      { object: 'vmlinux', name: 'meminfo_proc_show', sympos: 2 },
      { object: 'ext4', name: 'ext4_fill_super', sympos: 0 },
    ]);
    expect(replaceFlagOf(source)).toBe(true);
  });

  it('Given an .old_name only inside a comment, When read, Then nothing is replaced', () => {
    const source = `/* static struct klp_func f[] = { { .old_name = "do_exit" } }; */\n// .old_name = "do_fork"\nint x;`;

    expect(patchedFunctionsOf(source)).toEqual([]);
  });

  it('Given a replace flag set by a macro, When read, Then the flag is unknown rather than guessed', () => {
    expect(replaceFlagOf('static struct klp_patch p = { .replace = REPLACE_ALL };')).toBeUndefined();
    expect(replaceFlagOf('int main(void) { return 0; }')).toBe(false);
  });
});
