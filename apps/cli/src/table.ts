// Tables for people, CSV for spreadsheets. Pure.

export interface Column {
  readonly header: string;
  readonly align?: 'left' | 'right';
}

/** Columns padded to their widest cell; the last column is not padded (no trailing blanks). */
export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const cells = rows.map((row) => columns.map((_, i) => (row[i] ?? '').replace(/\s*\n\s*/g, ' ')));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => [...row[i]!].length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => {
        const pad = ' '.repeat(widths[i]! - [...cell].length);
        if (columns[i]!.align === 'right') return pad + cell;
        return i === row.length - 1 ? cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

/** "key: value" lines, keys aligned. */
export function renderFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([key]) => key.length)) + 1;
  return fields.map(([key, value]) => `${`${key}:`.padEnd(width + 1)}${value}`.trimEnd()).join('\n');
}

function csvCell(cell: string): string {
  return /[",\r\n]|^\s|\s$/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell;
}

/** RFC 4180: comma-separated, CRLF line ends, quoted where needed. */
export function renderCsv(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  return [headers, ...rows].map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
}
