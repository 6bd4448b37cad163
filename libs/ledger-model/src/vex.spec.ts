import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { cveExposure, fixPublications } from './exposure';
import { patchCatalog } from './catalog';
import {
  applied,
  at,
  cve,
  fn,
  inventory,
  listed,
  PatchSpec,
  published,
  RELEASE,
  reverted,
  ScriptedHost,
} from './test-support';
import { kernelPurl, openVexDocument, vexFindings, VexHost } from './vex';

const schema = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', 'test-data', 'openvex-v0.2.0.schema.json'), 'utf8'),
) as object;
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, strictTypes: false });
addFormats(ajv);
const validate = ajv.compile(schema);
const errorsOf = (doc: unknown) =>
  validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);

const NF: PatchSpec = { patchId: 'nf-tables', version: '1', moduleName: 'lp_nf', functions: [fn('nft_verdict')] };
const OVL: PatchSpec = { patchId: 'ovl', version: '1', moduleName: 'lp_ovl', functions: [fn('ovl_copy_up')] };
const HOST: VexHost = {
  hostId: 'web-17',
  kernelRelease: RELEASE,
  kernelVersion: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)',
  arch: 'x86_64',
  distro: 'Debian GNU/Linux 12 (bookworm)',
};
const PURL = `pkg:deb/debian/linux-image-${RELEASE}@6.1.76-1?arch=amd64`;

const catalog = [published(NF, [cve('CVE-2024-1086')], at(10)), published(OVL, [cve('CVE-2023-0386')], at(10))];

const meta = { catalog: patchCatalog(catalog) };
const l = (p: PatchSpec) => listed(p.moduleName, p.functions);

function exposuresOf(history: ReturnType<ScriptedHost['history']>) {
  return cveExposure(
    {
      hostId: 'web-17',
      enrolledAt: at(0),
      enrolledEventId: 'ev-enrolled',
      kernels: [{ release: RELEASE, from: at(0), eventId: 'ev-enrolled' }],
      intervals: history,
    },
    fixPublications(catalog),
  );
}

/** web-17: nf-tables live from minute 20 (fixes CVE-2024-1086), ovl never: exposed to CVE-2023-0386. */
function given() {
  const host = new ScriptedHost();
  host.fold(0, inventory('boot-1', []), meta);
  host.fold(20, applied(NF, [l(NF)]), meta);
  const history = host.history();
  return { history, exposures: exposuresOf(history) };
}

describe('OpenVEX for a host', () => {
  it('names the running kernel by the Debian package it came from', () => {
    expect(kernelPurl(HOST)).toBe(PURL);
    expect(kernelPurl({ ...HOST, kernelVersion: '#1 SMP' })).toBe(`pkg:deb/debian/linux-image-${RELEASE}?arch=amd64`);
    expect(
      kernelPurl({
        ...HOST,
        kernelVersion: '#1 SMP',
        distro: 'Fedora Linux 40',
        kernelRelease: '6.8.5-301.fc40.x86_64',
      }),
    ).toBe('pkg:generic/linux@6.8.5-301.fc40.x86_64?arch=amd64');
  });

  it('given one CVE fixed by a live patch and one exposed, says fixed and affected with the evidence', () => {
    const { history, exposures } = given();
    const findings = vexFindings(history, exposures, at(100));
    expect(findings.map((f) => [f.cveId, f.status, `${f.patch.patchId} ${f.patch.version}`])).toEqual([
      ['CVE-2023-0386', 'affected', 'ovl 1'],
      ['CVE-2024-1086', 'fixed', 'nf-tables 1'],
    ]);
    const fixed = findings.find((f) => f.status === 'fixed')!;
    expect(fixed.evidenceEventIds).toEqual(['ev-published-nf-tables-1', history[0]!.liveFromEventId]);

    const doc = openVexDocument(HOST, findings, at(100));
    expect(errorsOf(doc)).toEqual([]);
    expect(doc.statements.map((s) => [s.vulnerability.name, s.status, s.products[0]!['@id']])).toEqual([
      ['CVE-2023-0386', 'affected', PURL],
      ['CVE-2024-1086', 'fixed', PURL],
    ]);
    expect(doc.statements[0]!.action_statement).toBe('apply the live patch ovl 1: rebootless upgrade --host web-17');
    expect(doc.statements[1]!.status_notes).toContain(fixed.evidenceEventIds.join(', '));
  });

  it('as of before the patch was live, both CVEs are affected; after a revert, affected again', () => {
    const { history, exposures } = given();
    expect(vexFindings(history, exposures, at(15)).map((f) => f.status)).toEqual(['affected', 'affected']);
    const host = new ScriptedHost();
    host.fold(0, inventory('boot-1', []), meta);
    host.fold(20, applied(NF, [l(NF)]), meta);
    host.fold(50, reverted(NF, []), meta);
    const later = host.history();
    const again = exposuresOf(later);
    expect(vexFindings(later, again, at(100)).map((f) => [f.cveId, f.status])).toEqual([
      ['CVE-2023-0386', 'affected'],
      ['CVE-2024-1086', 'affected'],
    ]);
  });

  it('the schema refuses a document with a wrong value: affected without an action, an unknown status, no statements', () => {
    const { history, exposures } = given();
    const doc = openVexDocument(HOST, vexFindings(history, exposures, at(100)), at(100));
    const affected = doc.statements.find((s) => s.status === 'affected')!;
    const withoutAction = { ...doc, statements: [{ ...affected, action_statement: undefined }] };
    expect(errorsOf(JSON.parse(JSON.stringify(withoutAction)))).toContain(
      "/statements/0 must have required property 'action_statement'",
    );
    expect(errorsOf({ ...doc, statements: [{ ...affected, status: 'patched' }] })).toContain(
      '/statements/0/status must be equal to one of the allowed values',
    );
    expect(errorsOf({ ...doc, statements: [] })).toContain('/statements must NOT have fewer than 1 items');
    expect(errorsOf({ ...doc, timestamp: 'yesterday' })).toContain('/timestamp must match format "date-time"');
  });
});
