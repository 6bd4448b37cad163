import { num, numOrNull } from '../database';

// The catalog read model's rows: published patch versions and the builds behind them.

const json = (v: unknown) => JSON.stringify(v);
const flag = (b: boolean) => (b ? 1 : 0);

export interface FunctionRef {
  object: string;
  name: string;
  sympos: number;
}

export interface CveRow {
  id: string;
  severity: number;
  cvssScore: string;
}

export interface ArtifactRow {
  kernelRelease: string;
  artifactDigest: string;
  vermagic: string;
  moduleName: string;
  functions: FunctionRef[];
}

export interface PatchRow {
  patchId: string;
  version: string;
  patchName: string;
  description: string;
  cves: CveRow[];
  severity: number;
  replace: boolean;
  buildId: string;
  artifacts: ArtifactRow[];
  publishedAt: number;
  publishedEventId: string;
  retracted: boolean;
  retractionReason: string;
  retractedAt: number | null;
}

export interface BuildRow {
  buildId: string;
  patchId: string;
  version: string;
  patchName: string;
  description: string;
  cves: CveRow[];
  replace: boolean;
  kernelReleases: string[];
  requestedAt: number;
  artifacts: ArtifactRow[];
  failures: { kernelRelease: string; stage: string; code: string }[];
}

export const PATCH_COLUMNS = [
  'patch_id',
  'version',
  'patch_name',
  'description',
  'cves',
  'severity',
  'replace_flag',
  'build_id',
  'artifacts',
  'published_at',
  'published_event_id',
  'retracted',
  'retraction_reason',
  'retracted_at',
];
export const patchValues = (p: PatchRow) => [
  p.patchId,
  p.version,
  p.patchName,
  p.description,
  json(p.cves),
  p.severity,
  flag(p.replace),
  p.buildId,
  json(p.artifacts),
  p.publishedAt,
  p.publishedEventId,
  flag(p.retracted),
  p.retractionReason,
  p.retractedAt,
];
export function patchFromRow(r: Record<string, unknown>): PatchRow {
  return {
    patchId: String(r['patch_id']),
    version: String(r['version']),
    patchName: String(r['patch_name']),
    description: String(r['description']),
    cves: JSON.parse(String(r['cves'])) as CveRow[],
    severity: num(r['severity']),
    replace: num(r['replace_flag']) === 1,
    buildId: String(r['build_id']),
    artifacts: JSON.parse(String(r['artifacts'])) as ArtifactRow[],
    publishedAt: num(r['published_at']),
    publishedEventId: String(r['published_event_id']),
    retracted: num(r['retracted']) === 1,
    retractionReason: String(r['retraction_reason']),
    retractedAt: numOrNull(r['retracted_at']),
  };
}

export const BUILD_COLUMNS = [
  'build_id',
  'patch_id',
  'version',
  'patch_name',
  'description',
  'cves',
  'replace_flag',
  'kernel_releases',
  'requested_at',
  'artifacts',
  'failures',
];
export const buildValues = (b: BuildRow) => [
  b.buildId,
  b.patchId,
  b.version,
  b.patchName,
  b.description,
  json(b.cves),
  flag(b.replace),
  json(b.kernelReleases),
  b.requestedAt,
  json(b.artifacts),
  json(b.failures),
];
export function buildFromRow(r: Record<string, unknown>): BuildRow {
  return {
    buildId: String(r['build_id']),
    patchId: String(r['patch_id']),
    version: String(r['version']),
    patchName: String(r['patch_name']),
    description: String(r['description']),
    cves: JSON.parse(String(r['cves'])) as CveRow[],
    replace: num(r['replace_flag']) === 1,
    kernelReleases: JSON.parse(String(r['kernel_releases'])) as string[],
    requestedAt: num(r['requested_at']),
    artifacts: JSON.parse(String(r['artifacts'])) as ArtifactRow[],
    failures: JSON.parse(String(r['failures'])) as BuildRow['failures'],
  };
}
