// SubmitBuild's request, checked field by field before anything is queued. Pure: every rule is a
// unit test, and every refusal names the field and says why, in words a patch author can act on.
import { createHash } from 'node:crypto';
import { events, type builder } from '@rebootless/contracts';
import { patchedFunctionsOf, replaceFlagOf } from './klp-source';
import { moduleNameFor } from './module-name';

export interface SubmissionLimits {
  /** BUILDER_MAX_FIX_BYTES. */
  readonly maxFixBytes: number;
  readonly maxKernelReleases: number;
  /** Decides which release strings are well-formed (the toolchain's own rule). */
  readonly isKernelRelease: (release: string) => boolean;
}

export interface FieldProblem {
  readonly field: string;
  readonly why: string;
}

/** The request is wrong; `problems` names every field at fault (gRPC INVALID_ARGUMENT). */
export class InvalidSubmissionError extends Error {
  constructor(readonly problems: readonly FieldProblem[]) {
    super(problems.map((p) => `${p.field}: ${p.why}`).join('; '));
    this.name = 'InvalidSubmissionError';
  }
}

export type Fix =
  | {
      readonly kind: 'livepatch-source';
      readonly bytes: Buffer;
      readonly source: string;
      readonly functions: events.PatchedFunction[];
    }
  | { readonly kind: 'unified-diff'; readonly bytes: Buffer; readonly text: string };

export interface Submission {
  readonly patchName: string;
  /** Stable across versions; the patch name itself. */
  readonly patchId: string;
  readonly version: string;
  readonly description: string;
  readonly cves: events.Cve[];
  readonly severity: events.Severity;
  readonly replace: boolean;
  readonly kernelReleases: string[];
  readonly moduleName: string;
  readonly fix: Fix;
  readonly sourceKind: events.FixSourceKind;
  readonly sourceSha256: string;
}

/** Lower-case words joined by single hyphens: it becomes part of a kernel module name. */
export const PATCH_NAME_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
export const MAX_PATCH_NAME = 40;
/** Dotted numbers, compared number by number: agents refuse a version older than the one they run. */
export const VERSION_PATTERN = /^(?:0|[1-9][0-9]{0,5})(?:\.(?:0|[1-9][0-9]{0,5})){0,3}$/;
export const CVE_PATTERN = /^CVE-[0-9]{4}-[0-9]{4,7}$/;
const CVSS_PATTERN = /^(?:10\.0|[0-9]\.[0-9])$/;
export const MAX_DESCRIPTION = 4096;

const SEVERITY_NAMES: Record<number, string> = {
  [events.Severity.SEVERITY_LOW]: 'LOW',
  [events.Severity.SEVERITY_MEDIUM]: 'MEDIUM',
  [events.Severity.SEVERITY_HIGH]: 'HIGH',
  [events.Severity.SEVERITY_CRITICAL]: 'CRITICAL',
};

function quoted(text: string, max = 80): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

/** The highest severity of the CVEs a patch fixes; unspecified when it names none. */
export function highestSeverity(cves: readonly events.Cve[]): events.Severity {
  return cves.reduce<events.Severity>(
    (max, cve) => (cve.severity > max ? cve.severity : max),
    events.Severity.SEVERITY_UNSPECIFIED,
  );
}

