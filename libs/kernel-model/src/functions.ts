import type { events } from '@rebootless/contracts';

/**
 * sysfs names a function directory "<name>,<sympos>" and shows sympos 0 (unique symbol) as 1, so
 * 0 and 1 are the same function. Compare functions only through this key.
 */
export function functionKey(fn: events.PatchedFunction): string {
  return `${fn.object}/${fn.name},${fn.sympos === 0 ? 1 : fn.sympos}`;
}

export function sameFunction(a: events.PatchedFunction, b: events.PatchedFunction): boolean {
  return functionKey(a) === functionKey(b);
}

/** The function as sysfs shows it (sympos 0 becomes 1). */
export function asSysfsFunction(fn: events.PatchedFunction): events.PatchedFunction {
  return { object: fn.object, name: fn.name, sympos: fn.sympos === 0 ? 1 : fn.sympos };
}

/** One order for function lists, whatever order a kernel or a manifest gave them in. */
export function sortFunctions(functions: events.PatchedFunction[]): events.PatchedFunction[] {
  return [...functions].sort(
    (a, b) => a.object.localeCompare(b.object) || a.name.localeCompare(b.name) || a.sympos - b.sympos,
  );
}
