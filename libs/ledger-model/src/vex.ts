import { patchLabel, type PatchRef } from './catalog';
import type { ExposureInterval } from './exposure';
import type { StackInterval } from './stack';
import { EpochMillis, isoInstant } from './time';

/**
 * OpenVEX (v0.2.0) documents saying, for one host, which CVEs a live patch fixes and which it is
 * exposed to, so a vulnerability scanner stops reporting what was fixed without a reboot
 * (ADR 0019 says how Trivy and Grype read them). One document per host: two hosts on the same
 * kernel package can differ, and a scanner is pointed at the document of the host it scans.
 */

export const OPENVEX_CONTEXT = 'https://openvex.dev/ns/v0.2.0';

/** What a host's product identifier is made from (its agent's facts). */
export interface VexHost {
  hostId: string;
  kernelRelease: string;
  /** `uname -v`; Debian's says which package version it is: "#1 SMP ... Debian 6.1.76-1 (2024-02-01)". */
  kernelVersion: string;
  arch: string;
  distro: string;
}

/** One CVE on one host as of an instant. */
export interface VexFinding {
  cveId: string;
  status: 'fixed' | 'affected';
  /** fixed: the live patch that fixes it; affected: the published fix not live. */
  patch: PatchRef;
  /** fixed: since when the fix is live; affected: since when the host is exposed. */
  since: EpochMillis;
  /** The events the statement rests on, oldest first. */
  evidenceEventIds: string[];
}

/**
 * The Debian package the running kernel came from, as a package URL, the identifier scanners
 * give the kernel they find: pkg:deb/debian/linux-image-<release>@<version>?arch=<arch>. The
 * version is read from `uname -v`; without it the purl names every version of the package.
 * A kernel that is not Debian's is named pkg:generic/linux@<release>.
 */
export function kernelPurl(host: VexHost): string {
  const arch = host.arch === 'x86_64' ? 'amd64' : host.arch === 'aarch64' ? 'arm64' : host.arch;
  const debian = /\bDebian (\d[\w.+~:-]*)/.exec(host.kernelVersion);
  if (debian || /debian/i.test(host.distro)) {
    const version = debian ? `@${encodeURIComponent(debian[1]!)}` : '';
    return `pkg:deb/debian/linux-image-${encodeURIComponent(host.kernelRelease)}${version}${arch ? `?arch=${arch}` : ''}`;
  }
  return `pkg:generic/linux@${encodeURIComponent(host.kernelRelease)}${arch ? `?arch=${arch}` : ''}`;
}

/**
 * Per CVE rebootless publishes a fix for on the host's kernel, as of `asOf`: fixed when a patch
 * that lists it is live, affected when its exposure is open. A CVE whose exposure ended because
 * the host booted another kernel says nothing about the running one and is left out.
 */
export function vexFindings(
  live: readonly StackInterval[],
  exposures: readonly ExposureInterval[],
  asOf: EpochMillis,
): VexFinding[] {
  const out = new Map<string, VexFinding>();
  for (const e of exposures) {
    if (e.exposedFrom > asOf || (e.exposedUntil !== null && e.exposedUntil <= asOf)) continue;
    out.set(e.cveId, {
      cveId: e.cveId,
      status: 'affected',
      patch: e.fixPublishedBy,
      since: e.exposedFrom,
      evidenceEventIds: unique([e.fixPublishedEventId, e.openedEventId]),
    });
  }
  const publication = new Map(exposures.map((e) => [e.cveId, e.fixPublishedEventId]));
  const running = live
    .filter((i) => i.liveFrom !== null && i.liveFrom <= asOf && (i.liveUntil === null || i.liveUntil > asOf))
    .sort((a, b) => a.liveFrom! - b.liveFrom!);
  for (const i of running) {
    for (const c of i.cves) {
      if (out.get(c.id)?.status === 'fixed') continue;
      out.set(c.id, {
        cveId: c.id,
        status: 'fixed',
        patch: { patchId: i.patchId, version: i.version },
        since: i.liveFrom!,
        evidenceEventIds: unique([publication.get(c.id) ?? '', i.liveFromEventId ?? i.appliedEventId]),
      });
    }
  }
  return [...out.values()].sort((a, b) => (a.cveId < b.cveId ? -1 : a.cveId > b.cveId ? 1 : 0));
}

function unique(ids: string[]): string[] {
  return [...new Set(ids.filter(Boolean))];
}

export interface OpenVexDocument {
  '@context': string;
  '@id': string;
  author: string;
  role: string;
  timestamp: string;
  version: number;
  tooling: string;
  statements: OpenVexStatement[];
}

export interface OpenVexStatement {
  vulnerability: { name: string };
  products: { '@id': string; identifiers: { purl: string } }[];
  status: 'fixed' | 'affected';
  status_notes: string;
  action_statement?: string;
  timestamp: string;
}

/**
 * The host's OpenVEX document as of `asOf`. Its @id is stable for a host and instant, so the same
 * question asked twice gives the same document; `author` is who signs off on it (the ledger).
 */
export function openVexDocument(
  host: VexHost,
  findings: readonly VexFinding[],
  asOf: EpochMillis,
  author = 'rebootless ledger',
): OpenVexDocument {
  const purl = kernelPurl(host);
  const at = isoInstant(asOf);
  return {
    '@context': OPENVEX_CONTEXT,
    '@id': `urn:rebootless:vex:${encodeURIComponent(host.hostId)}:${at}`,
    author,
    role: 'live kernel patching ledger',
    timestamp: at,
    version: 1,
    tooling: 'rebootless report vex',
    statements: findings.map((f) => {
      const evidence = `evidence events: ${f.evidenceEventIds.join(', ')}`;
      const statement: OpenVexStatement = {
        vulnerability: { name: f.cveId },
        products: [{ '@id': purl, identifiers: { purl } }],
        status: f.status,
        status_notes:
          f.status === 'fixed'
            ? `host ${host.hostId}: fixed without a reboot by the live patch ${patchLabel(f.patch)}, live since ${isoInstant(f.since)}; ${evidence}`
            : `host ${host.hostId}: exposed since ${isoInstant(f.since)}; the live patch ${patchLabel(f.patch)} fixes it and is not live; ${evidence}`,
        timestamp: at,
      };
      if (f.status === 'affected')
        statement.action_statement = `apply the live patch ${patchLabel(f.patch)}: rebootless upgrade --host ${host.hostId}`;
      return statement;
    }),
  };
}
