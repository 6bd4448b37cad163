// Reads `git diff`, `git format-patch` and `diff -u` output into files and hunks. Strict where a
// mistake would change what gets built (hunk counts, file names), lenient where patch(1) and
// git apply are (a commit message or mail headers before the first file, a signature after it).
import { DiffParseError } from './diff-parse-error';
import { checkedPath, pathOfHeaderLine, splitGitHeaderPaths, stripPrefixes } from './diff-paths';

export { DiffParseError } from './diff-parse-error';

export interface DiffHunk {
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  /** The text after `@@ ... @@`, usually the enclosing function's first line; '' when absent. */
  header: string;
  /**
   * The hunk's lines with their one-character prefix (' ', '+', '-', or '\' for
   * "\ No newline at end of file"). An empty context line whose trailing space was lost is ' '.
   */
  lines: string[];
  /** 1-based line of the `@@` header in the diff; `lines[i]` is on line `diffLine + 1 + i`. */
  diffLine: number;
}

export type DiffFileStatus = 'modified' | 'added' | 'deleted' | 'renamed';

export interface DiffFile {
  /** Relative to the top of the source tree; '/dev/null' for an added file. */
  oldPath: string;
  /** Relative to the top of the source tree; '/dev/null' for a deleted file. */
  newPath: string;
  status: DiffFileStatus;
  hunks: DiffHunk[];
  /** Set when git marks the file as binary: it has no hunks to read. */
  binary?: boolean;
  /** 1-based line where this file's header starts in the diff. */
  diffLine: number;
}

export const DEV_NULL = '/dev/null';

const HUNK_HEADER = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$/;
const MAX_QUOTE = 60;

/** A line quoted for an error message, cut short when long. */
export function quoted(line: string): string {
  const shown = line.length > MAX_QUOTE ? `${line.slice(0, MAX_QUOTE)}...` : line;
  return JSON.stringify(shown);
}

/** Splits a unified diff into files and hunks; throws DiffParseError naming the line at fault. */
export function parseUnifiedDiff(text: string): DiffFile[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.every((line) => line.trim() === '')) {
    throw new DiffParseError(1, 'the diff is empty: there is nothing to analyse');
  }
  return new DiffReader(lines).read();
}

class DiffReader {
  private readonly files: DiffFile[] = [];
  private at = 0; // index of the next line to read

  constructor(private readonly lines: string[]) {}

  read(): DiffFile[] {
    while (this.at < this.lines.length) {
      const line = this.lines[this.at]!;
      const next = this.lines[this.at + 1];
      if (line.startsWith('diff --git ')) {
        this.readGitFile();
      } else if (line.startsWith('--- ') && next?.startsWith('+++ ')) {
        this.readPlainFile();
      } else if (line.startsWith('--- ') && next !== undefined && HUNK_HEADER.test(next)) {
        throw new DiffParseError(
          this.at + 2,
          `a hunk follows the file header "--- ..." on line ${this.at + 1} without the "+++ <new path>" line that must come between them`,
        );
      } else if (line.startsWith('@@ ')) {
        throw new DiffParseError(
          this.at + 1,
          'this hunk comes before any file header ("--- a/<path>" and "+++ b/<path>"), so it is not clear which file it changes',
        );
      } else {
        this.at++; // commit message, mail headers, diffstat, signature: not part of any file
      }
    }
    if (this.files.length === 0) throw this.noFiles();
    return this.files;
  }

  private noFiles(): DiffParseError {
    const first = this.lines.findIndex((line) => line.trim() !== '');
    return new DiffParseError(
      first + 1,
      `this is not a unified diff: none of its ${this.lines.length} line(s) is a file header ` +
        `("diff --git a/<path> b/<path>", or "--- a/<path>" followed by "+++ b/<path>"); it begins ${quoted(this.lines[first]!)}`,
    );
  }

