/** The diff cannot be read; `line` (1-based) is where the problem shows, `detail` says what it is. */
export class DiffParseError extends Error {
  override readonly name = 'DiffParseError';

  constructor(
    readonly line: number,
    readonly detail: string,
  ) {
    super(`line ${line}: ${detail}`);
  }
}
