// What a livepatch module's C source says about itself, read from its klp_func / klp_object /
// klp_patch initialisers. Pure text work: the compiler is the judge of whether the source is C;
// this only finds what the manifest must state (the functions it replaces, its replace flag).
import type { events } from '@rebootless/contracts';

/** Comments and string contents would confuse the scan; blank them, keeping offsets and string quotes. */
function withoutComments(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, (m) => ' '.repeat(m.length));
}

/** The text between the brace at `open` and its matching close brace. */
function braceBody(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return text.slice(open + 1, i);
    }
  }
  return text.slice(open + 1);
}

/** Top-level `{ ... }` groups of an array initialiser body. */
function elements(body: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (body[i] === '}') {
      depth--;
      if (depth === 0 && start >= 0) out.push(body.slice(start + 1, i));
    }
  }
  return out;
}

function stringField(group: string, field: string): string | undefined {
  return new RegExp(`\\.${field}\\s*=\\s*"([^"]*)"`).exec(group)?.[1];
}

function numberField(group: string, field: string): number | undefined {
  const raw = new RegExp(`\\.${field}\\s*=\\s*([0-9]+)`).exec(group)?.[1];
  return raw === undefined ? undefined : Number(raw);
}

/** `struct klp_<kind> name[] = { ... }` (or a single `name = { ... }`) initialisers, by variable name. */
function initialisers(text: string, kind: 'func' | 'object'): Map<string, string> {
  const out = new Map<string, string>();
  const pattern = new RegExp(`struct\\s+klp_${kind}\\s+([A-Za-z_][A-Za-z0-9_]*)\\s*(\\[[^\\]]*\\])?\\s*=\\s*\\{`, 'g');
  for (const match of text.matchAll(pattern)) {
    const open = match.index + match[0].length - 1;
    out.set(match[1]!, braceBody(text, open));
  }
  return out;
}

/**
 * The functions a livepatch module replaces, as /sys/kernel/livepatch will name them: each
 * klp_func's `.old_name` and `.old_sympos`, under the object (`.name` of the klp_object whose
 * `.funcs` points at it; vmlinux when it has none). In source order, duplicates dropped.
 */
export function patchedFunctionsOf(source: string): events.PatchedFunction[] {
  const text = withoutComments(source);
  const objectOfFuncs = new Map<string, string>();
  for (const body of initialisers(text, 'object').values()) {
    const groups = elements(body);
    for (const group of groups.length > 0 ? groups : [body]) {
      const funcs = /\.funcs\s*=\s*&?\s*([A-Za-z_][A-Za-z0-9_]*)/.exec(group)?.[1];
      if (funcs) objectOfFuncs.set(funcs, stringField(group, 'name') ?? 'vmlinux');
    }
  }
  const found: events.PatchedFunction[] = [];
  const seen = new Set<string>();
  const add = (object: string, group: string) => {
    const name = stringField(group, 'old_name');
    if (name === undefined || name === '') return;
    const sympos = numberField(group, 'old_sympos') ?? 0;
    const key = `${object}/${name},${sympos}`;
    if (seen.has(key)) return;
    seen.add(key);
    found.push({ object, name, sympos });
  };
  const funcArrays = initialisers(text, 'func');
  for (const [variable, body] of funcArrays) {
    const object = objectOfFuncs.get(variable) ?? 'vmlinux';
    const groups = elements(body);
    for (const group of groups.length > 0 ? groups : [body]) add(object, group);
  }
  if (funcArrays.size === 0) {
    // No recognisable klp_func declaration (macros, unusual layout): still name what is patched.
    for (const match of text.matchAll(/\.old_name\s*=\s*"([^"]*)"/g)) add('vmlinux', match[0]);
  }
  return found;
}

/**
 * The `.replace` flag of the source's klp_patch: true, false, or undefined when the source sets
 * it to something this scan cannot read (a macro).
 */
export function replaceFlagOf(source: string): boolean | undefined {
  const text = withoutComments(source);
  const patches = [...text.matchAll(/struct\s+klp_patch\s+[A-Za-z_][A-Za-z0-9_]*\s*=\s*\{/g)];
  let flag: boolean | undefined = false;
  for (const match of patches) {
    const body = braceBody(text, match.index + match[0].length - 1);
    const raw = /\.replace\s*=\s*([A-Za-z0-9_]+)/.exec(body)?.[1];
    if (raw === undefined) continue;
    if (raw === 'true' || raw === '1') flag = true;
    else if (raw === 'false' || raw === '0') flag = flag ?? false;
    else flag = undefined;
  }
  return flag;
}
