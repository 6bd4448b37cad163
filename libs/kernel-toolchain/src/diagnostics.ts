// Turns Kbuild's output into what a patch author needs: gcc's (and modpost's) own diagnostics,
// with the builder's temporary and cache paths cut off, and none of make's noise.

/** Cuts `workDir/` (the module's own files) and the kernel trees' roots off every path in a line. */
export function relativizeLine(line: string, workDir: string, kernelRoots: readonly string[] = []): string {
  let out = line;
  const roots = [...kernelRoots].filter((r) => r.length > 1).sort((a, b) => b.length - a.length);
  for (const root of roots) out = out.split(`${root.replace(/\/+$/, '')}/`).join('');
  if (workDir.length > 1) {
    const dir = workDir.replace(/\/+$/, '');
    out = out.split(`${dir}/`).join('');
    // modpost names the directory itself in a few messages ("[/tmp/x]" / "in /tmp/x").
    out = out.replace(new RegExp(`${escapeRegExp(dir)}(?=[\\]\\s:]|$)`, 'g'), '.');
  }
  return out;
}

const GCC_DIAGNOSTIC = /^[^\s:][^:]*:\d+(?::\d+)?: (?:fatal error|error|warning|note): /;
const GCC_CONTEXT =
  /^(?:[^\s:][^:]*: (?:In (?:function|member function|static function) .*|At top level):|In file included from .*|\s+from \S+[:,])$/;
const TOOL_DIAGNOSTIC =
  /^(?:cc1|cc1plus|(?:[a-z0-9_]+-)*(?:gcc|ld|ld\.bfd|as)(?:-[0-9]+)?): (?:fatal error|error|warning): /;
const MODPOST = /^(?:ERROR|WARNING|FATAL): modpost: /;
const OBJTOOL = /^[^\s:][^:]*: (?:warning|error): objtool: /;

/** gcc's error/warning/note lines (with their "In function" context), modpost's and objtool's. */
export function extractDiagnostics(lines: readonly string[], max = 100): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    const keep =
      GCC_DIAGNOSTIC.test(line) ||
      GCC_CONTEXT.test(line) ||
      TOOL_DIAGNOSTIC.test(line) ||
      MODPOST.test(line) ||
      OBJTOOL.test(line);
    if (!keep || seen.has(line)) continue;
    seen.add(line);
    out.push(line);
    if (out.length >= max) break;
  }
  // Context lines that ended up leading nowhere (no diagnostic after them) are noise.
  while (out.length > 0 && GCC_CONTEXT.test(out[out.length - 1]!)) out.pop();
  return out;
}

/** Only the errors (a compile can succeed with warnings; those go to CompiledModule.warnings). */
export function isErrorDiagnostic(line: string): boolean {
  return /: (?:fatal error|error): /.test(line) || /^(?:ERROR|FATAL): modpost: /.test(line);
}

export function isWarningDiagnostic(line: string): boolean {
  return /: warning: /.test(line) || /^WARNING: modpost: /.test(line);
}

/** A tool or shared library the build needed and did not find on the builder, if the output says so. */
export function missingTool(lines: readonly string[]): string | undefined {
  for (const line of lines) {
    let m = /^\/bin\/sh: (?:\d+: )?(?:line \d+: )?([^\s:]+): (?:not found|command not found)$/.exec(line);
    if (m) return m[1];
    m = /^make(?:\[\d+\])?: ([^\s:]+): (?:No such file or directory|Command not found)$/.exec(line);
    if (m) return m[1];
    m = /error while loading shared libraries: ([^\s:]+):/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// The assembler's `.incbin` and the preprocessor's `#include` naming a file the sandbox hides.
const MISSING_FILE = [
  /: Error: file not found: (.+)$/,
  /: fatal error: (.+): No such file or directory$/,
  /: Error: can't open (.+?) for reading\b/,
  /: fatal error: (.+): Permission denied$/,
];

/**
 * The first file the compile tried to read outside what it may see (`visible` roots, plus /usr),
 * from the relativised output lines and the module's directory; undefined when none. A relative
 * name is resolved against the module's directory, so `../../etc/shadow` counts as well.
 */
export function readOutsideSandbox(
  lines: readonly string[],
  moduleDir: string,
  visible: readonly string[],
): string | undefined {
  const roots = ['/usr', moduleDir, ...visible].map((r) => r.replace(/\/+$/, ''));
  for (const line of lines) {
    for (const pattern of MISSING_FILE) {
      const named = pattern.exec(line)?.[1]?.replace(/^['"`]|['"`]$/g, '');
      if (!named) continue;
      // A bare relative name ("missing.h", "linux/foo.h") is an ordinary missing header.
      if (!named.startsWith('/') && !named.split('/').includes('..')) continue;
      const resolved = posixResolve(moduleDir, named);
      if (!roots.some((r) => resolved === r || resolved.startsWith(`${r}/`))) return named;
    }
  }
  return undefined;
}

function posixResolve(base: string, name: string): string {
  const parts: string[] = [];
  for (const part of (name.startsWith('/') ? name : `${base}/${name}`).split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}
