import { analyseDiff } from './index';

/** A git diff of one hunk in `path`; the counts in the @@ line are worked out as git would. */
function oneHunkDiff(path: string, header: string, ...body: string[]): string {
  const oldLines = body.filter((l) => !l.startsWith('+')).length;
  const newLines = body.filter((l) => !l.startsWith('-')).length;
  return [
    `diff --git a/${path} b/${path}`,
    `--- a/${path}`,
    `+++ b/${path}`,
    `@@ -10,${oldLines} +10,${newLines} @@${header ? ` ${header}` : ''}`,
    ...body,
    '',
  ].join('\n');
}

/** The findings as [severity, rule, headline], the headline being the explanation's first sentence. */
function reviewOf(diff: string) {
  const report = analyseDiff(diff);
  return {
    verdict: report.verdict,
    functions: report.functions.map((f) => `${f.name}:${f.change}`),
    findings: report.findings.map((f) => [f.severity, f.rule, f.explanation.slice(0, f.explanation.indexOf('. ') + 1)]),
  };
}

describe('kernel constructs a reviewer looks for', () => {
  describe('given global data', () => {
    it('refuses __initdata, which is gone after boot', () => {
      const diff = oneHunkDiff(
        'drivers/foo.c',
        '',
        ' ',
        '-static int foo_debug __initdata = 0;',
        '+static int foo_debug __initdata = 1;',
        ' ',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'init-exit', 'drivers/foo.c changes foo_debug, which is marked __initdata.'],
      ]);
    });

    it('refuses a per-CPU variable whose type changes', () => {
      const diff = oneHunkDiff(
        'kernel/foo.c',
        '',
        '-static DEFINE_PER_CPU(unsigned int, foo_count);',
        '+static DEFINE_PER_CPU(unsigned long, foo_count);',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'global-data', 'kernel/foo.c changes the definition of the global foo_count.'],
      ]);
    });

    it('refuses a new entry in an ops table, named by the @@ header', () => {
      const diff = oneHunkDiff(
        'fs/foo.c',
        'static const struct proc_ops foo_proc_ops = {',
        ' \t.proc_open\t= foo_open,',
        '+\t.proc_lseek\t= seq_lseek,',
        ' \t.proc_release\t= single_release,',
        ' };',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'global-data', 'fs/foo.c changes the initial value of the global foo_proc_ops.'],
      ]);
    });

    it('only warns about a brand-new global', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        '',
        ' static LIST_HEAD(foo_list);',
        '+static unsigned long foo_generation;',
        ' ',
      );
      expect(reviewOf(diff)).toMatchObject({
        verdict: 'warnings',
        findings: [['warn', 'global-data', 'net/foo.c adds a new global, foo_generation.']],
      });
    });
  });

  describe('given types', () => {
    it('refuses a member retyped inside a nested union', () => {
      const diff = oneHunkDiff(
        'include/linux/foo.h',
        'struct foo {',
        ' \tunion {',
        ' \t\tu32 a;',
        '-\t\tu16 b;',
        '+\t\tu32 b;',
        ' \t};',
        ' };',
      );
      expect(reviewOf(diff).findings).toEqual([
        [
          'refuse',
          'struct-layout',
          'include/linux/foo.h changes the layout of struct foo (member b changes type or size).',
        ],
      ]);
    });

    it('refuses __packed added to a struct', () => {
      const diff = oneHunkDiff(
        'include/linux/foo.h',
        'struct foo_hdr {',
        ' \tu8 type;',
        ' \tu16 len;',
        '-};',
        '+} __packed;',
      );
      expect(reviewOf(diff).findings[0]).toEqual([
        'refuse',
        'struct-layout',
        'include/linux/foo.h changes the layout of struct foo_hdr (its packing or alignment attributes change).',
      ]);
    });

    it('names an anonymous struct by its typedef', () => {
      const diff = oneHunkDiff(
        'include/linux/foo.h',
        'typedef struct {',
        ' \tu32 seq;',
        '+\tu32 flags;',
        ' } foo_state_t;',
      );
      expect(reviewOf(diff).findings).toEqual([
        [
          'refuse',
          'struct-layout',
          'include/linux/foo.h changes the layout of struct foo_state_t (member flags is added).',
        ],
      ]);
    });

    it('refuses a changed typedef', () => {
      const diff = oneHunkDiff(
        'include/linux/foo.h',
        '',
        ' ',
        '-typedef u32 foo_cookie_t;',
        '+typedef u64 foo_cookie_t;',
        ' ',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'struct-layout', 'include/linux/foo.h changes the type foo_cookie_t.'],
      ]);
    });

    it('warns about a new enum value', () => {
      const diff = oneHunkDiff(
        'include/uapi/linux/foo.h',
        'enum foo_state {',
        ' \tFOO_IDLE,',
        ' \tFOO_BUSY,',
        '+\tFOO_DRAINING,',
        ' };',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['warn', 'enum-values', 'include/uapi/linux/foo.h changes enum foo_state (FOO_DRAINING is added or moved).'],
      ]);
    });
  });

  describe('given functions', () => {
    it('refuses a new parameter on a function other files call', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        '',
        ' ',
        '-int foo_send(struct sock *sk)',
        '+int foo_send(struct sock *sk, int flags)',
        ' {',
        ' \treturn 0;',
      );
      expect(reviewOf(diff)).toEqual({
        verdict: 'refused',
        functions: ['foo_send:modified'],
        findings: [['refuse', 'function-signature', 'net/foo.c changes the signature of foo_send().']],
      });
    });

    it('lists a new helper as added, and has nothing against it', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        '',
        ' }',
        ' ',
        '+static bool foo_valid(const struct foo *f)',
        '+{',
        '+\treturn f && f->len;',
        '+}',
        '+',
        ' static int foo_send(struct sock *sk)',
      );
      expect(reviewOf(diff)).toEqual({ verdict: 'ok', functions: ['foo_valid:added'], findings: [] });
    });

    it('finds __init on the line above a two-line definition', () => {
      const diff = oneHunkDiff(
        'drivers/foo.c',
        '',
        ' ',
        ' static int __init',
        ' foo_init(void)',
        ' {',
        '-\treturn 0;',
        '+\treturn foo_register();',
        ' }',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'init-exit', 'drivers/foo.c changes foo_init(), which is marked __init.'],
      ]);
    });

    it('refuses an __exit function', () => {
      const diff = oneHunkDiff(
        'drivers/foo.c',
        'static void __exit foo_exit(void)',
        ' {',
        '+\tfoo_flush();',
        ' \tfoo_unregister();',
        ' }',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'init-exit', 'drivers/foo.c changes foo_exit(), which is marked __exit.'],
      ]);
    });

    it('warns that an inline function in a .c file changes its callers too', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static inline bool foo_ready(const struct foo *f)',
        ' {',
        '-\treturn f->ready;',
        '+\treturn READ_ONCE(f->ready);',
        ' }',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['warn', 'inline-function', 'net/foo.c changes foo_ready(), which is inline.'],
      ]);
    });

    it('counts #ifdef lines inside a body as a change to that function', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static int foo_send(struct sock *sk)',
        ' {',
        '+#ifdef CONFIG_FOO_DEBUG',
        ' \tfoo_dump(sk);',
        '+#endif',
        ' \treturn 0;',
      );
      expect(reviewOf(diff)).toEqual({ verdict: 'ok', functions: ['foo_send:modified'], findings: [] });
    });

    it('is not fooled by a hunk that starts inside a comment', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static int foo_send(struct sock *sk)',
        ' \t * is already held here.',
        ' \t */',
        '-\tfoo_lock(sk);',
        '+\tfoo_lock_nested(sk);',
        ' \treturn 0;',
      );
      expect(reviewOf(diff)).toEqual({ verdict: 'ok', functions: ['foo_send:modified'], findings: [] });
    });

    it('sees through a change of spacing only: nothing to patch', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static int foo_send(struct sock *sk)',
        ' {',
        '-\tif(sk->x)  return 1;',
        '+\tif (sk->x) return 1;',
        ' \treturn 0;',
      );
      expect(reviewOf(diff)).toMatchObject({
        verdict: 'refused',
        functions: [],
        findings: [['refuse', 'nothing-to-patch', expect.any(String)]],
      });
    });
  });

  describe('given static locals', () => {
    it('refuses a ratelimit state added to a function', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static void foo_report(struct foo *f)',
        ' {',
        '+\tstatic DEFINE_RATELIMIT_STATE(rs, HZ, 5);',
        '+',
        ' \tif (!f)',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'static-local', 'net/foo.c adds the static variable rs inside foo_report().'],
      ]);
    });

    it('refuses a static local whose type changes', () => {
      const diff = oneHunkDiff(
        'net/foo.c',
        'static void foo_report(struct foo *f)',
        ' {',
        '-\tstatic int calls;',
        '+\tstatic long calls;',
        ' \tif (!f)',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['refuse', 'static-local', 'net/foo.c changes the static variable calls inside foo_report().'],
      ]);
    });
  });

  describe('given file-scope registrations', () => {
    it('warns once about an export that becomes GPL-only', () => {
      const diff = oneHunkDiff(
        'kernel/foo.c',
        '',
        ' }',
        '-EXPORT_SYMBOL(foo_bar);',
        '+EXPORT_SYMBOL_GPL(foo_bar);',
        ' ',
      );
      expect(reviewOf(diff).findings).toEqual([
        ['warn', 'symbol-export', 'kernel/foo.c changes EXPORT_SYMBOL(foo_bar) to EXPORT_SYMBOL_GPL(foo_bar).'],
      ]);
    });

    it('warns that a macro in a .c file changes functions the diff does not show', () => {
      const diff = oneHunkDiff(
        'mm/foo.c',
        '',
        ' #include <linux/mm.h>',
        ' ',
        '-#define FOO_BATCH\t32',
        '+#define FOO_BATCH\t64',
        ' ',
      );
      expect(reviewOf(diff).findings).toEqual([['warn', 'macro', 'mm/foo.c changes the macro FOO_BATCH.']]);
    });

    it('warns that a changed prototype in a header ripples into its callers', () => {
      const diff = oneHunkDiff(
        'include/linux/foo.h',
        '',
        ' ',
        '-int foo_send(struct sock *sk);',
        '+int foo_send(struct sock *sk, int flags);',
        ' ',
      );
      expect(reviewOf(diff).findings).toEqual([
        [
          'warn',
          'header-ripple',
          'include/linux/foo.h is a header, and the diff changes the declaration of foo_send() in it.',
        ],
      ]);
    });
  });

  describe('given files a live patch cannot carry', () => {
    it.each([
      ['net/Makefile', ' obj-y += core/', 'net/Makefile is part of the build configuration.'],
      ['net/Kconfig', ' config NET', 'net/Kconfig is part of the build configuration.'],
      [
        'rust/kernel/sync.rs',
        ' use crate::types;',
        'rust/kernel/sync.rs is Rust code, and rebootless builds live patches from C only.',
      ],
    ])('refuses %s', (path, context, headline) => {
      const diff = oneHunkDiff(path, '', context, '+added line');
      expect(reviewOf(diff).findings).toEqual([['refuse', 'non-c-file', headline]]);
    });

    it('refuses boot-stage code', () => {
      const diff = oneHunkDiff(
        'arch/x86/boot/compressed/misc.c',
        'asmlinkage __visible void *extract_kernel(void *rmode)',
        ' {',
        '+\tdebug_putstr("x");',
        ' }',
      );
      expect(reviewOf(diff).findings).toEqual([
        [
          'refuse',
          'init-exit',
          'arch/x86/boot/compressed/misc.c is boot-stage code (decompressor, boot glue or device tree).',
        ],
      ]);
    });

    it('refuses generic vDSO code under lib/vdso', () => {
      const diff = oneHunkDiff(
        'lib/vdso/gettimeofday.c',
        'static __always_inline int do_hres(void)',
        ' {',
        '+\tbarrier();',
        ' }',
      );
      expect(reviewOf(diff).findings).toEqual([
        [
          'refuse',
          'vdso',
          'lib/vdso/gettimeofday.c is part of the vDSO, the code the kernel maps into every user process.',
        ],
      ]);
    });
  });
});
