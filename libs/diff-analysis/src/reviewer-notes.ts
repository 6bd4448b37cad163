// The words of the review: for each rule, what the diff does (the headline, also used in the
// summary) and why that matters for a live patch and what to do instead.

export type FindingSeverity = 'refuse' | 'warn';

export interface Finding {
  severity: FindingSeverity;
  /** e.g. 'struct-layout', 'global-data', 'init-exit', 'assembly', 'vdso', 'header-ripple', 'static-local'. */
  rule: string;
  file: string;
  /** Line in the file (the new version; the old one for removed lines). */
  line?: number;
  /** Line in the diff. */
  diffLine?: number;
  /** Plain sentences: what the diff does, why a live patch cannot do it safely, what to do instead. */
  explanation: string;
}

/** A finding with its headline kept apart, for the summary. */
export interface Note {
  finding: Finding;
  headline: string;
}

interface Where {
  file: string;
  line?: number;
  diffLine?: number;
}

function note(severity: FindingSeverity, rule: string, where: Where, headline: string, why: string): Note {
  const finding: Finding = { severity, rule, file: where.file, explanation: `${headline}. ${why}` };
  if (where.line !== undefined) finding.line = where.line;
  if (where.diffLine !== undefined) finding.diffLine = where.diffLine;
  return { finding, headline };
}

