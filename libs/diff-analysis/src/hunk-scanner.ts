// Places every line of a hunk, seen as the old file or as the new one, in the construct it
// belongs to: a function body, a struct, a global's initialiser, a macro. The hunk header names
// the construct the hunk starts in; column-0 lines (kernel style) open and close the next ones.
import {
  FileScopeStatement,
  LexState,
  annotationsOf,
  classifyStatement,
  codeOf,
  declaredNames,
  normalise,
} from './c-source';
import { DiffHunk } from './unified-diff';

export type ConstructKind = 'function' | 'aggregate' | 'data' | 'statement' | 'macro' | 'directive' | 'unknown';

export interface Construct {
  kind: ConstructKind;
  /** '' when the source does not say (an anonymous struct, a macro continued from above the hunk). */
  name: string;
  keyword?: 'struct' | 'union' | 'enum';
  /** static, inline, __init, notrace... as written on its first line(s). */
  annotations: string[];
  /** For 'statement': what kind of file-scope statement. */
  statement?: FileScopeStatement;
  /** Its first line is above the hunk; the `@@` header named it. */
  fromHeader: boolean;
  /** Tells anonymous constructs apart. */
  id: string;
}

export type Side = 'old' | 'new';

export interface ScannedLine {
  side: Side;
  changed: boolean;
  /** The source line without its diff prefix. */
  text: string;
  /** Normalised code; '' for blank and comment-only lines. */
  code: string;
  fileLine: number;
  diffLine: number;
  /** null for lines between definitions (blank lines, comments) that belong to nothing. */
  construct: Construct | null;
  part: 'head' | 'body' | 'close';
}

/** Identity of a construct across the old and the new side of one file. */
export function keyOf(construct: Construct): string {
  const s = construct.statement;
  switch (construct.kind) {
    case 'function':
    case 'data':
      return `${construct.kind}:${construct.name}`;
    case 'aggregate':
      return `${construct.keyword}:${construct.name || `anonymous@${construct.id}`}`;
    case 'macro':
      return `macro:${construct.name || `?@${construct.id}`}`;
    case 'statement':
      if (s?.kind === 'prototype' || s?.kind === 'typedef') return `${s.kind}:${s.name}`;
      if (s?.kind === 'macro-call') return `call:${s.macro}:${s.args[0] ?? ''}`;
      return `statement:${construct.name}`;
    case 'directive':
      return `directive:${construct.name}`;
    case 'unknown':
      return `unknown:${construct.id}`;
  }
}

// Macros that define a global object: the object's name is their first argument, or the last
// for the per-CPU ones (DEFINE_PER_CPU(type, name)).
const DEFINES_DATA =
  /^(DEFINE_\w+|LIST_HEAD|HLIST_HEAD|LLIST_HEAD|DECLARE_BITMAP|DECLARE_WAIT_QUEUE_HEAD|DECLARE_RWSEM|DECLARE_COMPLETION|DECLARE_WORK|DECLARE_DELAYED_WORK|DECLARE_TASKLET\w*|ATOMIC_NOTIFIER_HEAD|BLOCKING_NOTIFIER_HEAD|RAW_NOTIFIER_HEAD|SRCU_NOTIFIER_HEAD)$/;
// ...except those that define code, not data.
const DEFINES_CODE =
  /^DEFINE_(SHOW_ATTRIBUTE|SHOW_STORE_ATTRIBUTE|SEQ_ATTRIBUTE|SIMPLE_ATTRIBUTE|DEBUGFS_ATTRIBUTE|EVENT|GUARD\w*|FREE|CLASS|LOCK_GUARD\w*|TRACE\w*)$/;

function constructFor(statement: FileScopeStatement, code: string, id: string, fromHeader = false): Construct {
  const base = { annotations: [] as string[], fromHeader, id };
  switch (statement.kind) {
    case 'function':
      return { ...base, kind: 'function', name: statement.name, annotations: statement.annotations };
    case 'aggregate':
      return { ...base, kind: 'aggregate', name: statement.name, keyword: statement.keyword };
    case 'data':
      return { ...base, kind: 'data', name: statement.name, annotations: statement.annotations };
    case 'macro-call':
      if (DEFINES_DATA.test(statement.macro) && !DEFINES_CODE.test(statement.macro)) {
        const name = (statement.macro.startsWith('DEFINE_PER_CPU') ? statement.args.at(-1) : statement.args[0]) ?? '';
        return { ...base, kind: 'data', name: name.replace(/\W.*$/, ''), annotations: annotationsOf(code) };
      }
      return { ...base, kind: 'statement', name: statement.macro, statement };
    default:
      return { ...base, kind: 'statement', name: code, statement };
  }
}

/** The construct the `@@` header says the hunk starts in, or null (file scope, or nothing said). */
function startingPoint(header: string, id: string): Construct | null {
  const code = normalise(codeOf(header, { inComment: false }));
  if (code === '' || code.startsWith('#') || code.endsWith(';') || /^[A-Za-z_]\w*:$/.test(code)) return null;
  const statement = classifyStatement(code, code.endsWith('{'));
  const opensBody =
    statement.kind === 'function' ||
    statement.kind === 'aggregate' ||
    (statement.kind === 'data' && statement.opensInitialiser);
  return opensBody ? constructFor(statement, code, id, true) : null;
}

