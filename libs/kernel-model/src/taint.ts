/**
 * /proc/sys/kernel/tainted decoded, per the kernel's Documentation/admin-guide/tainted-kernels.rst
 * (letters as in "Tainted: G OE K", names as in kernel/panic.c's taint_flags table).
 */
export interface TaintFlag {
  bit: number;
  /** The letter the kernel prints in oopses and `dmesg` ("K"). */
  letter: string;
  /** Short name, stable for machines ("livepatch"). */
  name: string;
  description: string;
}

export const TAINT_FLAGS: readonly TaintFlag[] = [
  { bit: 0, letter: 'P', name: 'proprietary_module', description: 'proprietary module was loaded' },
  { bit: 1, letter: 'F', name: 'forced_module', description: 'module was force loaded' },
  { bit: 2, letter: 'S', name: 'cpu_out_of_spec', description: 'kernel running on an out of specification system' },
  { bit: 3, letter: 'R', name: 'forced_rmmod', description: 'module was force unloaded' },
  { bit: 4, letter: 'M', name: 'machine_check', description: 'processor reported a machine check exception' },
  { bit: 5, letter: 'B', name: 'bad_page', description: 'bad page referenced or unexpected page flags' },
  { bit: 6, letter: 'U', name: 'user', description: 'taint requested by userspace' },
  { bit: 7, letter: 'D', name: 'die', description: 'kernel died recently (oops or BUG)' },
  { bit: 8, letter: 'A', name: 'overridden_acpi_table', description: 'ACPI table overridden by user' },
  { bit: 9, letter: 'W', name: 'warn', description: 'kernel issued a warning' },
  { bit: 10, letter: 'C', name: 'crap', description: 'staging driver was loaded' },
  { bit: 11, letter: 'I', name: 'firmware_workaround', description: 'workaround for a platform firmware bug applied' },
  { bit: 12, letter: 'O', name: 'oot_module', description: 'externally built (out-of-tree) module was loaded' },
  { bit: 13, letter: 'E', name: 'unsigned_module', description: 'unsigned module was loaded' },
  { bit: 14, letter: 'L', name: 'soft_lockup', description: 'soft lockup occurred' },
  { bit: 15, letter: 'K', name: 'livepatch', description: 'kernel has been live patched' },
  { bit: 16, letter: 'X', name: 'aux', description: 'auxiliary taint, defined for and used by distros' },
  { bit: 17, letter: 'T', name: 'randstruct', description: 'kernel was built with the struct randomization plugin' },
  { bit: 18, letter: 'N', name: 'test', description: 'an in-kernel test has been run' },
  { bit: 19, letter: 'J', name: 'fwctl', description: 'userspace used a mutating debug operation in fwctl' },
];

export const TAINT_PROPRIETARY_MODULE = 1 << 0;
export const TAINT_OOT_MODULE = 1 << 12;
export const TAINT_UNSIGNED_MODULE = 1 << 13;
export const TAINT_LIVEPATCH = 1 << 15;

export interface DecodedTaint {
  value: number;
  flags: TaintFlag[];
  /** Set bits this table does not know (a newer kernel): reported, never dropped. */
  unknownBits: number[];
}

/** Parses the text of /proc/sys/kernel/tainted (a decimal number, possibly with a newline). */
export function parseTainted(text: string): number {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) {
    throw new Error(`tainted: expected a non-negative decimal number, got ${JSON.stringify(text)}`);
  }
  const value = Number(trimmed);
  if (!Number.isSafeInteger(value)) {
    throw new Error(`tainted: ${trimmed} is larger than this decoder handles`);
  }
  return value;
}

export function decodeTaint(value: number): DecodedTaint {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`tainted: expected a non-negative integer, got ${value}`);
  }
  const flags: TaintFlag[] = [];
  const unknownBits: number[] = [];
  // Bitwise operators truncate to 32 bits; walk the bits arithmetically instead.
  let rest = value;
  for (let bit = 0; rest > 0; bit += 1, rest = Math.floor(rest / 2)) {
    if (rest % 2 === 1) {
      const flag = TAINT_FLAGS.find((f) => f.bit === bit);
      if (flag) flags.push(flag);
      else unknownBits.push(bit);
    }
  }
  return { value, flags, unknownBits };
}

/** The flag names for HostFacts.taint_flags ("oot_module", "unsigned_module", "livepatch"); unknown bits as "bit<N>". */
export function taintFlagNames(value: number): string[] {
  const decoded = decodeTaint(value);
  return [...decoded.flags.map((f) => f.name), ...decoded.unknownBits.map((bit) => `bit${bit}`)];
}

/** The set letters, in bit order ("OEK" for 45056), as a sysadmin reads them in dmesg. */
export function taintLetters(value: number): string {
  return decodeTaint(value)
    .flags.map((f) => f.letter)
    .join('');
}
