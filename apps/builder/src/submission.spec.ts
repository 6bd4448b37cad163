import { events, type builder } from '@rebootless/contracts';
import { isValidKernelRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import { InvalidSubmissionError, validateSubmission, type SubmissionLimits } from './submission';

const limits: SubmissionLimits = {
  maxFixBytes: 1024 * 1024,
  maxKernelReleases: 4,
  isKernelRelease: isValidKernelRelease,
};
const source = Buffer.from(livepatchSample({ moduleName: 'lp_cmdline_demo__v1_0_0', replacementText: 'patched' }));

function request(overrides: Partial<builder.SubmitBuildRequest> = {}): builder.SubmitBuildRequest {
  return {
    patchName: 'cmdline-demo',
    version: '1.0.0',
    description: 'shows a fixed /proc/cmdline',
    cves: [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }],
    replace: false,
    kernelReleases: ['6.1.0-56-cloud-amd64', '6.1.0-55-cloud-amd64'],
    livepatchModuleSource: source,
    ...overrides,
  };
}

function withoutFix(): builder.SubmitBuildRequest {
  const req = request();
  delete req.livepatchModuleSource;
  return req;
}

function problemsOf(req: builder.SubmitBuildRequest, custom: SubmissionLimits = limits): string[] {
  try {
    validateSubmission(req, custom);
  } catch (error) {
    if (error instanceof InvalidSubmissionError) return error.problems.map((p) => `${p.field}: ${p.why}`);
    throw error;
  }
  throw new Error('expected the submission to be refused');
}