const endsWithBackslash = (text: string) => /\\\s*$/.test(text);
const MAX_STATEMENT_LINES = 16;

/** Scans the hunk as the `side` file shows it. */
export function scanHunk(hunk: DiffHunk, side: Side): ScannedLine[] {
  const idBase = `${hunk.diffLine}`;
  let anonymous = 0;
  const newId = () => `${idBase}.${anonymous++}`;
  const out: ScannedLine[] = [];
  const lex: LexState = { inComment: false };
  let open = startingPoint(hunk.header, newId());
  let unknown: Construct | null = null;
  let macro: Construct | null = null;
  let pending: ScannedLine[] = [];
  let fileLine = side === 'old' ? hunk.oldStart : hunk.newStart;

  const unknownHere = (): Construct =>
    (unknown ??= { kind: 'unknown', name: '', annotations: [], fromHeader: false, id: newId() });

  /** Ends the file-scope statement being read; `complete` is false when the hunk ended inside it. */
  const settle = (complete: boolean) => {
    const code = pending.map((line) => line.code).join(' ');
    const statement = classifyStatement(normalise(code), complete);
    const construct = constructFor(statement, code, newId());
    for (const line of pending) line.construct = construct;
    const opensBody =
      code.endsWith('{') &&
      (statement.kind === 'function' ||
        statement.kind === 'aggregate' ||
        (statement.kind === 'data' && statement.opensInitialiser));
    if (opensBody) open = construct;
    pending = [];
  };

  hunk.lines.forEach((raw, index) => {
    const tag = raw[0];
    if (tag === '\\' || (side === 'old' && tag === '+') || (side === 'new' && tag === '-')) return;
    const text = raw.slice(1);
    const line: ScannedLine = {
      side,
      changed: tag !== ' ',
      text,
      code: normalise(codeOf(text, lex)),
      fileLine: fileLine++,
      diffLine: hunk.diffLine + 1 + index,
      construct: null,
      part: 'body',
    };
    out.push(line);

    if (macro) {
      line.construct = macro;
      if (!endsWithBackslash(text)) macro = null;
      return;
    }
    if (line.code === '') {
      line.construct = pending.length > 0 ? null : open;
      return;
    }
    if (line.code.startsWith('#')) {
      const define = /^#\s*define\s*([A-Za-z_]\w*)/.exec(line.code);
      if (define) {
        line.construct = { kind: 'macro', name: define[1]!, annotations: [], fromHeader: false, id: newId() };
        line.part = 'head';
        if (endsWithBackslash(text)) macro = line.construct;
      } else {
        // #if/#ifdef inside a body change that body; at file scope they stand alone
        line.construct = open ?? {
          kind: 'directive',
          name: line.code,
          annotations: [],
          fromHeader: false,
          id: newId(),
        };
      }
      return;
    }
    if (endsWithBackslash(text) && pending.length === 0) {
      // the continuation of a #define that starts above the hunk
      macro = { kind: 'macro', name: '', annotations: [], fromHeader: true, id: newId() };
      line.construct = macro;
      return;
    }
    const column0 = /^\S/.test(text);
    if (pending.length > 0) {
      pending.push(line);
      line.part = 'head';
      if (line.code.endsWith(';') || line.code.endsWith('{')) settle(true);
      else if (pending.length >= MAX_STATEMENT_LINES) settle(false);
      return;
    }
    if (column0 && line.code.startsWith('}')) {
      const closing = open ?? unknownHere();
      line.construct = closing;
      line.part = 'close';
      if (closing.kind === 'aggregate' && closing.name === '') {
        // typedef struct { ... } name;
        const name = /^}[^;,]*[;,]/.test(line.code)
          ? declaredNames(line.code.slice(1).replace(/[;,].*$/, ''))[0]
          : undefined;
        if (name !== undefined) closing.name = name;
      }
      open = null;
      unknown = null;
      return;
    }
    if (column0 && line.code.startsWith('{')) {
      line.construct = open ?? unknownHere(); // the body of a definition whose head is above the hunk
      line.part = 'head';
      return;
    }
    if (column0 && /^[A-Za-z_]\w*:/.test(line.code) && !/^[A-Za-z_]\w*::/.test(line.code)) {
      line.construct = open ?? unknownHere(); // a goto label, in column 0 by kernel habit
      return;
    }
    if (column0) {
      open = null;
      unknown = null;
      line.part = 'head';
      pending.push(line);
      if (line.code.endsWith(';') || line.code.endsWith('{')) settle(true);
      return;
    }
    // An indented line belongs to the open body; without one it cannot be placed with confidence.
    line.construct = open ?? unknownHere();
  });
  if (pending.length > 0) settle(false);
  return out;
}
