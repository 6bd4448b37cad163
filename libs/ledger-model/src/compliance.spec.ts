import { events } from '@rebootless/contracts';
import {
  complianceCsv,
  complianceJson,
  complianceReport,
  complianceTable,
  csvField,
  PCI_DSS_6_3_3,
} from './compliance';
import { ExposureInterval } from './exposure';
import { DAY_MS } from './time';

const T = Date.UTC(2026, 2, 1);
const day = (n: number) => T + n * DAY_MS;
const CRITICAL = events.Severity.SEVERITY_CRITICAL;
const HIGH = events.Severity.SEVERITY_HIGH;

function exposure(
  hostId: string,
  cveId: string,
  from: number,
  until: number | null,
  more: Partial<ExposureInterval> = {},
): ExposureInterval {
  return {
    hostId,
    cveId,
    severity: CRITICAL,
    kernelRelease: '6.1.0-18-cloud-amd64',
    exposedFrom: day(from),
    exposedUntil: until === null ? null : day(until),
    openedBy: 'fix-published',
    openedEventId: `open-${hostId}-${from}`,
    closedBy: until === null ? null : 'patched',
    closedEventId: until === null ? null : `fix-${hostId}-${until}`,
    fixedBy: until === null ? null : { patchId: 'nf-tables', version: '1' },
    fixPublishedAt: day(0),
    fixPublishedEventId: 'published-nf-tables-1',
    fixPublishedBy: { patchId: 'nf-tables', version: '1' },
    ...more,
  };
}

const exposures = [
  exposure('web-01', 'CVE-2024-1086', 0, 10), // fixed in time
  exposure('web-02', 'CVE-2024-1086', 0, 45), // fixed late
  exposure('web-03', 'CVE-2024-1086', 0, null), // still exposed
  exposure('web-04', 'CVE-2024-1086', 20, null, { openedBy: 'enrolled', openedEventId: 'enrolled-web-04' }), // enrolled later
  exposure('web-05', 'CVE-2024-1086', 0, null), // exempted
  exposure('web-01', 'CVE-2024-9999', 0, null, { severity: HIGH }), // out of the default scope
];

