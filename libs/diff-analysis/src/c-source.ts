// Just enough C to review a kernel diff: comments out, spacing normalised, and the names of
// what a file-scope statement declares. Not a parser: the hunks are fragments, and the kernel's
// own style (bodies indented, definitions and closing braces in column 0) carries the rest.

/** Carries the "inside a block comment" state from one line to the next. */
export interface LexState {
  inComment: boolean;
}

/** The line without comments; string and character literals are kept as they are. */
export function codeOf(line: string, lex: LexState): string {
  let out = '';
  let i = 0;
  // A hunk can start inside a block comment: its continuation lines start with "*".
  if (!lex.inComment && /^\s*\*(\s|\/|$)/.test(line)) {
    const end = line.indexOf('*/');
    if (end < 0) return '';
    i = end + 2;
  }
  while (i < line.length) {
    if (lex.inComment) {
      const end = line.indexOf('*/', i);
      if (end < 0) return out;
      lex.inComment = false;
      i = end + 2;
      out += ' ';
      continue;
    }
    const ch = line[i]!;
    if (ch === '/' && line[i + 1] === '*') {
      lex.inComment = true;
      i += 2;
    } else if (ch === '/' && line[i + 1] === '/') {
      break;
    } else if (ch === '"' || ch === "'") {
      const end = literalEnd(line, i);
      out += line.slice(i, end);
      i = end;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

function literalEnd(text: string, start: number): number {
  const quote = text[start];
  let i = start + 1;
  while (i < text.length && text[i] !== quote) i += text[i] === '\\' ? 2 : 1;
  return Math.min(i + 1, text.length);
}

/** Code with spacing that does not matter to the compiler removed, so reformatting compares equal. */
export function normalise(code: string): string {
  let out = '';
  let i = 0;
  let pendingSpace = false;
  const word = (ch: string | undefined) => ch !== undefined && /[A-Za-z0-9_]/.test(ch);
  while (i < code.length) {
    const ch = code[i]!;
    if (/\s/.test(ch)) {
      pendingSpace = true;
      i++;
      continue;
    }
    if (pendingSpace && word(out[out.length - 1]) && word(ch)) out += ' ';
    pendingSpace = false;
    if (ch === '"' || ch === "'") {
      const end = literalEnd(code, i);
      out += code.slice(i, end);
      i = end;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** The index of `ch` outside parentheses, brackets and braces, or -1. */
export function indexAtTopLevel(text: string, ch: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      i = literalEnd(text, i) - 1;
    } else if ('([{'.includes(c)) {
      depth++;
    } else if (')]}'.includes(c)) {
      depth--;
    } else if (c === ch && depth === 0) {
      // `==`, `<=`, `>=`, `!=` are comparisons, not assignments
      if (ch !== '=' || (!'=<>!'.includes(text[i - 1] ?? '') && text[i + 1] !== '=')) return i;
    }
  }
  return -1;
}

/** The index of the parenthesis that closes the one at `open`, or -1. */
function closingParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") i = literalEnd(text, i) - 1;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}

function splitAtTopLevel(text: string, ch: string): string[] {
  const parts: string[] = [];
  let rest = text;
  for (let at = indexAtTopLevel(rest, ch); at >= 0; at = indexAtTopLevel(rest, ch)) {
    parts.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  parts.push(rest);
  return parts;
}

// Section, placement and checker annotations that sit among a declaration's words.
const ANNOTATION = new Set([
  'static',
  'extern',
  'const',
  'volatile',
  'inline',
  'register',
  'restrict',
  'signed',
  'unsigned',
  'struct',
  'union',
  'enum',
  'notrace',
  'noinstr',
  'noinline',
  'asmlinkage',
  'fastcall',
  'typeof',
  'auto',
]);

/** Kernel annotations spelled `__word` (section placement, sparse, alignment, compiler hints). */
function isAnnotation(word: string): boolean {
  return (
    ANNOTATION.has(word) ||
    /^_{2,4}(init|exit|meminit|cpuinit|devinit|devexit|ref|read_mostly|ro_after_init|cacheline|section|aligned|packed|maybe_unused|always_unused|used|weak|percpu|rcu|user|iomem|force|must_check|cold|hot|noreturn|visible|nocfi|noclone|always_inline|latent_entropy|randomize_layout|no_randomize_layout|bpf_kfunc|attribute|printf|scanf|acquires|releases|must_hold|cond_acquires|cond_releases|nonnull|malloc|alloc_size|counted_by|diag|no_sanitize|noinline|pure|const|deprecated|kprobes|irq_entry|sched|lockfunc|naked|nostackprotector|flatten|aligned_largest|bitwise|private|data_racy|guarded_by)\w*$/.test(
      word,
    )
  );
}

/** The names a declaration (a global, a struct member) introduces, left to right. */
export function declaredNames(declaration: string): string[] {
  return splitAtTopLevel(declaration, ',')
    .map((part) => declaredName(part))
    .filter((name): name is string => name !== undefined);
}

function declaredName(part: string): string | undefined {
  const pointerToFunction = /\(\s*\*\s*(?:const\s+)?([A-Za-z_]\w*)\s*\)/.exec(part);
  if (pointerToFunction) return pointerToFunction[1];
  const words = part
    .replace(/\b__attribute__\s*\(\(.*?\)\)/g, ' ')
    .replace(/\b(__\w+|[A-Z_][A-Z0-9_]*)\s*\([^()]*\)/g, ' ') // __aligned(8), __section("x"), __counted_by(n)
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/:\s*\w+\s*$/, ' ') // a bit-field width
    .replace(/[;{}]/g, ' ')
    .match(/[A-Za-z_]\w*/g);
  return words?.reverse().find((word) => !isAnnotation(word));
}

/** The function a definition's head defines (SYSCALL_DEFINEn bodies live in __do_sys_<name>). */
export function functionName(head: string): string | undefined {
  const syscall = /\b(COMPAT_)?SYSCALL_DEFINE\d\s*\(\s*(\w+)/.exec(head);
  if (syscall) return `__do_${syscall[1] ? 'compat_' : ''}sys_${syscall[2]}`;
  let depth = 0;
  for (let i = 0; i < head.length; i++) {
    const c = head[i]!;
    if (c === '(') {
      if (depth === 0) {
        const name = /([A-Za-z_]\w*)\s*$/.exec(head.slice(0, i))?.[1];
        if (name !== undefined && !isAnnotation(name) && name !== '__attribute__') {
          // A definer macro such as BPF_CALL_2(name, ...): the function is its first argument.
          if (/^[A-Z][A-Z0-9_]*$/.test(name)) return /^\(\s*([A-Za-z_]\w*)/.exec(head.slice(i))?.[1] ?? name;
          return name;
        }
      }
      depth++;
    } else if (c === ')') {
      depth--;
    }
  }
  return undefined;
}

/** The kernel annotations on a definition that decide whether a live patch may touch it. */
export function annotationsOf(head: string): string[] {
  const found = head.match(
    /\b(static|inline|__always_inline|notrace|noinstr|__init|__exit|__meminit|__cpuinit|__devinit|__devexit|__init_or_module|__initdata|__initconst|__exitdata|__meminitdata|__initdata_or_module|__cpuinitdata|__devinitdata|extern|const)\b/g,
  );
  return [...new Set(found ?? [])];
}

export const INIT_CODE = ['__init', '__exit', '__meminit', '__cpuinit', '__devinit', '__devexit', '__init_or_module'];
export const INIT_DATA = [
  '__initdata',
  '__initconst',
  '__exitdata',
  '__meminitdata',
  '__initdata_or_module',
  '__cpuinitdata',
  '__devinitdata',
];

/** What a complete file-scope statement (ending in ";" or "{") is. */
export type FileScopeStatement =
  | { kind: 'function'; name: string; annotations: string[] }
  | { kind: 'aggregate'; keyword: 'struct' | 'union' | 'enum'; name: string }
  | { kind: 'data'; name: string; annotations: string[]; opensInitialiser: boolean }
  | { kind: 'prototype'; name: string }
  | { kind: 'macro-call'; macro: string; args: string[] }
  | { kind: 'typedef'; name: string }
  | { kind: 'forward-declaration' }
  | { kind: 'other' };

/** Classifies a normalised file-scope statement; `complete` is false when the hunk ends inside it. */
export function classifyStatement(code: string, complete = true): FileScopeStatement {
  const opens = code.endsWith('{');
  const body = code.replace(/[;{]$/, '').trim();
  const equals = indexAtTopLevel(body, '=');
  const aggregate =
    /^(?:typedef\s*)?(?:(?:static|const|volatile|__\w+)\s+)*(struct|union|enum)\b\s*([A-Za-z_]\w*)?(?:\s+__\w+(?:\([^()]*\))?)*$/.exec(
      body,
    );

  if (/^typedef\b/.test(body) && !opens && complete) {
    const name = declaredName(body.replace(/^typedef\s*/, ''));
    return name === undefined ? { kind: 'other' } : { kind: 'typedef', name };
  }
  if (aggregate && (opens || !complete)) {
    return { kind: 'aggregate', keyword: aggregate[1] as 'struct' | 'union' | 'enum', name: aggregate[2] ?? '' };
  }
  if (aggregate && !aggregate[0].startsWith('typedef')) return { kind: 'forward-declaration' };
  if (equals >= 0) {
    const name = declaredName(body.slice(0, equals));
    return name === undefined
      ? { kind: 'other' }
      : { kind: 'data', name, annotations: annotationsOf(body.slice(0, equals)), opensInitialiser: opens };
  }
  if (opens || (!complete && body.includes('('))) {
    const name = functionName(body);
    return name === undefined ? { kind: 'other' } : { kind: 'function', name, annotations: annotationsOf(body) };
  }
  // NAME(args) with one set of parentheses around all the rest: "void (*hook)(int)" is not a call.
  const call = /^(?:static\s*)?([A-Za-z_]\w*)\s*\(([\s\S]*)\)$/.exec(body);
  if (call && !ANNOTATION.has(call[1]!) && closingParen(body, body.indexOf('(')) === body.length - 1) {
    return { kind: 'macro-call', macro: call[1]!, args: splitAtTopLevel(call[2]!, ',').map((a) => a.trim()) };
  }
  const paren = body.indexOf('(');
  if (paren >= 0 && !/^\(\s*\*/.test(body.slice(paren))) {
    const name = functionName(body);
    return name === undefined ? { kind: 'other' } : { kind: 'prototype', name };
  }
  const name = declaredName(body);
  return name === undefined
    ? { kind: 'other' }
    : { kind: 'data', name, annotations: annotationsOf(body), opensInitialiser: false };
}

/** A `static` variable declared inside a function body; undefined for anything else. */
export function staticLocal(code: string): { name: string; readOnly: boolean } | undefined {
  if (!/^static\s/.test(code)) return undefined;
  const body = code.replace(/;$/, '');
  const equals = indexAtTopLevel(body, '=');
  const declaration = equals >= 0 ? body.slice(0, equals) : body;
  const definer = /^static\s+([A-Z][A-Z0-9_]*)\s*\(\s*([A-Za-z_]\w*)/.exec(declaration); // static DEFINE_RATELIMIT_STATE(rs, ...)
  if (definer) return { name: definer[2]!, readOnly: false };
  const name = declaredName(declaration);
  if (name === undefined) return undefined;
  // "static const int x" and "static const char *const x" cannot change; "static const char *x" can.
  const beforeName = declaration.slice(0, declaration.lastIndexOf(name));
  const readOnly = /\bconst\b/.test(beforeName) && (!beforeName.includes('*') || /\*\s*const\s*$/.test(beforeName));
  return { name, readOnly };
}