export function validateSubmission(request: builder.SubmitBuildRequest, limits: SubmissionLimits): Submission {
  const problems: FieldProblem[] = [];
  const problem = (field: string, why: string) => problems.push({ field, why });

  const patchName = request.patchName ?? '';
  if (patchName === '') problem('patch_name', 'is empty: name the patch, e.g. "cve-2024-1086-nf-tables"');
  else if (patchName.length > MAX_PATCH_NAME)
    problem('patch_name', `has ${patchName.length} characters; at most ${MAX_PATCH_NAME}`);
  else if (!PATCH_NAME_PATTERN.test(patchName)) {
    problem(
      'patch_name',
      `${quoted(patchName)} must be lower-case letters and digits in words joined by single hyphens, e.g. "cve-2024-1086-nf-tables"`,
    );
  }

  const version = request.version ?? '';
  if (version === '') problem('version', 'is empty: give a version such as 1 or 1.0.2');
  else if (!VERSION_PATTERN.test(version)) {
    problem(
      'version',
      `${quoted(version)} must be 1 to 4 dot-separated numbers without leading zeros, e.g. 1.0.2 (agents compare versions to refuse downgrades)`,
    );
  }

  const description = request.description ?? '';
  if (Buffer.byteLength(description) > MAX_DESCRIPTION) {
    problem('description', `has ${Buffer.byteLength(description)} bytes; at most ${MAX_DESCRIPTION}`);
  }

  const cves = request.cves ?? [];
  const cveIds = new Set<string>();
  cves.forEach((cve, i) => {
    const field = `cves[${i}]`;
    if (!CVE_PATTERN.test(cve.id ?? ''))
      problem(`${field}.id`, `${quoted(cve.id ?? '')} is not a CVE id: expected CVE-YYYY-NNNN, e.g. CVE-2024-1086`);
    else if (cveIds.has(cve.id)) problem(`${field}.id`, `${cve.id} is listed twice`);
    cveIds.add(cve.id);
    if (SEVERITY_NAMES[cve.severity] === undefined)
      problem(`${field}.severity`, 'must be set: LOW, MEDIUM, HIGH or CRITICAL');
    if ((cve.cvssScore ?? '') !== '' && !CVSS_PATTERN.test(cve.cvssScore)) {
      problem(
        `${field}.cvss_score`,
        `${quoted(cve.cvssScore)} is not a CVSS base score: expected 0.0 to 10.0 with one decimal`,
      );
    }
  });

  const releases = request.kernelReleases ?? [];
  if (releases.length === 0)
    problem('kernel_releases', 'is empty: name at least one kernel release, e.g. 6.1.0-18-cloud-amd64');
  if (releases.length > limits.maxKernelReleases) {
    problem('kernel_releases', `names ${releases.length} releases; at most ${limits.maxKernelReleases} a build`);
  }
  const seenReleases = new Set<string>();
  releases.forEach((release, i) => {
    if (!limits.isKernelRelease(release)) {
      problem(
        `kernel_releases[${i}]`,
        `${quoted(release)} is not a kernel release: expected a Debian release such as 6.1.0-18-cloud-amd64 (as uname -r prints it)`,
      );
    } else if (seenReleases.has(release)) {
      problem(`kernel_releases[${i}]`, `${release} is listed twice`);
    }
    seenReleases.add(release);
  });

  const replace = request.replace ?? false;
  let fix: Fix | undefined;
  const source = request.livepatchModuleSource;
  const diff = request.unifiedDiff;
  if (source === undefined && diff === undefined) {
    problem('fix', 'no fix given: set livepatch_module_source (C against the klp API) or unified_diff');
  } else if (source !== undefined) {
    const bytes = Buffer.from(source);
    if (bytes.length === 0) problem('livepatch_module_source', 'is empty');
    else if (bytes.length > limits.maxFixBytes) {
      problem(
        'livepatch_module_source',
        `has ${bytes.length} bytes, over the limit of ${limits.maxFixBytes} bytes (BUILDER_MAX_FIX_BYTES)`,
      );
    } else if (bytes.includes(0)) {
      problem('livepatch_module_source', `has a NUL byte at offset ${bytes.indexOf(0)}: expected C source text`);
    } else {
      const text = bytes.toString('utf8');
      const functions = patchedFunctionsOf(text);
      const declared = replaceFlagOf(text);
      if (functions.length === 0) {
        problem(
          'livepatch_module_source',
          'names no function to replace: expected a struct klp_func with .old_name = "<function>"',
        );
      } else if (declared !== undefined && declared !== replace) {
        problem(
          'replace',
          `is ${replace} but the source's klp_patch has .replace = ${declared}: they must agree, the manifest states what the module does`,
        );
      } else {
        fix = { kind: 'livepatch-source', bytes, source: text, functions };
      }
    }
  } else if (diff !== undefined) {
    const bytes = Buffer.from(diff);
    if (bytes.length > limits.maxFixBytes) {
      problem(
        'unified_diff',
        `has ${bytes.length} bytes, over the limit of ${limits.maxFixBytes} bytes (BUILDER_MAX_FIX_BYTES)`,
      );
    } else {
      // Emptiness and form are the diff analysis's to judge, with line numbers.
      fix = { kind: 'unified-diff', bytes, text: bytes.toString('utf8') };
    }
  }

  if (problems.length > 0 || fix === undefined) throw new InvalidSubmissionError(problems);
  return {
    patchName,
    patchId: patchName,
    version,
    description,
    cves: cves.map((c) => ({ id: c.id, severity: c.severity, cvssScore: c.cvssScore ?? '' })),
    severity: highestSeverity(cves),
    replace,
    kernelReleases: [...releases],
    moduleName: moduleNameFor(patchName, version),
    fix,
    sourceKind:
      fix.kind === 'livepatch-source'
        ? events.FixSourceKind.FIX_SOURCE_KIND_LIVEPATCH_MODULE
        : events.FixSourceKind.FIX_SOURCE_KIND_UNIFIED_DIFF,
    sourceSha256: createHash('sha256').update(fix.bytes).digest('hex'),
  };
}