describe('PCI-DSS v4.0 6.3.3 compliance', () => {
  const report = complianceReport(exposures, {
    asOf: day(40),
    exemptions: [{ hostId: 'web-05', reason: 'decommissioned on 2026-03-05, change CHG-1182' }],
  });
  const row = (host: string) => report.rows.find((r) => r.hostId === host)!;

  it('defaults to critical fixes within 30 days', () => {
    expect(report).toMatchObject({ requirement: 'PCI-DSS v4.0 6.3.3', windowDays: 30, severities: [CRITICAL] });
    expect(PCI_DSS_6_3_3.windowDays).toBe(30);
    expect(report.rows.map((r) => r.cveId)).not.toContain('CVE-2024-9999');
  });

  it('gives each host and CVE its verdict as of the instant', () => {
    expect(report.rows.map((r) => [r.hostId, r.status])).toEqual([
      ['web-01', 'compliant'],
      ['web-02', 'non-compliant'],
      ['web-03', 'non-compliant'],
      ['web-04', 'compliant'],
      ['web-05', 'exempt'],
    ]);
    expect(row('web-01')).toMatchObject({
      exposedSince: day(0),
      deadline: day(30),
      fixedAt: day(10),
      fixedBy: { patchId: 'nf-tables', version: '1' },
    });
    expect(row('web-01').reason).toBe('fixed by nf-tables 1 10 days after exposure, before the deadline 2026-03-31');
    // web-02 is not fixed as of day 40: the fix on day 45 is not known yet.
    expect(row('web-02')).toMatchObject({ fixedAt: null });
    expect(row('web-02').reason).toBe('still exposed, 10 day(s) past the deadline 2026-03-31');
    expect(row('web-04')).toMatchObject({ exposedSince: day(20), deadline: day(50) });
    expect(row('web-04').reason).toBe('exposed since 2026-03-21, within the deadline 2026-04-20');
    expect(row('web-05').reason).toBe('exempt: decommissioned on 2026-03-05, change CHG-1182');
  });

  it('later, the late fix is on record as late', () => {
    const later = complianceReport(exposures, { asOf: day(60) });
    const web02 = later.rows.find((r) => r.hostId === 'web-02')!;
    expect(web02).toMatchObject({ status: 'non-compliant', fixedAt: day(45) });
    expect(web02.reason).toBe('fixed late by nf-tables 1 45 days after exposure, deadline was 2026-03-31');
    expect(later.rows.find((r) => r.hostId === 'web-04')!.status).toBe('non-compliant');
    expect(later.rows.find((r) => r.hostId === 'web-05')!.status).toBe('non-compliant');
  });

  it('rests every verdict on event ids and times, oldest first', () => {
    expect(row('web-01').evidence).toEqual([
      { eventId: 'published-nf-tables-1', at: day(0), what: 'fix nf-tables 1 published for 6.1.0-18-cloud-amd64' },
      { eventId: 'open-web-01-0', at: day(0), what: 'exposed (fix-published)' },
      { eventId: 'fix-web-01-10', at: day(10), what: 'fix live: nf-tables 1' },
    ]);
    expect(row('web-04').evidence.map((e) => e.eventId)).toEqual(['published-nf-tables-1', 'enrolled-web-04']);
  });

  it('window and severities are parameters', () => {
    const strict = complianceReport(exposures, { asOf: day(40), windowDays: 7, severities: [CRITICAL, HIGH] });
    expect(strict.rows.map((r) => [r.hostId, r.cveId, r.status])).toEqual([
      ['web-01', 'CVE-2024-1086', 'non-compliant'],
      ['web-01', 'CVE-2024-9999', 'non-compliant'],
      ['web-02', 'CVE-2024-1086', 'non-compliant'],
      ['web-03', 'CVE-2024-1086', 'non-compliant'],
      ['web-04', 'CVE-2024-1086', 'non-compliant'],
      ['web-05', 'CVE-2024-1086', 'non-compliant'],
    ]);
  });

  it('an exposure reopened by a reboot gets its own window, which an assessor may shorten', () => {
    const reboot = [
      exposure('db-1', 'CVE-2024-1086', 0, 5),
      exposure('db-1', 'CVE-2024-1086', 50, 53, { openedBy: 'rebooted', openedEventId: 'boot-db-1' }),
    ];
    const lenient = complianceReport(reboot, { asOf: day(60) });
    expect(lenient.rows[0]).toMatchObject({ status: 'compliant', exposedSince: day(50), fixedAt: day(53) });
    expect(lenient.rows[0]!.reason).toMatch(/\(exposed again: rebooted\), before the deadline/);
    expect(lenient.rows[0]!.evidence.map((e) => e.eventId)).toEqual([
      'published-nf-tables-1',
      'open-db-1-0',
      'fix-db-1-5',
      'boot-db-1',
      'fix-db-1-53',
    ]);
    const strict = complianceReport(reboot, { asOf: day(60), reExposureWindowDays: 1 });
    expect(strict.rows[0]).toMatchObject({ status: 'non-compliant', exposedSince: day(50), deadline: day(51) });
  });

  it('only exposures overlapping the reporting period are evaluated', () => {
    const period = complianceReport(exposures, { asOf: day(40), from: day(15), to: day(40) });
    expect(period.rows.map((r) => r.hostId)).toEqual(['web-02', 'web-03', 'web-04', 'web-05']);
  });

  it('an exemption may name one CVE only', () => {
    const one = complianceReport(exposures, {
      asOf: day(40),
      severities: [CRITICAL, HIGH],
      exemptions: [{ hostId: 'web-01', cveId: 'CVE-2024-9999', reason: 'not reachable' }],
    });
    expect(one.rows.filter((r) => r.hostId === 'web-01').map((r) => [r.cveId, r.status])).toEqual([
      ['CVE-2024-1086', 'compliant'],
      ['CVE-2024-9999', 'exempt'],
    ]);
  });

  it('a host scope counts hosts never exposed as compliant and leaves other hosts out', () => {
    const scoped = complianceReport(exposures, { asOf: day(40), hostIds: ['web-01', 'web-02', 'db-9'] });
    expect(scoped.rows.map((r) => r.hostId)).toEqual(['web-01', 'web-02']);
    expect([scoped.hostsInScope, scoped.hostsCompliant]).toEqual([3, 2]);
  });

  it('counts hosts and summarizes each CVE', () => {
    expect(report.hostsInScope).toBe(5);
    expect(report.hostsCompliant).toBe(3);
    const later = complianceReport(exposures, { asOf: day(60) });
    expect(later.cves).toEqual([
      {
        cveId: 'CVE-2024-1086',
        severity: CRITICAL,
        fixedBy: [{ patchId: 'nf-tables', version: '1' }],
        fixPublishedAt: day(0),
        hostsAffected: 5,
        hostsPatchedInTime: 1,
        hostsPatchedLate: 1,
        unpatchedHostIds: ['web-03', 'web-04', 'web-05'],
      },
    ]);
  });
});

