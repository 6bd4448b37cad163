import { classifyStatement, codeOf, declaredNames, functionName, normalise, staticLocal } from './c-source';

describe('reading C lines', () => {
  it('drops comments but keeps string literals that look like them', () => {
    // Given a block comment that spans lines
    const lex = { inComment: false };
    // When the lines are read one after the other
    const code = ['\tx = 1; /* starts', '\t   still a comment */ y = "/* not a comment */";'].map((l) =>
      codeOf(l, lex),
    );
    // Then only code is left
    expect(code.map(normalise)).toEqual(['x=1;', 'y="/* not a comment */";']);
  });

  it('compares code whatever its spacing', () => {
    expect(normalise('\tif(a&&b)  return  x ;')).toBe(normalise('if (a && b) return x;'));
    expect(normalise('unsigned  int x')).toBe('unsigned int x');
  });
});

describe('names in C declarations', () => {
  it.each([
    ['static int cmdline_proc_show(struct seq_file *m, void *v)', 'cmdline_proc_show'],
    ['__printf(2, 3) void dev_warn_once(const struct device *dev, const char *fmt, ...)', 'dev_warn_once'],
    ['SYSCALL_DEFINE3(setpriority, int, which, int, who, int, niceval)', '__do_sys_setpriority'],
    ['COMPAT_SYSCALL_DEFINE2(getrlimit, unsigned int, resource,', '__do_compat_sys_getrlimit'],
    ['BPF_CALL_2(bpf_map_lookup_elem, struct bpf_map *, map, void *, key)', 'bpf_map_lookup_elem'],
    ['static void foo(void (*cb)(int))', 'foo'],
  ])('names the function %s defines', (head, name) => {
    expect(functionName(head)).toBe(name);
  });

  it.each([
    ['static const char *const names[] __initconst', ['names']],
    ['void (*handler)(struct pt_regs *regs)', ['handler']],
    ['unsigned int dirty:1, busy:1', ['dirty', 'busy']],
    ['u8 data[] __counted_by(len)', ['data']],
    ['struct list_head list ____cacheline_aligned_in_smp', ['list']],
  ])('names what %s declares', (declaration, names) => {
    expect(declaredNames(declaration)).toEqual(names);
  });

  it('tells the kinds of file-scope statement apart', () => {
    expect(classifyStatement('static const struct file_operations foo_fops={')).toMatchObject({
      kind: 'data',
      name: 'foo_fops',
      opensInitialiser: true,
    });
    expect(classifyStatement('struct nft_set{')).toEqual({ kind: 'aggregate', keyword: 'struct', name: 'nft_set' });
    expect(classifyStatement('static int __init foo_init(void){')).toMatchObject({
      kind: 'function',
      name: 'foo_init',
      annotations: ['static', '__init'],
    });
    expect(classifyStatement('int foo_send(struct sock*sk);')).toEqual({ kind: 'prototype', name: 'foo_send' });
    expect(classifyStatement('static void(*hook)(int);')).toMatchObject({ kind: 'data', name: 'hook' });
    expect(classifyStatement('module_init(foo_init);')).toEqual({
      kind: 'macro-call',
      macro: 'module_init',
      args: ['foo_init'],
    });
    expect(classifyStatement('struct sk_buff;')).toEqual({ kind: 'forward-declaration' });
    expect(classifyStatement('typedef int(*foo_fn)(void*);')).toEqual({ kind: 'typedef', name: 'foo_fn' });
  });

  it('tells a read-only static local from one that holds state', () => {
    expect(staticLocal('static const char*const names[]={"a","b"};')).toEqual({ name: 'names', readOnly: true });
    expect(staticLocal('static const char*last;')).toEqual({ name: 'last', readOnly: false });
    expect(staticLocal('static unsigned long last_warned;')).toEqual({ name: 'last_warned', readOnly: false });
    expect(staticLocal('static_assert(sizeof(x)==4);')).toBeUndefined();
  });
});
