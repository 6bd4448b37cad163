import { extractDiagnostics, isErrorDiagnostic, isWarningDiagnostic, missingTool, relativizeLine } from './diagnostics';

const WORK = '/tmp/rbl-build-x1Y2z3';
const CACHE = '/root/.cache/rebootless/kernels/releases/6.1.0-56-cloud-amd64/usr/src';
const BUILD = `${CACHE}/linux-headers-6.1.0-56-cloud-amd64`;
const COMMON = `${CACHE}/linux-headers-6.1.0-56-common`;

// What `make -C <build> M=<work> modules` printed for a broken module (stdout and stderr interleaved).
const BROKEN = [
  `make: Entering directory '${BUILD}'`,
  `  CC [M]  ${WORK}/broken.o`,
  `In file included from ${COMMON}/include/linux/module.h:13,`,
  `                 from ${WORK}/broken.c:1:`,
  `${COMMON}/include/linux/stat.h:7:10: fatal error: asm/nonexistent.h: No such file or directory`,
  `${WORK}/broken.c: In function 'b_init':`,
  `${WORK}/broken.c:4:17: error: 'undefined_thing' undeclared (first use in this function)`,
  `    4 |         int x = undefined_thing + 1;`,
  `      |                 ^~~~~~~~~~~~~~~`,
  `${WORK}/broken.c:4:17: note: each undeclared identifier is reported only once for each function it appears in`,
  `${WORK}/broken.c:5:17: error: expected ';' before '}' token`,
  `${WORK}/broken.c:9:5: warning: unused variable 'y' [-Wunused-variable]`,
  `make[1]: *** [${COMMON}/scripts/Makefile.build:255: ${WORK}/broken.o] Error 1`,
  `make: *** [../linux-headers-6.1.0-56-common/Makefile:2065: ${WORK}] Error 2`,
  `make: Leaving directory '${BUILD}'`,
];

describe('compiler diagnostics', () => {
  const lines = BROKEN.map((l) => relativizeLine(l, WORK, [BUILD, COMMON]));
  const diagnostics = extractDiagnostics(lines);

  it("keeps gcc's own lines, with paths relative to the module and to the kernel tree", () => {
    expect(diagnostics).toEqual([
      'In file included from include/linux/module.h:13,',
      '                 from broken.c:1:',
      'include/linux/stat.h:7:10: fatal error: asm/nonexistent.h: No such file or directory',
      "broken.c: In function 'b_init':",
      "broken.c:4:17: error: 'undefined_thing' undeclared (first use in this function)",
      'broken.c:4:17: note: each undeclared identifier is reported only once for each function it appears in',
      "broken.c:5:17: error: expected ';' before '}' token",
      "broken.c:9:5: warning: unused variable 'y' [-Wunused-variable]",
    ]);
  });

  it("drops make's noise and gcc's source excerpts, and never shows the builder's paths", () => {
    for (const line of diagnostics) {
      expect(line).not.toMatch(/make|Error [0-9]|\^~|CC \[M\]/);
      expect(line).not.toContain('/tmp/');
      expect(line).not.toContain('/root/');
    }
  });

  it('tells errors from warnings', () => {
    expect(diagnostics.filter(isErrorDiagnostic)).toHaveLength(3);
    expect(diagnostics.filter(isWarningDiagnostic)).toEqual([
      "broken.c:9:5: warning: unused variable 'y' [-Wunused-variable]",
    ]);
  });

  it("keeps modpost's errors about the module", () => {
    const out = extractDiagnostics(
      [
        `  MODPOST ${WORK}/Module.symvers`,
        `ERROR: modpost: "no_such_fn" [${WORK}/undef.ko] undefined!`,
        'make[2]: *** [x] Error 1',
      ].map((l) => relativizeLine(l, WORK, [BUILD])),
    );
    expect(out).toEqual(['ERROR: modpost: "no_such_fn" [undef.ko] undefined!']);
    expect(isErrorDiagnostic(out[0]!)).toBe(true);
  });

  it('drops a trailing context line that introduces nothing', () => {
    expect(extractDiagnostics(["x.c: In function 'f':"])).toEqual([]);
  });

  it('caps the list', () => {
    const many = Array.from({ length: 500 }, (_, i) => `x.c:${i + 1}:1: error: boom ${i}`);
    expect(extractDiagnostics(many, 100)).toHaveLength(100);
  });
});

describe('missing tools in the build output', () => {
  it.each([
    ['/bin/sh: 1: pahole: not found', 'pahole'],
    ['/bin/sh: line 1: bc: command not found', 'bc'],
    ['make[2]: x86_64-linux-gnu-gcc-12: No such file or directory', 'x86_64-linux-gnu-gcc-12'],
    [
      'scripts/basic/fixdep: error while loading shared libraries: libelf.so.1: cannot open shared object file',
      'libelf.so.1',
    ],
  ])('%s names %s', (line, tool) => {
    expect(missingTool(['  CC [M]  x.o', line])).toBe(tool);
  });

  it('says nothing when nothing is missing', () => {
    expect(missingTool(["x.c:1:1: error: expected ';'"])).toBeUndefined();
  });
});
