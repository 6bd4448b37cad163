import { DiffParseError, parseUnifiedDiff } from './unified-diff';

const lines = (...l: string[]) => l.join('\n') + '\n';

/** The DiffParseError the input raises. */
function parseErrorOf(text: string): DiffParseError {
  try {
    parseUnifiedDiff(text);
  } catch (error) {
    if (error instanceof DiffParseError) return error;
    throw error;
  }
  throw new Error('expected a DiffParseError');
}

describe('parseUnifiedDiff', () => {
  describe('given git diff output', () => {
    it('strips the a/ and b/ prefixes and keeps the hunk as written', () => {
      const files = parseUnifiedDiff(
        lines(
          'diff --git a/mm/mmap.c b/mm/mmap.c',
          'index 1f7e0a2..5c3d9b1 100644',
          '--- a/mm/mmap.c',
          '+++ b/mm/mmap.c',
          '@@ -120,4 +120,5 @@ static unsigned long mmap_base_gap(unsigned long gap)',
          ' \tif (gap < MIN_GAP)',
          ' \t\tgap = MIN_GAP;',
          '+\tgap = PAGE_ALIGN(gap);',
          ' \treturn gap;',
          ' }',
        ),
      );
      expect(files).toEqual([
        {
          oldPath: 'mm/mmap.c',
          newPath: 'mm/mmap.c',
          status: 'modified',
          diffLine: 1,
          hunks: [
            {
              oldStart: 120,
              oldLines: 4,
              newStart: 120,
              newLines: 5,
              header: 'static unsigned long mmap_base_gap(unsigned long gap)',
              lines: [
                ' \tif (gap < MIN_GAP)',
                ' \t\tgap = MIN_GAP;',
                '+\tgap = PAGE_ALIGN(gap);',
                ' \treturn gap;',
                ' }',
              ],
              diffLine: 5,
            },
          ],
        },
      ]);
    });

    it('reads new, deleted, renamed and mode-only files, with or without hunks', () => {
      const files = parseUnifiedDiff(
        lines(
          'diff --git a/lib/new_helper.c b/lib/new_helper.c',
          'new file mode 100644',
          'index 0000000..e69de29',
          'diff --git a/lib/old_helper.c b/lib/old_helper.c',
          'deleted file mode 100644',
          'index 3b18e51..0000000',
          '--- a/lib/old_helper.c',
          '+++ /dev/null',
          '@@ -1 +0,0 @@',
          '-int old_helper;',
          'diff --git a/drivers/net/foo.c b/drivers/net/bar.c',
          'similarity index 100%',
          'rename from drivers/net/foo.c',
          'rename to drivers/net/bar.c',
          'diff --git a/scripts/checkpatch.pl b/scripts/checkpatch.pl',
          'old mode 100644',
          'new mode 100755',
        ),
      );
      expect(files.map((f) => [f.status, f.oldPath, f.newPath, f.hunks.length])).toEqual([
        ['added', '/dev/null', 'lib/new_helper.c', 0],
        ['deleted', 'lib/old_helper.c', '/dev/null', 1],
        ['renamed', 'drivers/net/foo.c', 'drivers/net/bar.c', 0],
        ['modified', 'scripts/checkpatch.pl', 'scripts/checkpatch.pl', 0],
      ]);
      // "@@ -1 +0,0 @@": an omitted count means one line
      expect(files[1]!.hunks[0]).toMatchObject({ oldStart: 1, oldLines: 1, newStart: 0, newLines: 0 });
    });

    it('marks binary files, which have no hunks to read', () => {
      const files = parseUnifiedDiff(
        lines(
          'diff --git a/firmware/blob.bin b/firmware/blob.bin',
          'index a2b1602..219bed8 100644',
          'GIT binary patch',
          'literal 8',
          'PcmZ?wbhEHbG-d<<Q1CM%',
          '',
          'literal 8',
          'PcmZ?wbhEHbG-d<<Q1CM%',
          '',
          'diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c',
          '--- a/fs/proc/cmdline.c',
          '+++ b/fs/proc/cmdline.c',
          '@@ -1 +1 @@',
          '-// SPDX-License-Identifier: GPL-2.0',
          '+// SPDX-License-Identifier: GPL-2.0-only',
        ),
      );
      expect(files.map((f) => [f.newPath, f.binary ?? false])).toEqual([
        ['firmware/blob.bin', true],
        ['fs/proc/cmdline.c', false],
      ]);
    });

    it('decodes quoted names with C escapes', () => {
      // Given a name with a non-ASCII character, which git prints as octal UTF-8 bytes
      const files = parseUnifiedDiff(
        lines(
          'diff --git "a/drivers/misc/caf\\303\\251.c" "b/drivers/misc/caf\\303\\251.c"',
          'index 1111111..2222222 100644',
          '--- "a/drivers/misc/caf\\303\\251.c"',
          '+++ "b/drivers/misc/caf\\303\\251.c"',
          '@@ -1 +1 @@',
          '-int x;',
          '+int y;',
        ),
      );
      expect(files[0]!.newPath).toBe('drivers/misc/café.c');
    });
  });

  describe('given diff -u output', () => {
    it('drops the timestamps and the differing top directories, as patch -p1 would', () => {
      const files = parseUnifiedDiff(
        lines(
          '--- linux-6.1.orig/fs/proc/cmdline.c\t2024-03-01 10:00:00.000000000 +0000',
          '+++ linux-6.1/fs/proc/cmdline.c\t2024-03-01 10:05:00.000000000 +0000',
          '@@ -9,3 +9,3 @@',
          ' {',
          '-\tseq_puts(m, saved_command_line);',
          '+\tseq_puts(m, saved_command_line ?: "");',
          " \tseq_putc(m, '\\n');",
        ),
      );
      expect(files).toEqual([
        expect.objectContaining({ oldPath: 'fs/proc/cmdline.c', newPath: 'fs/proc/cmdline.c', status: 'modified' }),
      ]);
    });

    it('reads a new file from --- /dev/null', () => {
      const files = parseUnifiedDiff(
        lines('--- /dev/null', '+++ b/lib/fresh.c', '@@ -0,0 +1,2 @@', '+#include <linux/kernel.h>', '+int fresh;'),
      );
      expect(files).toEqual([
        expect.objectContaining({ oldPath: '/dev/null', newPath: 'lib/fresh.c', status: 'added' }),
      ]);
    });

    it('tolerates CRLF line ends, "\\ No newline at end of file" and context lines that lost their space', () => {
      const text = [
        '--- a/kernel/panic.c',
        '+++ b/kernel/panic.c',
        '@@ -1,4 +1,4 @@',
        ' int panic_timeout;',
        '', // was " ": a mailer stripped the trailing space
        '-int panic_on_oops;',
        '\\ No newline at end of file',
        '+int panic_on_oops = 1;',
        '\\ No newline at end of file',
        ' ',
      ].join('\r\n');
      // (The last context line is past the "no newline" marks only to exercise the counting.)
      const [file] = parseUnifiedDiff(text);
      expect(file!.hunks[0]!.lines).toEqual([
        ' int panic_timeout;',
        ' ',
        '-int panic_on_oops;',
        '\\ No newline at end of file',
        '+int panic_on_oops = 1;',
        '\\ No newline at end of file',
        ' ',
      ]);
    });
  });

  describe('given input that is not a diff', () => {
    it('refuses empty input', () => {
      // When an empty diff is parsed, then the error says so, on line 1
      expect(parseErrorOf('')).toMatchObject({
        line: 1,
        message: 'line 1: the diff is empty: there is nothing to analyse',
      });
      expect(parseErrorOf('\n   \n\t\n')).toMatchObject({
        line: 1,
        detail: 'the diff is empty: there is nothing to analyse',
      });
    });

    it('refuses prose, pointing at its first line', () => {
      const error = parseErrorOf(lines('', 'Hi, could you patch the netfilter bug from last week?', 'Thanks'));
      expect(error.line).toBe(2);
      expect(error.message).toBe(
        'line 2: this is not a unified diff: none of its 3 line(s) is a file header ("diff --git a/<path> b/<path>", ' +
          'or "--- a/<path>" followed by "+++ b/<path>"); it begins "Hi, could you patch the netfilter bug from last week?"',
      );
    });

    it('refuses a hunk with no file header before it', () => {
      const error = parseErrorOf(lines('some notes', '@@ -1,2 +1,2 @@', ' a', '-b', '+c'));
      expect(error.line).toBe(2);
      expect(error.detail).toContain('comes before any file header');
    });

    it('refuses a "---" file header without its "+++" line', () => {
      const error = parseErrorOf(lines('--- a/fs/proc/cmdline.c', '@@ -1 +1 @@', '-a', '+b'));
      expect(error.line).toBe(2);
      expect(error.detail).toContain('without the "+++ <new path>" line');
    });

    it('refuses a malformed hunk header, quoting it', () => {
      const error = parseErrorOf(lines('--- a/fs/proc/cmdline.c', '+++ b/fs/proc/cmdline.c', '@@ -1,3 +1 3 @@', ' a'));
      expect(error.line).toBe(3);
      expect(error.detail).toContain('malformed hunk header "@@ -1,3 +1 3 @@"');
    });

    it('refuses a git header that is followed by no change at all', () => {
      const error = parseErrorOf(
        lines('diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c', 'index 9bb6c01..4d26b9c 100644'),
      );
      expect(error.line).toBe(1);
    });
  });

  describe('given a hunk whose line counts do not add up', () => {
    const header = [
      'diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c',
      '--- a/fs/proc/cmdline.c',
      '+++ b/fs/proc/cmdline.c',
    ];

    it('refuses a hunk cut short by the next file, naming both lines', () => {
      // Given a hunk that declares 4 old and 4 new lines but carries 3 and 3
      const error = parseErrorOf(
        lines(
          ...header,
          '@@ -8,4 +8,4 @@ static int cmdline_proc_show(struct seq_file *m, void *v)',
          ' {',
          '-\tseq_puts(m, a);',
          '+\tseq_puts(m, b);',
          ' \treturn 0;',
          ...header,
        ),
      );
      // Then the error points at the line where the hunk stopped and at the hunk itself
      expect(error.line).toBe(9);
      expect(error.detail).toBe(
        'this line is not a hunk line (those start with " ", "+" or "-"): the hunk that starts on line 4 declares 4 old and 4 new line(s) ' +
          '(@@ -8,4 +8,4 @@) but has only 3 old and 3 new before it, so the counts do not add up',
      );
    });

    it('refuses a hunk that goes on past its counts', () => {
      const error = parseErrorOf(lines(...header, '@@ -8,2 +8,2 @@', ' {', '-\ta();', '+\tb();', ' \treturn 0;'));
      expect(error.line).toBe(8);
      expect(error.detail).toContain('continues the hunk that starts on line 4 past the 2 old and 2 new line(s)');
    });

    it('refuses one added line too many, before the hunk ends', () => {
      const error = parseErrorOf(lines(...header, '@@ -8,2 +8,2 @@', ' {', '+\ta();', '+\tb();', ' }'));
      expect(error.line).toBe(7);
      expect(error.detail).toContain('this added line is one more than the header allows');
    });

    it('refuses a diff that ends inside a hunk', () => {
      const error = parseErrorOf(lines(...header, '@@ -8,5 +8,5 @@', ' {', '-\ta();', '+\tb();'));
      expect(error.line).toBe(7);
      expect(error.detail).toContain('the diff ends too early');
    });
  });

  describe('given a file name that leaves the source tree', () => {
    it('refuses ../ in a git diff, on the header line', () => {
      const error = parseErrorOf(
        lines(
          'diff --git a/../../etc/passwd b/../../etc/passwd',
          '--- a/../../etc/passwd',
          '+++ b/../../etc/passwd',
          '@@ -1 +1 @@',
          '-root:x:0:0::/root:/bin/bash',
          '+root::0:0::/root:/bin/bash',
        ),
      );
      expect(error).toMatchObject({ line: 1 });
      expect(error.detail).toBe(
        'the old file name "../../etc/passwd" contains "..", which would reach outside the kernel source tree; refused',
      );
    });

    it('refuses ../ hidden in the middle of a diff -u name', () => {
      const error = parseErrorOf(
        lines('--- a/fs/../../../etc/passwd', '+++ b/fs/../../../etc/passwd', '@@ -1 +1 @@', '-a', '+b'),
      );
      expect(error.line).toBe(1);
      expect(error.detail).toContain('".."');
    });

    it('refuses an absolute path', () => {
      const error = parseErrorOf(lines('--- /etc/shadow', '+++ /etc/shadow', '@@ -1 +1 @@', '-a', '+b'));
      expect(error.line).toBe(1);
      expect(error.detail).toContain('"/etc/shadow" is an absolute path');
    });

    it('refuses a rename target outside the tree', () => {
      const error = parseErrorOf(
        lines(
          'diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c',
          'similarity index 100%',
          'rename from fs/proc/cmdline.c',
          'rename to ../../boot/vmlinuz',
        ),
      );
      expect(error.line).toBe(4);
      expect(error.detail).toContain('the new file name "../../boot/vmlinuz" contains ".."');
    });

    it('refuses a NUL byte, quoted or raw', () => {
      const quoted = parseErrorOf(
        lines(
          'diff --git "a/fs/proc/cmdline.c\\000.sh" "b/fs/proc/cmdline.c\\000.sh"',
          '--- "a/fs/proc/cmdline.c\\000.sh"',
          '+++ "b/fs/proc/cmdline.c\\000.sh"',
          '@@ -1 +1 @@',
          '-a',
          '+b',
        ),
      );
      expect(quoted.line).toBe(1);
      expect(quoted.detail).toContain('contains a NUL byte');
      const raw = parseErrorOf(
        lines('--- a/fs/proc/cmdline.c\0', '+++ b/fs/proc/cmdline.c\0', '@@ -1 +1 @@', '-a', '+b'),
      );
      expect(raw.line).toBe(1);
      expect(raw.detail).toContain('contains a NUL byte');
    });
  });
});
