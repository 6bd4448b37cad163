// File names in a diff: git's C-style quoting, the a/ b/ prefixes, and the refusal of any name
// that could make the builder read or write outside the kernel source tree.
import { DiffParseError } from './diff-parse-error';

const C_ESCAPES: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, '\\': 92 };

/** Reads a quoted name at the start of `text`; returns it and the text after the closing quote. */
function unquote(text: string, line: number): { name: string; rest: string } {
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 1; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"') return { name: new TextDecoder().decode(new Uint8Array(bytes)), rest: text.slice(i + 1) };
    if (ch !== '\\') {
      bytes.push(...encoder.encode(ch));
      continue;
    }
    const next = text[i + 1];
    const octal = /^[0-7]{3}/.exec(text.slice(i + 1));
    if (octal) {
      bytes.push(parseInt(octal[0], 8));
      i += 3;
    } else if (next !== undefined && next in C_ESCAPES) {
      bytes.push(C_ESCAPES[next]!);
      i += 1;
    } else {
      throw new DiffParseError(line, `the quoted file name has an unknown escape "\\${next ?? ''}"`);
    }
  }
  throw new DiffParseError(line, 'a quoted file name has no closing quote');
}

/** The file name in a "--- ", "+++ ", "rename from " or similar header value. */
export function pathOfHeaderLine(value: string, line: number, options: { stopAtTab?: boolean } = {}): string {
  if (value.startsWith('"')) return unquote(value, line).name;
  // diff -u puts a timestamp after a tab; git puts a tab after a name that contains spaces
  return options.stopAtTab ? value.split('\t')[0]! : value;
}

/** The two names on a "diff --git" line (prefixes kept); ambiguous spaces are resolved as git does. */
export function splitGitHeaderPaths(rest: string, line: number): { old: string; new: string } {
  if (rest.startsWith('"')) {
    const first = unquote(rest, line);
    const second = first.rest.trimStart();
    return { old: first.name, new: second.startsWith('"') ? unquote(second, line).name : second };
  }
  const quotedSecond = rest.indexOf(' "');
  if (quotedSecond > 0)
    return { old: rest.slice(0, quotedSecond), new: unquote(rest.slice(quotedSecond + 1), line).name };
  // Unquoted names may contain spaces: "a/x y b/x y". Both halves name the same file unless renamed.
  const half = (rest.length - 1) / 2;
  if (Number.isInteger(half) && rest[half] === ' ') {
    const old = rest.slice(0, half);
    const neu = rest.slice(half + 1);
    if (old.replace(/^a\//, '') === neu.replace(/^b\//, '')) return { old, new: neu };
  }
  const split = rest.indexOf(' b/');
  if (split > 0) return { old: rest.slice(0, split), new: rest.slice(split + 1) };
  const space = rest.indexOf(' ');
  if (space <= 0) throw new DiffParseError(line, 'the "diff --git" line does not name two files');
  return { old: rest.slice(0, space), new: rest.slice(space + 1) };
}

/**
 * Removes the leading directory that names the two trees being compared: git's a/ and b/, or
 * (as `patch -p1` would) a differing first directory such as linux-6.1.orig/ and linux-6.1/.
 * null stands for /dev/null.
 */
export function stripPrefixes(old: string | null, neu: string | null): { old: string | null; new: string | null } {
  if ((old === null || old.startsWith('a/')) && (neu === null || neu.startsWith('b/'))) {
    return { old: old?.slice(2) ?? null, new: neu?.slice(2) ?? null };
  }
  if (old !== null && neu !== null) {
    const o = old.indexOf('/');
    const n = neu.indexOf('/');
    if (o > 0 && n > 0 && old.slice(0, o) !== neu.slice(0, n) && old.slice(o) === neu.slice(n)) {
      return { old: old.slice(o + 1), new: neu.slice(n + 1) };
    }
  }
  return { old, new: neu };
}

/** Returns the name if it stays inside the source tree; otherwise refuses it, saying why. */
export function checkedPath(path: string, line: number, side: 'old' | 'new'): string {
  const shown = JSON.stringify(path);
  if (path.includes('\0')) {
    throw new DiffParseError(
      line,
      `the ${side} file name ${shown} contains a NUL byte; a name that can be cut short is refused`,
    );
  }
  if ([...path].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) {
    throw new DiffParseError(line, `the ${side} file name ${shown} contains control characters; refused`);
  }
  if (path.trim() === '') throw new DiffParseError(line, `the ${side} file name is empty`);
  if (path.startsWith('/')) {
    throw new DiffParseError(
      line,
      `the ${side} file name ${shown} is an absolute path; a kernel diff names files relative to the top of the ` +
        'source tree (like "fs/proc/cmdline.c"), so this one is refused',
    );
  }
  if (path.split('/').includes('..')) {
    throw new DiffParseError(
      line,
      `the ${side} file name ${shown} contains "..", which would reach outside the kernel source tree; refused`,
    );
  }
  return path;
}