describe('validating a submission', () => {
  it('Given a complete livepatch request, When validated, Then it names the module, the functions, the severity and the source digest', () => {
    const submission = validateSubmission(request(), limits);

    expect(submission).toMatchObject({
      patchId: 'cmdline-demo',
      moduleName: 'lp_cmdline_demo__v1_0_0',
      severity: events.Severity.SEVERITY_HIGH,
      sourceKind: events.FixSourceKind.FIX_SOURCE_KIND_LIVEPATCH_MODULE,
      kernelReleases: ['6.1.0-56-cloud-amd64', '6.1.0-55-cloud-amd64'],
    });
    expect(submission.fix).toMatchObject({
      kind: 'livepatch-source',
      functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }],
    });
    expect(submission.sourceSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    ['', 'patch_name: is empty: name the patch, e.g. "cve-2024-1086-nf-tables"'],
    [
      'CVE_2024',
      'patch_name: "CVE_2024" must be lower-case letters and digits in words joined by single hyphens, e.g. "cve-2024-1086-nf-tables"',
    ],
    [
      'a--b',
      'patch_name: "a--b" must be lower-case letters and digits in words joined by single hyphens, e.g. "cve-2024-1086-nf-tables"',
    ],
    [
      '../etc',
      'patch_name: "../etc" must be lower-case letters and digits in words joined by single hyphens, e.g. "cve-2024-1086-nf-tables"',
    ],
  ])('Given patch name %j, When validated, Then %s', (patchName, expected) => {
    expect(problemsOf(request({ patchName }))).toEqual([expected]);
  });

  it.each([
    ['', 'version: is empty: give a version such as 1 or 1.0.2'],
    [
      'v1',
      'version: "v1" must be 1 to 4 dot-separated numbers without leading zeros, e.g. 1.0.2 (agents compare versions to refuse downgrades)',
    ],
    [
      '01.2',
      'version: "01.2" must be 1 to 4 dot-separated numbers without leading zeros, e.g. 1.0.2 (agents compare versions to refuse downgrades)',
    ],
  ])('Given version %j, When validated, Then %s', (version, expected) => {
    expect(problemsOf(request({ version }))).toEqual([expected]);
  });

  it('Given no kernel release, When validated, Then kernel_releases is named', () => {
    expect(problemsOf(request({ kernelReleases: [] }))).toEqual([
      'kernel_releases: is empty: name at least one kernel release, e.g. 6.1.0-18-cloud-amd64',
    ]);
  });

  it('Given a malformed and a repeated release, When validated, Then each is named by its index', () => {
    expect(
      problemsOf(
        request({
          kernelReleases: [
            '6.1.0-56-cloud-amd64',
            '6.1.0-56-cloud-amd64',
            '../../6.1',
            '6.1.0-56-cloud-amd64; rm -rf /',
          ],
        }),
      ),
    ).toEqual([
      'kernel_releases[1]: 6.1.0-56-cloud-amd64 is listed twice',
      'kernel_releases[2]: "../../6.1" is not a kernel release: expected a Debian release such as 6.1.0-18-cloud-amd64 (as uname -r prints it)',
      'kernel_releases[3]: "6.1.0-56-cloud-amd64; rm -rf /" is not a kernel release: expected a Debian release such as 6.1.0-18-cloud-amd64 (as uname -r prints it)',
    ]);
  });

  it('Given more releases than a build may target, When validated, Then the limit is named', () => {
    const releases = ['6.1.0-51', '6.1.0-52', '6.1.0-53', '6.1.0-54', '6.1.0-55'].map((r) => `${r}-cloud-amd64`);

    expect(problemsOf(request({ kernelReleases: releases }))).toEqual([
      'kernel_releases: names 5 releases; at most 4 a build',
    ]);
  });

  it('Given no fix, When validated, Then it says which two fields may carry one', () => {
    expect(problemsOf(withoutFix())).toEqual([
      'fix: no fix given: set livepatch_module_source (C against the klp API) or unified_diff',
    ]);
  });

  it('Given a source one byte over the limit, When validated, Then the size, the limit and the setting are named', () => {
    const big = Buffer.alloc(1024 * 1024 + 1, 0x20);

    expect(problemsOf(request({ livepatchModuleSource: big }))).toEqual([
      'livepatch_module_source: has 1048577 bytes, over the limit of 1048576 bytes (BUILDER_MAX_FIX_BYTES)',
    ]);
  });

  it('Given a diff over the limit, When validated, Then unified_diff is named', () => {
    expect(
      problemsOf({ ...withoutFix(), unifiedDiff: Buffer.alloc(2048, 0x2b) }, { ...limits, maxFixBytes: 1024 }),
    ).toEqual(['unified_diff: has 2048 bytes, over the limit of 1024 bytes (BUILDER_MAX_FIX_BYTES)']);
  });

  it('Given C with no klp_func, When validated, Then the source is refused for naming no function', () => {
    expect(problemsOf(request({ livepatchModuleSource: Buffer.from('int main(void) { return 0; }') }))).toEqual([
      'livepatch_module_source: names no function to replace: expected a struct klp_func with .old_name = "<function>"',
    ]);
  });

  it('Given replace requested but a source without .replace = true, When validated, Then the disagreement is named', () => {
    expect(problemsOf(request({ replace: true }))).toEqual([
      "replace: is true but the source's klp_patch has .replace = false: they must agree, the manifest states what the module does",
    ]);
  });

  it('Given bad CVEs, When validated, Then each field of each CVE is named', () => {
    const cves = [
      { id: 'CVE-24-1', severity: events.Severity.SEVERITY_LOW, cvssScore: '' },
      { id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_UNSPECIFIED, cvssScore: '11' },
      { id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_LOW, cvssScore: '' },
    ];

    expect(problemsOf(request({ cves }))).toEqual([
      'cves[0].id: "CVE-24-1" is not a CVE id: expected CVE-YYYY-NNNN, e.g. CVE-2024-1086',
      'cves[1].severity: must be set: LOW, MEDIUM, HIGH or CRITICAL',
      'cves[1].cvss_score: "11" is not a CVSS base score: expected 0.0 to 10.0 with one decimal',
      'cves[2].id: CVE-2024-1086 is listed twice',
    ]);
  });

  it('Given several bad fields, When validated, Then one error lists them all', () => {
    expect(() => validateSubmission(request({ patchName: '', version: '' }), limits)).toThrow(
      'patch_name: is empty: name the patch, e.g. "cve-2024-1086-nf-tables"; version: is empty: give a version such as 1 or 1.0.2',
    );
  });
});
