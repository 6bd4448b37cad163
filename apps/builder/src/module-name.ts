import { createHash } from 'node:crypto';

/** The kernel keeps module names in 56 bytes with the terminating NUL (MODULE_NAME_LEN). */
export const MAX_MODULE_NAME = 55;

/**
 * The module a patch version is built as: `lp_<patch name>__v<version>`, with - and . as _.
 * Patch names never hold two hyphens in a row, so `__v` separates name and version without
 * ambiguity (`a-1` 2 and `a` 1.2 differ). Each version gets its own name, because a cumulative patch is loaded while the version it
 * replaces is still loaded, and the kernel refuses two modules of one name. A name that would
 * be too long keeps its start and ends with a short hash of the whole, so it stays unique.
 */
export function moduleNameFor(patchName: string, version: string): string {
  const name = `lp_${patchName}__v${version}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (name.length <= MAX_MODULE_NAME) return name;
  const hash = createHash('sha256').update(`${patchName}@${version}`).digest('hex').slice(0, 10);
  return `${name.slice(0, MAX_MODULE_NAME - hash.length - 1)}_${hash}`;
}