  private readGitFile(): void {
    const diffLine = this.at + 1;
    const header = splitGitHeaderPaths(this.lines[this.at]!.slice('diff --git '.length), diffLine);
    const fromHeader = stripPrefixes(header.old, header.new); // non-null in, non-null out
    let oldPath = checkedPath(fromHeader.old!, diffLine, 'old');
    let newPath = checkedPath(fromHeader.new!, diffLine, 'new');
    let status: DiffFileStatus = 'modified';
    let binary = false;
    let describesChange = false; // a mode change, rename, copy, or new/deleted (possibly empty) file
    this.at++;

    for (; this.at < this.lines.length; this.at++) {
      const line = this.lines[this.at]!;
      const lineNo = this.at + 1;
      const value = (prefix: string) => pathOfHeaderLine(line.slice(prefix.length), lineNo);
      if (line.startsWith('new file mode ')) {
        status = 'added';
        describesChange = true;
      } else if (line.startsWith('deleted file mode ')) {
        status = 'deleted';
        describesChange = true;
      } else if (line.startsWith('old mode ') || line.startsWith('new mode ')) {
        describesChange = true;
      } else if (line.startsWith('rename from ')) {
        oldPath = checkedPath(value('rename from '), lineNo, 'old');
        status = 'renamed';
        describesChange = true;
      } else if (line.startsWith('rename to ')) {
        newPath = checkedPath(value('rename to '), lineNo, 'new');
        status = 'renamed';
        describesChange = true;
      } else if (line.startsWith('copy from ')) {
        checkedPath(value('copy from '), lineNo, 'old');
        describesChange = true;
      } else if (line.startsWith('copy to ')) {
        newPath = checkedPath(value('copy to '), lineNo, 'new');
        status = 'added'; // a copy is a new file as far as the running kernel is concerned
        describesChange = true;
      } else if (/^(similarity|dissimilarity) index |^index /.test(line)) {
        // informational
      } else if (line.startsWith('Binary files ') || line === 'GIT binary patch') {
        binary = true;
        this.at++;
        if (line === 'GIT binary patch') this.skipBinaryPatch();
        break;
      } else {
        break;
      }
    }

    if (status === 'added') oldPath = DEV_NULL;
    if (status === 'deleted') newPath = DEV_NULL;
    const file: DiffFile = { oldPath, newPath, status, hunks: [], diffLine };
    if (binary) file.binary = true;

    if (!binary && this.lines[this.at]?.startsWith('--- ')) {
      if (!this.lines[this.at + 1]?.startsWith('+++ ')) {
        throw new DiffParseError(
          this.at + 2,
          `expected "+++ <new path>" after the "--- <old path>" line on line ${this.at + 1}`,
        );
      }
      const paths = this.readFileHeaderPair();
      file.oldPath = paths.old ?? DEV_NULL;
      file.newPath = paths.new ?? DEV_NULL;
      if (paths.old === null) file.status = 'added';
      else if (paths.new === null) file.status = 'deleted';
      this.readHunks(file);
    }
    if (!binary && file.hunks.length === 0 && !describesChange) {
      throw new DiffParseError(
        diffLine,
        'this "diff --git" header is followed by no change: no hunks, mode change, rename or binary marker',
      );
    }
    this.files.push(file);
  }

  private skipBinaryPatch(): void {
    while (this.at < this.lines.length && !this.lines[this.at]!.startsWith('diff --git ')) this.at++;
  }

  private readPlainFile(): void {
    const diffLine = this.at + 1;
    const paths = this.readFileHeaderPair();
    if (paths.old === null && paths.new === null) {
      throw new DiffParseError(diffLine, 'both file names are /dev/null, so this header names no file');
    }
    const status: DiffFileStatus = paths.old === null ? 'added' : paths.new === null ? 'deleted' : 'modified';
    const file: DiffFile = {
      oldPath: paths.old ?? DEV_NULL,
      newPath: paths.new ?? DEV_NULL,
      status,
      hunks: [],
      diffLine,
    };
    this.readHunks(file);
    if (file.hunks.length === 0) {
      throw new DiffParseError(
        diffLine + 2,
        `the file header on line ${diffLine} is not followed by a hunk ("@@ -<start>,<count> +<start>,<count> @@")`,
      );
    }
    this.files.push(file);
  }

  /** Reads a "--- " and "+++ " pair; null stands for /dev/null. */
  private readFileHeaderPair(): { old: string | null; new: string | null } {
    const oldLine = this.at + 1;
    const rawOld = pathOfHeaderLine(this.lines[this.at]!.slice(4), oldLine, { stopAtTab: true });
    const rawNew = pathOfHeaderLine(this.lines[this.at + 1]!.slice(4), oldLine + 1, { stopAtTab: true });
    this.at += 2;
    const stripped = stripPrefixes(rawOld === DEV_NULL ? null : rawOld, rawNew === DEV_NULL ? null : rawNew);
    return {
      old: stripped.old === null ? null : checkedPath(stripped.old, oldLine, 'old'),
      new: stripped.new === null ? null : checkedPath(stripped.new, oldLine + 1, 'new'),
    };
  }

