import { parseDepends, parseStanzas } from './apt';
import { hostRequirements, rewriteAbsoluteInclude } from './headers-cache';

// Shaped like `apt-cache show --no-all-versions` of bookworm's packages (fields trimmed).
const SHOW = `Package: linux-headers-6.12.117+deb12-cloud-amd64
Source: linux-6.12
Version: 6.12.117-1~deb12u1
Depends: linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-image-6.12.117+deb12-cloud-amd64 (= 6.12.117-1~deb12u1) | linux-image-6.12.117+deb12-cloud-amd64-unsigned (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12, gcc-12
Description: Header files for Linux 6.12.117+deb12-cloud-amd64
 This package provides the architecture-specific kernel header files.
 .
 More text.
Filename: pool/updates/main/l/linux-6.12/linux-headers-6.12.117+deb12-cloud-amd64_6.12.117-1~deb12u1_amd64.deb
SHA256: 00aa

Package: linux-kbuild-6.12.117+deb12
Version: 6.12.117-1~deb12u1
Depends: libc6 (>= 2.34), libelf1 (>= 0.144), libssl3 (>= 3.0.0), zlib1g (>= 1:1.2.3.3), pahole
Filename: pool/updates/main/l/linux-6.12/linux-kbuild-6.12.117+deb12_6.12.117-1~deb12u1_amd64.deb
`;

describe('apt-cache show parsing', () => {
  it('splits stanzas and keeps continuation lines', () => {
    const stanzas = parseStanzas(SHOW);
    expect(stanzas).toHaveLength(2);
    expect(stanzas[0]!['Package']).toBe('linux-headers-6.12.117+deb12-cloud-amd64');
    expect(stanzas[0]!['Version']).toBe('6.12.117-1~deb12u1');
    expect(stanzas[0]!['Description']).toContain('\nMore text.');
    expect(stanzas[0]!['SHA256']).toBe('00aa');
    expect(stanzas[1]!['Filename']).toMatch(/linux-kbuild-6\.12\.117\+deb12_6\.12\.117-1~deb12u1_amd64\.deb$/);
  });

  it('parses Depends into groups of alternatives with their constraints', () => {
    const deps = parseDepends(parseStanzas(SHOW)[0]!['Depends']);
    expect(deps).toHaveLength(5);
    expect(deps[0]).toEqual([{ name: 'linux-base', op: '>=', version: '4.12~' }]);
    expect(deps[1]).toEqual([{ name: 'linux-headers-6.12.117+deb12-common', op: '=', version: '6.12.117-1~deb12u1' }]);
    expect(deps[2]!.map((d) => d.name)).toEqual([
      'linux-image-6.12.117+deb12-cloud-amd64',
      'linux-image-6.12.117+deb12-cloud-amd64-unsigned',
    ]);
    expect(deps[3]).toEqual([{ name: 'linux-kbuild-6.12.117+deb12' }]);
    expect(parseDepends('perl:any, python3:any (>= 3.9)')).toEqual([
      [{ name: 'perl' }],
      [{ name: 'python3', op: '>=', version: '3.9' }],
    ]);
    expect(parseDepends(undefined)).toEqual([]);
  });

  it('derives the host packages the kbuild tools need, leaving out the kernel trees themselves', () => {
    expect(hostRequirements(parseStanzas(SHOW))).toEqual(['gcc-12', 'libc6', 'libelf1', 'libssl3', 'pahole', 'zlib1g']);
    expect(hostRequirements([{ Depends: 'a | b, linux-compiler-gcc-12-x86, c' }])).toEqual(['a | b', 'c']);
  });
});

describe("the flavour Makefile's absolute include", () => {
  it('is rewritten relative to the build dir (make -C runs there)', () => {
    expect(rewriteAbsoluteInclude('include /usr/src/linux-headers-6.1.0-56-common/Makefile\n')).toEqual({
      text: 'include ../linux-headers-6.1.0-56-common/Makefile\n',
      target: '../linux-headers-6.1.0-56-common/Makefile',
    });
    expect(rewriteAbsoluteInclude('include /usr/src/linux-headers-6.12.117+deb12-common/Makefile').text).toBe(
      'include ../linux-headers-6.12.117+deb12-common/Makefile',
    );
  });

  it('leaves other Makefiles alone', () => {
    expect(rewriteAbsoluteInclude('obj-m := x.o\n')).toEqual({ text: 'obj-m := x.o\n' });
    expect(rewriteAbsoluteInclude('include ../x/Makefile\n')).toEqual({ text: 'include ../x/Makefile\n' });
  });
});