/** "a", "a and b", "a, b and c". */
export function listed(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

const plural = (n: number, one: string, many: string) => (n === 1 ? one : many);

const REBOOT_OR_SHADOW =
  'Ship this fix with a reboot, or keep the existing data as it is and attach the new state with shadow variables (klp_shadow_*)';

export const notes = {
  structLayout(where: Where, aggregate: string, change: string, inHeader: boolean): Note {
    return note(
      'refuse',
      'struct-layout',
      where,
      `${where.file} changes the layout of ${aggregate} (${change})`,
      (inHeader
        ? 'It is declared in a header: every file that includes it, every module built against it and all the code already running use the old layout'
        : 'Code already running and other modules see the old layout') +
        `, so a live patch cannot change it safely. ${REBOOT_OR_SHADOW}.`,
    );
  },

  typeChanged(where: Where, name: string): Note {
    return note(
      'refuse',
      'struct-layout',
      where,
      `${where.file} changes the type ${name}`,
      `Every struct that contains it and every function that passes it around is compiled with the old definition in the running kernel, so a live patch cannot change it safely. ${REBOOT_OR_SHADOW}.`,
    );
  },

  globalDataChanged(where: Where, name: string, what: 'initialiser' | 'definition'): Note {
    return note(
      'refuse',
      'global-data',
      where,
      `${where.file} changes the ${what === 'initialiser' ? 'initial value' : 'definition'} of the global ${name}`,
      'A live patch replaces functions, not data: the running kernel keeps the old ' +
        (what === 'initialiser' ? 'value' : 'object') +
        ' in memory, and patched and unpatched code would disagree about it. If the new value must take effect, have a patched function set it (or keep it in a shadow variable, klp_shadow_*), or ship the fix with a reboot.',
    );
  },

  globalDataAdded(where: Where, name: string): Note {
    return note(
      'warn',
      'global-data',
      where,
      `${where.file} adds a new global, ${name}`,
      'It will live in the patch module and start from its initial value when the patch is loaded; only patched code sees it. Check that nothing expects it to have been set up at boot.',
    );
  },

  globalDataRemoved(where: Where, name: string): Note {
    return note(
      'warn',
      'global-data',
      where,
      `${where.file} removes the global ${name}`,
      'The running kernel keeps it, and unpatched code goes on using it; the live patch can only make its own functions stop using it. Check that this is enough for the fix.',
    );
  },

  initFunction(where: Where, fn: string, marker: string): Note {
    const exit = marker.includes('exit');
    return note(
      'refuse',
      'init-exit',
      where,
      `${where.file} changes ${fn}(), which is marked ${marker}`,
      exit
        ? 'Exit code runs only when its module is unloaded (and is discarded entirely for built-in code), so a live patch cannot reliably replace it. Ship this fix with a reboot, or with a module reload where that is possible.'
        : 'Init code runs once, at boot or when its module loads, and its memory is freed afterwards, so a live patch cannot change what it already did. If the fix matters after boot, patch the runtime code that uses what it set up; otherwise ship it with a reboot.',
    );
  },

  initData(where: Where, name: string, marker: string): Note {
    return note(
      'refuse',
      'init-exit',
      where,
      `${where.file} changes ${name}, which is marked ${marker}`,
      'That data is used only while the kernel or its module starts and is freed afterwards, so on a running host the change would never be seen. Ship this fix with a reboot.',
    );
  },

  initRegistration(where: Where, call: string): Note {
    return note(
      'refuse',
      'init-exit',
      where,
      `${where.file} changes ${call}, which registers code to run at boot or module load`,
      'That moment has passed on a running host, so a live patch cannot change what runs then. Ship this fix with a reboot.',
    );
  },

  bootCode(where: Where): Note {
    return note(
      'refuse',
      'init-exit',
      where,
      `${where.file} is boot-stage code (decompressor, boot glue or device tree)`,
      'It has done its work before the running kernel started, so a live patch cannot change it. Ship this fix with a reboot.',
    );
  },

  notTraceable(where: Where, fn: string, marker: string): Note {
    return note(
      'refuse',
      'notrace',
      where,
      `${where.file} changes ${fn}(), which is marked ${marker}`,
      'Live patching redirects a function through its ftrace entry hook, and such a function has none, so there is no safe way to replace it. Patch its callers instead, or ship the fix with a reboot.',
    );
  },

  inlineFunction(where: Where, fn: string): Note {
    return note(
      'warn',
      'inline-function',
      where,
      `${where.file} changes ${fn}(), which is inline`,
      'Its body is copied into each caller, so every caller in this file changes too and has to be part of the patch, although the diff does not name them. The compile stage finds them; check that the build result lists them.',
    );
  },

  signatureChanged(where: Where, fn: string, isStatic: boolean): Note {
    return note(
      isStatic ? 'warn' : 'refuse',
      'function-signature',
      where,
      `${where.file} changes the signature of ${fn}()`,
      isStatic
        ? 'It is static, so only this file calls it: that is fine as long as every caller changes with it and is patched too. Check that none is left out.'
        : 'Callers elsewhere in the kernel and in modules are not patched and would keep calling it the old way. Keep the old signature and add a new function for the new behaviour, or ship the fix with a reboot.',
    );
  },

  staticLocal(where: Where, fn: string, variable: string, kind: 'adds' | 'changes'): Note {
    return note(
      'refuse',
      'static-local',
      where,
      `${where.file} ${kind} the static variable ${variable} inside ${fn}()`,
      'A static local keeps its value for the life of the kernel; the patched function would get its own fresh copy, starting from its initial value, while the state held by the original copy is lost to it. Keep that state in a shadow variable (klp_shadow_get_or_alloc) or in data that already exists, or ship the fix with a reboot.',
    );
  },

  headerRipple(where: Where, subjects: string[]): Note {
    return note(
      'warn',
      'header-ripple',
      where,
      `${where.file} is a header, and the diff changes ${listed(subjects)} in it`,
      'Every file that includes it is compiled anew, so every function that uses what changed changes too and has to be part of the patch; the diff names only some of them. The compile stage finds the rest: expect a larger patch, and check that no changed value crosses into code the patch does not replace.',
    );
  },

  macroChanged(where: Where, macros: string[]): Note {
    return note(
      'warn',
      'macro',
      where,
      `${where.file} changes ${plural(macros.length, 'the macro', 'the macros')} ${listed(macros)}`,
      'Every function in this file that uses it changes as well, although the diff does not name them. The compile stage finds them; check that the build result lists them.',
    );
  },

  enumValues(where: Where, name: string, values: string[]): Note {
    return note(
      'warn',
      'enum-values',
      where,
      `${where.file} changes ${name}${values.length ? ` (${listed(values)})` : ''}`,
      'Enum values are compiled into code that is already running. A new value at the end is usually safe if unpatched code never meets it; renumbering existing values is not. Check which it is.',
    );
  },

  symbolExport(where: Where, call: string): Note {
    return note(
      'warn',
      'symbol-export',
      where,
      `${where.file} changes ${call}`,
      "A live patch cannot change the running kernel's table of exported symbols: a module that needs a new export will not load, and a removed export stays until the next reboot.",
    );
  },

  moduleMetadata(where: Where, call: string): Note {
    return note(
      'warn',
      'module-metadata',
      where,
      `${where.file} changes ${call}`,
      'Module parameters and metadata are registered when the module loads; a live patch cannot change them on a running host, so this part of the diff will have no effect until the module is reloaded or the host rebooted.',
    );
  },

  fileScopeMacro(where: Where, call: string): Note {
    return note(
      'warn',
      'file-scope-macro',
      where,
      `${where.file} changes ${call} at file scope`,
      'rebootless cannot tell what it expands to. Check by hand that it does not define or register data, which a live patch cannot change.',
    );
  },

  topLevelAssembly(where: Where): Note {
    return note(
      'refuse',
      'assembly',
      where,
      `${where.file} changes assembly written at file scope (asm(...))`,
      'Live patching replaces C functions through their ftrace entry hook; code written in assembly has no such hook. Ship this fix with a reboot.',
    );
  },

  unknownContext(where: Where, lines: number[]): Note {
    return note(
      'warn',
      'unknown-context',
      where,
      `${where.file}: the ${plural(lines.length, 'change', 'changes')} at ${plural(lines.length, 'line', 'lines')} ${listed(lines.map(String))} could not be placed in a function or declaration, so ${plural(lines.length, 'it was', 'they were')} not checked`,
      'The hunk shows neither the start of the enclosing definition nor a function name in its @@ header. Produce the diff with "git diff" or "diff -up" so that each hunk names its function, or check these lines by hand.',
    );
  },

  assembly(where: Where): Note {
    const linkerScript = /\.lds\.S$/.test(where.file);
    return note(
      'refuse',
      'assembly',
      where,
      linkerScript ? `${where.file} is a linker script` : `${where.file} is an assembly file`,
      linkerScript
        ? 'It shapes the kernel image when it is linked and has no effect on a kernel that is already running. Ship this fix with a reboot.'
        : 'Live patching replaces C functions through their ftrace entry hook; hand-written assembly (entry code, context switches, low-level helpers) has no such hook and often runs where redirection is unsafe. Ship this fix with a reboot.',
    );
  },

  library(where: Where): Note {
    return note(
      'refuse',
      'library',
      where,
      `${where.file} is in lib/, the kernel's shared helper library`,
      "The kernel's own live-patch builder (klp-build) refuses lib/: its helpers are also linked into boot and decompression code and called from contexts where redirecting a function is unsafe. Ship this fix with a reboot.",
    );
  },

  vdso(where: Where): Note {
    return note(
      'refuse',
      'vdso',
      where,
      `${where.file} is part of the vDSO, the code the kernel maps into every user process`,
      'Running processes keep the copy they mapped when they started, and the vDSO image is not made of patchable kernel functions, so a live patch cannot change it. Ship this fix with a reboot; processes pick it up as they restart.',
    );
  },

  newFile(where: Where): Note {
    return note(
      'warn',
      'new-file',
      where,
      `${where.file} is a new file`,
      'A live patch cannot add a source file to the running kernel: its functions can only travel inside the patch module and be reached from patched functions, and anything it would register when loaded (init calls, sysfs entries, module parameters) will not happen. Check that the fix works that way, or ship it with a reboot.',
    );
  },

  deletedFile(where: Where): Note {
    return note(
      'warn',
      'deleted-file',
      where,
      `${where.file} is deleted`,
      'The running kernel keeps its code and data; a live patch can only make the patched functions stop using them. Check that this is enough for the fix.',
    );
  },

  renamedFile(where: Where, from: string): Note {
    return note(
      'warn',
      'renamed-file',
      where,
      `${from} is renamed to ${where.file}`,
      'The running kernel does not care about source file names, but if the code moves into another module or out of one, the patch must still target the object where it runs today.',
    );
  },

  outsideKernel(where: Where): Note {
    return note(
      'warn',
      'non-c-file',
      where,
      `${where.file} is not part of the running kernel (documentation, tools or build scripts)`,
      'The live patch leaves it out; the change reaches hosts only with the next kernel package.',
    );
  },

  notLivePatchable(where: Where, what: string): Note {
    return note(
      'refuse',
      'non-c-file',
      where,
      `${where.file} is ${what}`,
      'A live patch can only replace C functions of the running kernel, so this change would not take effect. Leave it out of the live patch and ship it with the next kernel, or ship the whole fix with a reboot.',
    );
  },

  nothingToPatch(where: Where): Note {
    return note(
      'refuse',
      'nothing-to-patch',
      where,
      'The diff changes no kernel code: only comments, blank lines or files outside the kernel',
      'There is nothing for a live patch to replace, so there is nothing to build.',
    );
  },
};