describe('rendering the report', () => {
  const report = complianceReport(
    [exposure('web-01', 'CVE-2024-1086', 0, 10), exposure('pay,"01"', 'CVE-2024-1086', 0, null)],
    { asOf: day(40), exemptions: [{ hostId: 'pay,"01"', reason: 'line one\nline two' }] },
  );

  it('as CSV with CRLF line ends that an RFC 4180 reader reads back exactly', () => {
    const csv = complianceCsv(report);
    expect(csv.split('\r\n')[0]).toBe(
      'host,cve,severity,status,exposed_since,deadline,fixed_at,fixed_by,reason,evidence',
    );
    expect(csv.endsWith('\r\n')).toBe(true);
    const rows = readCsv(csv);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toEqual([
      'pay,"01"',
      'CVE-2024-1086',
      'critical',
      'exempt',
      '2026-03-01T00:00:00.000Z',
      '2026-03-31T00:00:00.000Z',
      '',
      '',
      'exempt: line one\nline two',
      'published-nf-tables-1@2026-03-01T00:00:00.000Z open-pay,"01"-0@2026-03-01T00:00:00.000Z',
    ]);
    expect(rows[2]!.slice(0, 8)).toEqual([
      'web-01',
      'CVE-2024-1086',
      'critical',
      'compliant',
      '2026-03-01T00:00:00.000Z',
      '2026-03-31T00:00:00.000Z',
      '2026-03-11T00:00:00.000Z',
      'nf-tables 1',
    ]);
  });

  it('escapes fields one by one, and defuses spreadsheet formulas', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField('@cmd')).toBe("'@cmd");
  });

  it('as JSON-ready objects with ISO instants and severity names', () => {
    const json = complianceJson(report);
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
    expect(json).toMatchObject({
      requirement: 'PCI-DSS v4.0 6.3.3',
      as_of: '2026-04-10T00:00:00.000Z',
      window_days: 30,
      severities: ['critical'],
    });
    expect(json.rows[1]).toMatchObject({
      host: 'web-01',
      severity: 'critical',
      status: 'compliant',
      exposed_since: '2026-03-01T00:00:00.000Z',
      fixed_at: '2026-03-11T00:00:00.000Z',
      fixed_by: { patchId: 'nf-tables', version: '1' },
    });
    expect(json.rows[1]!.evidence[2]).toEqual({
      event_id: 'fix-web-01-10',
      at: '2026-03-11T00:00:00.000Z',
      what: 'fix live: nf-tables 1',
    });
  });

  it('as a table with aligned columns under a title', () => {
    const lines = complianceTable(report).trimEnd().split('\n');
    expect(lines[0]).toBe(
      'PCI-DSS v4.0 6.3.3 as of 2026-04-10T00:00:00.000Z: critical fixes live within 30 days; 2 of 2 host(s) compliant',
    );
    expect(lines[1]).toMatch(/^HOST +CVE +SEVERITY +STATUS +EXPOSED SINCE +DEADLINE +FIXED AT +FIXED BY +REASON$/);
    expect(lines).toHaveLength(4);
    const column = (line: string) => line.indexOf('CVE-2024-1086');
    expect(column(lines[2]!)).toBe(lines[1]!.indexOf('CVE'));
    expect(column(lines[3]!)).toBe(lines[1]!.indexOf('CVE'));
    expect(lines[2]).toContain('exempt: line one line two');
  });
});

/** A strict RFC 4180 reader, independent of the writer: quoted fields, doubled quotes, CRLF records. */
function readCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i += 1;
      continue;
    }
    if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i += 1;
    } else if (c === '"' || c === '\n' || c === '\r') throw new Error(`bare ${JSON.stringify(c)} at ${i}`);
    else field += c;
    i += 1;
  }
  if (field !== '' || row.length > 0) throw new Error('last record not ended by CRLF');
  return rows;
}
