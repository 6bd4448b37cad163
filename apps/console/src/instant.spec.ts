import { ApiError } from './api-error';
import { html } from './html';
import { localPath, parseCve, parseId, parseInstant, parseLabels } from './instant';

const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) return error.message;
    throw error;
  }
  throw new Error('accepted');
};

describe('what the API accepts', () => {
  it('takes RFC 3339 instants with a zone and refuses the rest, naming the parameter', () => {
    expect(parseInstant('at', '2026-12-06T04:30:00Z')?.toISOString()).toBe('2026-12-06T04:30:00.000Z');
    expect(parseInstant('at', '2026-12-06T05:30:00.5+01:00')?.toISOString()).toBe('2026-12-06T04:30:00.500Z');
    expect(parseInstant('at', undefined)).toBeUndefined();
    expect(refused(() => parseInstant('at', 'yesterday'))).toMatch(/^at "yesterday" is not an instant/);
    expect(refused(() => parseInstant('as_of', '2026-12-06T04:30:00'))).toMatch(/^as_of/);
    expect(refused(() => parseInstant('at', '2026-13-45T00:00:00Z'))).toMatch(/not an instant/);
  });

  it('takes label filters as key=value pairs', () => {
    expect(parseLabels('label', 'fleet=demo,role=web')).toEqual({ fleet: 'demo', role: 'web' });
    expect(refused(() => parseLabels('label', 'fleet'))).toMatch(/key=value/);
  });

  it('takes CVE ids in either case and refuses other words', () => {
    expect(parseCve('cve', 'cve-2024-1086')).toBe('CVE-2024-1086');
    expect(refused(() => parseCve('cve', '1086'))).toMatch(/CVE-YYYY-NNNN/);
  });

  it('refuses ids that could be read as paths', () => {
    expect(parseId('host', 'web-01')).toBe('web-01');
    expect(refused(() => parseId('host', '..'))).toMatch(/not a valid id/);
    expect(refused(() => parseId('host', 'a/b'))).toMatch(/not a valid id/);
  });
});

describe('after sign-in', () => {
  it('goes only to a path of the console, never to another site', () => {
    expect(localPath('/hosts/web-01?at=2026-12-06T04:30:00Z')).toBe('/hosts/web-01?at=2026-12-06T04:30:00Z');
    for (const away of ['//evil.example', '/\\evil.example', 'https://evil.example', 'javascript:alert(1)', '']) {
      expect(localPath(away)).toBe('/fleet');
    }
  });
});

describe('html', () => {
  // Called through another name: the formatter would rewrite an `html` template literal's text.
  const markup = html;

  it('escapes every value a host or a user could have written', () => {
    const name = '<script>alert("x")</script>';
    expect(markup`<td>${name}</td><a title='${"'"}'>`.text).toBe(
      "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</td><a title='&#39;'>",
    );
    expect(markup`<p>${markup`<b>${'&'}</b>`}</p>`.text).toBe('<p><b>&amp;</b></p>');
  });
});
