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
