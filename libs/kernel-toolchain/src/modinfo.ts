// Reads a kernel module's .modinfo section (NUL-separated key=value strings: vermagic, name,
// license, livepatch, depends...) straight from the ELF file, so no modinfo binary (kmod) is needed.

export class ElfFormatError extends Error {}

interface Section {
  name: string;
  offset: number;
  size: number;
  type: number;
}

const SHT_NOBITS = 8;

/** The section headers of an ELF file (32 or 64 bit, either byte order). */
export function elfSections(buf: Buffer): Section[] {
  if (buf.length < 52 || buf.readUInt32BE(0) !== 0x7f454c46) throw new ElfFormatError('not an ELF file');
  const is64 = buf[4] === 2;
  if (!is64 && buf[4] !== 1) throw new ElfFormatError(`unknown ELF class ${buf[4]}`);
  const le = buf[5] === 1;
  if (!le && buf[5] !== 2) throw new ElfFormatError(`unknown ELF byte order ${buf[5]}`);
  if (is64 && buf.length < 64) throw new ElfFormatError('truncated ELF header');

  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const u64 = (o: number) => {
    const v = le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfFormatError('ELF offset out of range');
    return Number(v);
  };
  const addr = is64 ? u64 : u32;

  const shoff = addr(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  let shnum = u16(is64 ? 0x3c : 0x30);
  let shstrndx = u16(is64 ? 0x3e : 0x32);
  if (shoff === 0) throw new ElfFormatError('ELF file has no section headers');
  if (shentsize < (is64 ? 64 : 40)) throw new ElfFormatError(`bad section header size ${shentsize}`);

  const header = (i: number) => {
    const o = shoff + i * shentsize;
    if (o + shentsize > buf.length) throw new ElfFormatError('section header past the end of the file');
    return is64
      ? { nameOff: u32(o), type: u32(o + 4), offset: u64(o + 24), size: u64(o + 32), link: u32(o + 40) }
      : { nameOff: u32(o), type: u32(o + 4), offset: u32(o + 16), size: u32(o + 20), link: u32(o + 24) };
  };
  // Extended numbering: counts that do not fit live in section 0.
  if (shnum === 0) shnum = header(0).size;
  if (shstrndx === 0xffff) shstrndx = header(0).link;
  if (shnum > 65535 * 4) throw new ElfFormatError(`implausible section count ${shnum}`);
  if (shstrndx >= shnum) throw new ElfFormatError('no section name table');

  const names = header(shstrndx);
  if (names.offset + names.size > buf.length) throw new ElfFormatError('section name table past the end of the file');
  const nameAt = (off: number) => {
    if (off >= names.size) return '';
    const start = names.offset + off;
    const end = buf.indexOf(0, start);
    return buf.toString('latin1', start, end < 0 || end > names.offset + names.size ? names.offset + names.size : end);
  };

  const out: Section[] = [];
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    out.push({ name: nameAt(h.nameOff), offset: h.offset, size: h.size, type: h.type });
  }
  return out;
}

/** All key=value entries of .modinfo, in order (keys may repeat: alias, parm...). */
export function readModinfoEntries(buf: Buffer): [string, string][] {
  const section = elfSections(buf).find((s) => s.name === '.modinfo');
  if (!section) throw new ElfFormatError('no .modinfo section: not a kernel module');
  if (section.type === SHT_NOBITS || section.offset + section.size > buf.length) {
    throw new ElfFormatError('.modinfo section has no contents in the file');
  }
  const text = buf.toString('utf8', section.offset, section.offset + section.size);
  const out: [string, string][] = [];
  for (const entry of text.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) out.push([entry.slice(0, eq), entry.slice(eq + 1)]);
  }
  return out;
}

/** The first value of each .modinfo key (vermagic, name, license, livepatch, depends, ...). */
export function readModinfo(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of readModinfoEntries(buf)) if (!(key in out)) out[key] = value;
  return out;
}
