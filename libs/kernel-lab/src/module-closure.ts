// Which kernel modules the guest must insmod, and in which order. Debian's image package ships no
// modules.dep (depmod writes it at install time), so the graph comes from each module's own
// `depends=` modinfo, which modpost derives from the same symbol references depmod resolves.

/** A module as found in the image: its name as the kernel spells it (`-` → `_`) and what it needs. */
export interface ModuleNode {
  name: string;
  /** Path relative to lib/modules/<release>/. */
  file: string;
  depends: string[];
}

/** The kernel spells module names with underscores whatever the file name says (virtio-rng.ko is virtio_rng). */
export function canonicalModuleName(name: string): string {
  return name.replace(/-/g, '_');
}

/** `virtio,virtio_ring` → ['virtio', 'virtio_ring']; an empty field → []. */
export function parseModinfoDepends(field: string | undefined): string[] {
  if (!field) return [];
  return field
    .split(',')
    .map((d) => canonicalModuleName(d.trim()))
    .filter((d) => d.length > 0);
}

/** Module names listed in modules.builtin (`kernel/drivers/virtio/virtio.ko` lines). */
export function parseModulesBuiltin(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const base = line.trim().split('/').pop();
    const m = base ? /^(.+)\.ko(?:\.[a-z]+)?$/.exec(base) : null;
    if (m) out.add(canonicalModuleName(m[1]!));
  }
  return out;
}

/**
 * The modules to load for `wanted`, dependencies first, each once. Built-in ones are skipped (they
 * are already there); a module that is neither present nor built in, or a dependency cycle, throws.
 */
export function moduleLoadOrder(
  modules: Pick<ReadonlyMap<string, ModuleNode>, 'get'>,
  wanted: readonly string[],
  builtin: ReadonlySet<string> = new Set(),
): ModuleNode[] {
  const order: ModuleNode[] = [];
  const done = new Set<string>();
  const visiting: string[] = [];
  const visit = (raw: string, neededBy: string | undefined) => {
    const name = canonicalModuleName(raw);
    if (done.has(name) || builtin.has(name)) return;
    if (visiting.includes(name)) {
      throw new Error(`module dependency cycle: ${[...visiting, name].join(' -> ')}`);
    }
    const node = modules.get(name);
    if (!node) {
      throw new Error(
        `module ${name}${neededBy ? ` (needed by ${neededBy})` : ''} is neither in the image nor built into the kernel`,
      );
    }
    visiting.push(name);
    for (const dep of node.depends) visit(dep, name);
    visiting.pop();
    done.add(name);
    order.push(node);
  };
  for (const name of wanted) visit(name, undefined);
  return order;
}