  private readHunks(file: DiffFile): void {
    while (this.at < this.lines.length) {
      const line = this.lines[this.at]!;
      if (line.startsWith('@@')) {
        file.hunks.push(this.readHunk());
      } else if (file.hunks.length > 0 && this.continuesAHunk()) {
        const hunk = file.hunks[file.hunks.length - 1]!;
        throw new DiffParseError(
          this.at + 1,
          `this line continues the hunk that starts on line ${hunk.diffLine} past the ${hunk.oldLines} old and ` +
            `${hunk.newLines} new line(s) its header declares (${rangeOf(hunk)}): the counts do not add up`,
        );
      } else {
        return;
      }
    }
  }

  /** A hunk body line right after a complete hunk, rather than a header, a signature or prose. */
  private continuesAHunk(): boolean {
    const line = this.lines[this.at]!;
    if (line === '-- ' || line === '--' || line === '---') return false; // mail signature, format-patch separator
    if (line.startsWith('--- ') && this.lines[this.at + 1]?.startsWith('+++ ')) return false;
    return line.startsWith(' ') || line.startsWith('+') || line.startsWith('-');
  }

  private readHunk(): DiffHunk {
    const diffLine = this.at + 1;
    const header = this.lines[this.at]!;
    const match = HUNK_HEADER.exec(header);
    if (!match) {
      throw new DiffParseError(
        diffLine,
        `malformed hunk header ${quoted(header)}: expected "@@ -<old start>,<old count> +<new start>,<new count> @@"`,
      );
    }
    const hunk: DiffHunk = {
      oldStart: Number(match[1]),
      oldLines: match[2] === undefined ? 1 : Number(match[2]),
      newStart: Number(match[3]),
      newLines: match[4] === undefined ? 1 : Number(match[4]),
      header: match[5]!.trim(),
      lines: [],
      diffLine,
    };
    for (const n of [hunk.oldStart, hunk.oldLines, hunk.newStart, hunk.newLines]) {
      if (!Number.isSafeInteger(n))
        throw new DiffParseError(diffLine, `the hunk header has an impossible number: ${n}`);
    }
    if (hunk.oldLines === 0 && hunk.newLines === 0) {
      throw new DiffParseError(diffLine, `this hunk header (${rangeOf(hunk)}) declares no lines at all`);
    }
    this.at++;

    let oldSeen = 0;
    let newSeen = 0;
    const shortBy = () =>
      `the hunk that starts on line ${diffLine} declares ${hunk.oldLines} old and ${hunk.newLines} new line(s) ` +
      `(${rangeOf(hunk)}) but has only ${oldSeen} old and ${newSeen} new`;
    while (oldSeen < hunk.oldLines || newSeen < hunk.newLines) {
      if (this.at >= this.lines.length) {
        throw new DiffParseError(
          this.lines.length,
          `the diff ends too early: ${shortBy()} (was it cut short or edited by hand?)`,
        );
      }
      const raw = this.lines[this.at]!;
      const line = raw === '' ? ' ' : raw; // an empty context line whose trailing space a mailer or editor removed
      const tag = line[0];
      const fits =
        tag === ' '
          ? oldSeen < hunk.oldLines && newSeen < hunk.newLines
          : tag === '-'
            ? oldSeen < hunk.oldLines
            : tag === '+'
              ? newSeen < hunk.newLines
              : tag === '\\' && hunk.lines.length > 0;
      if (!fits) {
        const what =
          tag === ' ' || tag === '-' || tag === '+'
            ? `this ${tag === ' ' ? 'context' : tag === '-' ? 'removed' : 'added'} line is one more than the header allows`
            : `this line is not a hunk line (those start with " ", "+" or "-")`;
        throw new DiffParseError(this.at + 1, `${what}: ${shortBy()} before it, so the counts do not add up`);
      }
      if (tag === ' ' || tag === '-') oldSeen++;
      if (tag === ' ' || tag === '+') newSeen++;
      hunk.lines.push(line);
      this.at++;
    }
    if (this.lines[this.at]?.startsWith('\\')) hunk.lines.push(this.lines[this.at++]!);
    return hunk;
  }
}

function rangeOf(hunk: DiffHunk): string {
  return `@@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@`;
}
