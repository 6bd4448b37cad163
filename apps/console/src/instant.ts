// Instants and filters as people and tools type them, refused with a message that names the
// parameter and what it expects.
import { badRequest } from './api-error';

// RFC 3339 with a zone (Z or ±hh:mm), seconds and fraction optional: no local-time guessing.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

export function parseInstant(name: string, raw: string | undefined): Date | undefined {
  if (raw === undefined || raw === '') return undefined;
  const date = RFC3339.test(raw) ? new Date(raw) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw badRequest(`${name} "${raw}" is not an instant: expected RFC 3339, e.g. 2026-12-06T04:30:00Z`);
  }
  return date;
}

/** "key=value" pairs separated by commas, as in `fleet=demo,zone=b`. */
export function parseLabels(name: string, raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined || raw.trim() === '') return out;
  for (const pair of raw.split(',')) {
    const m = /^\s*([A-Za-z0-9][A-Za-z0-9._/-]{0,62})=([A-Za-z0-9._/-]{0,63})\s*$/.exec(pair);
    if (!m) throw badRequest(`${name} "${raw}" is not a label filter: expected key=value[,key=value], e.g. fleet=demo`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

const CVE_ID = /^CVE-\d{4}-\d{4,}$/;

export function parseCve(name: string, raw: string | undefined): string {
  if (raw === undefined || raw === '') return '';
  const id = raw.trim().toUpperCase();
  if (!CVE_ID.test(id)) throw badRequest(`${name} "${raw}" is not a CVE id: expected CVE-YYYY-NNNN`);
  return id;
}

// A kernel release as uname -r prints it.
const RELEASE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/;

export function parseKernel(name: string, raw: string | undefined): string {
  if (raw === undefined || raw === '') return '';
  if (!RELEASE.test(raw)) throw badRequest(`${name} "${raw}" is not a kernel release, e.g. 6.1.0-18-cloud-amd64`);
  return raw;
}

export function parseChoice<const C extends readonly string[]>(
  name: string,
  raw: string | undefined,
  choices: C,
): C[number] | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!(choices as readonly string[]).includes(raw))
    throw badRequest(`${name} "${raw}" is not one of ${choices.join(', ')}`);
  return raw as C[number];
}

/** A path identifier (host id, rollout id): what the services accept, nothing that could be a path trick. */
export function parseId(name: string, raw: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(raw)) throw badRequest(`${name} "${raw}" is not a valid id`);
  return raw;
}

/** Where to go after sign-in: a path on this console only ("//x" and "/\\x" would leave it). */
export function localPath(next: string): string {
  return /^\/(?![/\\])[^\s]*$/.test(next) ? next : '/fleet';
}
