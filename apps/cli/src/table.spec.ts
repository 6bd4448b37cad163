import { renderCsv, renderFields, renderTable } from './table';

describe('tables', () => {
  it('pads columns to their widest cell, right-aligns numbers, leaves no trailing blanks', () => {
    const text = renderTable(
      [{ header: 'HOST' }, { header: 'DONE', align: 'right' }, { header: 'NOTE' }],
      [
        ['web-01', '3/10', ''],
        ['db-1', '10/10', 'all good'],
      ],
    );
    expect(text.split('\n')).toEqual(['HOST     DONE  NOTE', 'web-01   3/10', 'db-1    10/10  all good']);
  });

  it('keeps each row on one line', () => {
    expect(renderTable([{ header: 'A' }], [['one\n  two']])).toBe('A\none two');
  });

  it('aligns fields', () => {
    expect(
      renderFields([
        ['build', 'b1'],
        ['description', '-'],
      ]),
    ).toBe('build:       b1\ndescription: -');
  });
});

describe('CSV', () => {
  it('quotes what needs quoting and ends lines with CRLF (RFC 4180)', () => {
    expect(
      renderCsv(
        ['host', 'note'],
        [
          ['web-01', 'plain'],
          ['web-02', 'a, b'],
          ['web-03', 'said "no"'],
          ['web-04', 'two\nlines'],
          ['web-05', ' padded'],
        ],
      ),
    ).toBe(
      'host,note\r\nweb-01,plain\r\nweb-02,"a, b"\r\nweb-03,"said ""no"""\r\nweb-04,"two\nlines"\r\nweb-05," padded"\r\n',
    );
  });
});
