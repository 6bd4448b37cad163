import { ToolchainError } from './errors';
import { cStringLiteral, livepatchSample, MAX_REPLACEMENT_BYTES } from './livepatch-sample';

/** Decodes the subset of C escapes cStringLiteral emits, to check it round-trips byte for byte. */
function decodeCString(literal: string): Buffer {
  expect(literal.startsWith('"') && literal.endsWith('"')).toBe(true);
  const body = literal.slice(1, -1);
  const bytes: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    expect(c.charCodeAt(0)).toBeLessThan(0x7f);
    if (c === '"') throw new Error('unescaped quote');
    if (c !== '\\') {
      bytes.push(c.charCodeAt(0));
      continue;
    }
    const n = body[++i]!;
    if (/[0-7]/.test(n)) {
      const oct = body.slice(i, i + 3);
      expect(oct).toMatch(/^[0-7]{3}$/);
      bytes.push(parseInt(oct, 8));
      i += 2;
    } else {
      bytes.push({ n: 0x0a, t: 0x09, '\\': 0x5c, '"': 0x22, '?': 0x3f }[n] ?? -1);
    }
  }
  return Buffer.from(bytes);
}

describe('C string literals', () => {
  it.each([
    'patched by rebootless',
    'quote " backslash \\ percent %s %n',
    'trigraph ??= ??/ and */ /* comment markers',
    'new\nline\ttab\r\u0007bell',
    'ünïcødé ✓ 😀',
    '1234567\u00010',
    '',
  ])('round-trips %j byte for byte', (text) => {
    const literal = cStringLiteral(text);
    expect(decodeCString(literal).equals(Buffer.from(text, 'utf8'))).toBe(true);
    expect(literal).not.toMatch(/\?\?/);
    expect(literal).not.toContain('\n');
  });
});

describe('livepatchSample', () => {
  const source = livepatchSample({ moduleName: 'rbl_cmdline', replacementText: 'patched "cmdline"' });

  it('is a livepatch module replacing cmdline_proc_show', () => {
    expect(source).toContain('#include <linux/livepatch.h>');
    expect(source).toMatch(
      /static struct klp_func \w+\[\] = \{\s*\{\s*\.old_name = "cmdline_proc_show",\s*\.new_func = (\w+),/,
    );
    expect(source).toMatch(/static int rbl_cmdline_proc_show\(struct seq_file \*m, void \*v\)/);
    expect(source).toMatch(/static struct klp_object \w+\[\] = /);
    expect(source).toMatch(/static struct klp_patch \w+ = \{\s*\.mod = THIS_MODULE,/);
    expect(source).toMatch(/return klp_enable_patch\(&\w+\);/);
    expect(source).toContain('module_init(');
    expect(source).toContain('module_exit(');
    expect(source).toContain('MODULE_LICENSE("GPL");');
    expect(source).toContain('MODULE_INFO(livepatch, "Y");');
    expect(source).toContain('static const char rbl_text[] = "patched \\"cmdline\\"";');
    expect(source).toContain('seq_printf(m, "%s\\n", rbl_text);');
  });

  it('sets atomic replace only when asked', () => {
    expect(source).toContain('.replace = false,');
    expect(livepatchSample({ moduleName: 'rbl_cumulative', replacementText: 'x', replace: true })).toContain(
      '.replace = true,',
    );
  });

  it('refuses bad input before generating anything', () => {
    const cases: [Parameters<typeof livepatchSample>[0], RegExp][] = [
      [{ moduleName: 'Bad-Name', replacementText: 'x' }, /invalid module name/],
      [{ moduleName: 'ok', replacementText: 'a\0b' }, /NUL/],
      [{ moduleName: 'ok', replacementText: 'x'.repeat(MAX_REPLACEMENT_BYTES + 1) }, /at most 4096/],
      [{ moduleName: 'ok', replacementText: 42 as unknown as string }, /must be a string/],
    ];
    for (const [opts, message] of cases) {
      let error: unknown;
      try {
        livepatchSample(opts);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ToolchainError);
      expect((error as ToolchainError).code).toBe('INVALID_ARGUMENT');
      expect((error as ToolchainError).message).toMatch(message);
    }
  });
});
