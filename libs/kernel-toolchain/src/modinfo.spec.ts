import { ElfFormatError, readModinfo, readModinfoEntries } from './modinfo';

/** A minimal relocatable ELF with the given sections (plus the null section and .shstrtab). */
function elf(sections: { name: string; data: Buffer }[], opts: { is64?: boolean; le?: boolean } = {}): Buffer {
  const is64 = opts.is64 ?? true;
  const le = opts.le ?? true;
  const ehsize = is64 ? 64 : 52;
  const shentsize = is64 ? 64 : 40;
  const names = ['', ...sections.map((s) => s.name), '.shstrtab'];
  const nameOffsets: number[] = [];
  let strtab = '';
  for (const n of names) {
    nameOffsets.push(strtab.length);
    strtab += `${n}\0`;
  }
  const all = [...sections.map((s) => s.data), Buffer.from(strtab, 'latin1')];
  const offsets: number[] = [];
  let cursor = ehsize;
  for (const d of all) {
    offsets.push(cursor);
    cursor += d.length;
  }
  const shoff = cursor;
  const shnum = all.length + 1;
  const buf = Buffer.alloc(shoff + shnum * shentsize);
  buf.write('\x7fELF', 0, 'latin1');
  buf[4] = is64 ? 2 : 1;
  buf[5] = le ? 1 : 2;
  buf[6] = 1;
  const w16 = (v: number, o: number) => (le ? buf.writeUInt16LE(v, o) : buf.writeUInt16BE(v, o));
  const w32 = (v: number, o: number) => (le ? buf.writeUInt32LE(v, o) : buf.writeUInt32BE(v, o));
  const w64 = (v: number, o: number) => (le ? buf.writeBigUInt64LE(BigInt(v), o) : buf.writeBigUInt64BE(BigInt(v), o));
  w16(1, 16); // ET_REL
  if (is64) {
    w64(shoff, 0x28);
    w16(shentsize, 0x3a);
    w16(shnum, 0x3c);
    w16(shnum - 1, 0x3e);
  } else {
    w32(shoff, 0x20);
    w16(shentsize, 0x2e);
    w16(shnum, 0x30);
    w16(shnum - 1, 0x32);
  }
  all.forEach((d, i) => {
    d.copy(buf, offsets[i]!);
    const o = shoff + (i + 1) * shentsize;
    w32(nameOffsets[i + 1]!, o);
    w32(i === all.length - 1 ? 3 : 1, o + 4); // SHT_STRTAB / SHT_PROGBITS
    if (is64) {
      w64(offsets[i]!, o + 24);
      w64(d.length, o + 32);
    } else {
      w32(offsets[i]!, o + 16);
      w32(d.length, o + 20);
    }
  });
  return buf;
}

const MODINFO = Buffer.from(
  'livepatch=Y\0license=GPL\0\0\0depends=\0retpoline=Y\0name=rbl_cmdline\0vermagic=6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions \0alias=a\0alias=b\0',
  'latin1',
);

describe('.modinfo from the ELF file', () => {
  it.each([
    ['64-bit little-endian', { is64: true, le: true }],
    ['32-bit big-endian', { is64: false, le: false }],
  ])('reads vermagic and friends (%s)', (_what, layout) => {
    const ko = elf(
      [
        { name: '.text', data: Buffer.from([0xc3]) },
        { name: '.modinfo', data: MODINFO },
      ],
      layout,
    );
    const info = readModinfo(ko);
    expect(info['vermagic']).toBe('6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ');
    expect(info['name']).toBe('rbl_cmdline');
    expect(info['livepatch']).toBe('Y');
    expect(info['license']).toBe('GPL');
    expect(info['depends']).toBe('');
    expect(readModinfoEntries(ko).filter(([k]) => k === 'alias')).toEqual([
      ['alias', 'a'],
      ['alias', 'b'],
    ]);
  });

  it('refuses what is not a kernel module', () => {
    expect(() => readModinfo(Buffer.from('#!/bin/sh\necho not elf\n'.padEnd(80, ' ')))).toThrow(ElfFormatError);
    expect(() => readModinfo(elf([{ name: '.text', data: Buffer.from([0xc3]) }]))).toThrow(/no \.modinfo section/);
  });

  it('refuses truncated files instead of reading past their end', () => {
    const ko = elf([{ name: '.modinfo', data: MODINFO }]);
    expect(() => readModinfo(ko.subarray(0, ko.length - 10))).toThrow(ElfFormatError);
  });
});
