// analyseDiff: what a careful reviewer checks before a diff may become a live patch. Each file is
// judged by where it lives first (vDSO, assembly, boot code, not C), then C sources and headers
// construct by construct: which functions change, and whether any change touches what a live
// patch cannot replace (data layouts, global data, init/exit code, static locals).
import { INIT_CODE, INIT_DATA, declaredNames, staticLocal } from './c-source';
import { Construct, ScannedLine, keyOf, scanHunk } from './hunk-scanner';
import { Finding, Note, listed, notes } from './reviewer-notes';
import { DEV_NULL, DiffFile, parseUnifiedDiff } from './unified-diff';

export interface ChangedFunction {
  file: string;
  name: string;
  /** 'modified' functions are the ones a live patch replaces; 'added' ones travel with it. */
  change: 'modified' | 'added' | 'removed';
}

export interface DiffReport {
  /** Every file the diff touches, in diff order (the new name; the old one for a deleted file). */
  files: string[];
  functions: ChangedFunction[];
  findings: Finding[];
  verdict: 'ok' | 'warnings' | 'refused';
  /** A short reviewer's note for the operator. */
  summary: string;
}

type PathKind = 'vdso' | 'outside-kernel' | 'boot' | 'library' | 'assembly' | 'c' | 'header' | 'other';

function kindOfPath(path: string): PathKind {
  const base = path.slice(path.lastIndexOf('/') + 1);
  if (/vdso/i.test(path)) return 'vdso';
  if (
    /^(Documentation|tools|samples|scripts|LICENSES)\//.test(path) ||
    /^(MAINTAINERS|CREDITS|README|COPYING|\.mailmap|\.gitignore|\.gitattributes|\.clang-format)$/.test(path) ||
    /\.(rst|txt|md)$/.test(base)
  ) {
    return 'outside-kernel';
  }
  if (/^arch\/[^/]+\/boot\//.test(path) || /\/realmode\/rm\//.test(path)) return 'boot';
  // klp-build refuses lib/: much of it is linked into the boot and decompression code too, and
  // its helpers are called where a redirected function is not safe.
  if (/^lib\//.test(path)) return 'library';
  if (/\.[sS]$/.test(base)) return 'assembly';
  if (base.endsWith('.c')) return 'c';
  if (base.endsWith('.h')) return 'header';
  return 'other';
}

function whatIsIt(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  if (/^(Kconfig|Makefile|Kbuild)/.test(base) || base.endsWith('.mk')) return 'part of the build configuration';
  if (base.endsWith('.rs')) return 'Rust code, and rebootless builds live patches from C only';
  if (/\.dtsi?$/.test(base)) return 'a device tree, which the kernel reads at boot';
  if (/\.lds$/.test(base)) return 'a linker script';
  return 'not C source, so rebootless cannot tell what it changes at run time';
}

/** One construct (function, struct, global...) of one file, seen on both sides of the diff. */
interface ConstructChange {
  construct: Construct;
  annotations: Set<string>;
  oldCode: string[];
  newCode: string[];
  oldHead: string[];
  newHead: string[];
  removed: ScannedLine[];
  added: ScannedLine[];
  fromHeader: boolean;
}

function groupByConstruct(file: DiffFile): { changes: ConstructChange[]; unplaced: ScannedLine[] } {
  const byKey = new Map<string, ConstructChange>();
  const unplaced: ScannedLine[] = [];
  for (const hunk of file.hunks) {
    for (const line of [...scanHunk(hunk, 'old'), ...scanHunk(hunk, 'new')]) {
      const construct = line.construct;
      if (construct === null) {
        if (line.changed && line.code !== '') unplaced.push(line);
        continue;
      }
      const key = keyOf(construct);
      let change = byKey.get(key);
      if (!change) {
        change = {
          construct,
          annotations: new Set(),
          oldCode: [],
          newCode: [],
          oldHead: [],
          newHead: [],
          removed: [],
          added: [],
          fromHeader: false,
        };
        byKey.set(key, change);
      }
      construct.annotations.forEach((a) => change.annotations.add(a));
      change.fromHeader ||= construct.fromHeader;
      if (line.code === '') continue;
      const old = line.side === 'old';
      (old ? change.oldCode : change.newCode).push(line.code);
      if (line.part === 'head' && line.code !== '{') (old ? change.oldHead : change.newHead).push(line.code);
      if (line.changed) (old ? change.removed : change.added).push(line);
    }
  }
  return { changes: [...byKey.values()], unplaced };
}

const sameSequence = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function lifecycle(change: ConstructChange): 'modified' | 'added' | 'removed' {
  const before = change.fromHeader || change.oldCode.length > 0;
  const after = change.fromHeader || change.newCode.length > 0;
  return before && after ? 'modified' : after ? 'added' : 'removed';
}

/** The first changed line of a construct, for the finding's line numbers. */
function firstChange(change: ConstructChange): { line: number; diffLine: number } | Record<string, never> {
  const first = [...change.removed, ...change.added].sort((a, b) => a.diffLine - b.diffLine)[0];
  return first ? { line: first.fileLine, diffLine: first.diffLine } : {};
}

const INIT_REGISTRATION =
  /^(module_init|module_exit|\w*initcall\w*|__exitcall|__setup|early_param|core_param|module_driver|module_\w+_driver|builtin_\w+_driver)$/;

/** Everything the reviewer learns from one C source or header. */
class FileReview {
  readonly notes: Note[] = [];
  readonly functions: ChangedFunction[] = [];
  codeChanged = false;
  private readonly rippleSubjects: string[] = [];
  private rippleAt: { line: number; diffLine: number } | Record<string, never> = {};
  private readonly macros: string[] = [];
  private macroAt: { line: number; diffLine: number } | Record<string, never> = {};
  private readonly unknownLines: ScannedLine[] = [];
  /**
   * Registrations (initcalls, symbol exports) by what they register, so that
   * module_init(f) -> subsys_initcall(f) or EXPORT_SYMBOL(f) -> EXPORT_SYMBOL_GPL(f) is one change.
   */
  private readonly registrations = new Map<
    string,
    { family: 'init' | 'export'; registered: string; before: string[]; after: string[]; change: ConstructChange }
  >();

  constructor(
    private readonly file: string,
    private readonly header: boolean,
    /** In an added file everything is new: only what runs at init time is worth a note. */
    private readonly addedFile: boolean,
  ) {}

  review(diffFile: DiffFile): void {
    const { changes, unplaced } = groupByConstruct(diffFile);
    for (const change of changes) {
      if (sameSequence(change.oldCode, change.newCode)) continue; // only comments or spacing changed
      this.codeChanged = true;
      this.reviewConstruct(change);
    }
    if (unplaced.length > 0) this.codeChanged = true;
    this.unknownLines.push(...unplaced);
    this.finish();
  }

  private at(change: ConstructChange) {
    return { file: this.file, ...firstChange(change) };
  }

  private ripple(subject: string, change: ConstructChange): void {
    if (!this.header) return;
    if (this.rippleSubjects.length === 0) this.rippleAt = firstChange(change);
    if (!this.rippleSubjects.includes(subject)) this.rippleSubjects.push(subject);
  }

  private reviewConstruct(change: ConstructChange): void {
    const c = change.construct;
    switch (c.kind) {
      case 'function':
        return this.reviewFunction(change);
      case 'aggregate':
        return this.reviewAggregate(change);
      case 'data':
        return this.reviewData(change);
      case 'statement':
        return this.reviewStatement(change);
      case 'macro':
        if (this.addedFile) return;
        if (this.header) return this.ripple(c.name ? `macro ${c.name}` : 'a macro', change);
        if (this.macros.length === 0) this.macroAt = firstChange(change);
        this.macros.push(c.name || 'defined above the hunk');
        return;
      case 'directive':
        if (!this.addedFile) this.ripple('preprocessor directives', change);
        return;
      case 'unknown':
        this.unknownLines.push(...change.removed, ...change.added);
        return;
    }
  }

  private reviewFunction(change: ConstructChange): void {
    const name = change.construct.name;
    const life = lifecycle(change);
    this.functions.push({ file: this.file, name, change: life });
    const marks = [...change.annotations];
    const initMark = marks.find((m) => INIT_CODE.includes(m));
    if (initMark) this.notes.push(notes.initFunction(this.at(change), name, initMark));
    if (life !== 'modified' || this.addedFile) return;

    const noTrace = marks.find((m) => m === 'notrace' || m === 'noinstr');
    if (noTrace) this.notes.push(notes.notTraceable(this.at(change), name, noTrace));
    const inline = marks.includes('inline') || marks.includes('__always_inline');
    if (this.header) this.ripple(inline ? `the inline function ${name}()` : `the function ${name}()`, change);
    else if (inline) this.notes.push(notes.inlineFunction(this.at(change), name));

    if (change.oldHead.length > 0 && change.newHead.length > 0) {
      const head = (lines: string[]) => lines.join(' ').replace(/\s*\{$/, '');
      if (head(change.oldHead) !== head(change.newHead)) {
        this.notes.push(notes.signatureChanged(this.at(change), name, marks.includes('static')));
      }
    }

    const removedStatics = new Map<string, string>();
    for (const line of change.removed) {
      const s = line.part === 'body' ? staticLocal(line.code) : undefined;
      if (s) removedStatics.set(s.name, line.code);
    }
    for (const line of change.added) {
      const s = line.part === 'body' ? staticLocal(line.code) : undefined;
      if (!s || s.readOnly) continue;
      const before = removedStatics.get(s.name);
      if (before === line.code) continue; // moved or re-indented, not new
      this.notes.push(
        notes.staticLocal(
          { file: this.file, line: line.fileLine, diffLine: line.diffLine },
          name,
          s.name,
          before === undefined ? 'adds' : 'changes',
        ),
      );
    }
  }

  private reviewAggregate(change: ConstructChange): void {
    const c = change.construct;
    if (lifecycle(change) !== 'modified' || this.addedFile) return; // a new type, or one removed outright
    const label = c.name ? `${c.keyword} ${c.name}` : `an anonymous ${c.keyword}`;
    if (c.keyword === 'enum') {
      const values = (lines: ScannedLine[]) =>
        lines
          .filter((l) => l.part === 'body')
          .map((l) => /^([A-Za-z_]\w*)/.exec(l.code)?.[1])
          .filter((v): v is string => !!v);
      const added = values(change.added);
      const removed = values(change.removed).filter((v) => !added.includes(v));
      const phrases = [
        ...(added.length ? [`${listed(added)} ${added.length === 1 ? 'is' : 'are'} added or moved`] : []),
        ...(removed.length ? [`${listed(removed)} ${removed.length === 1 ? 'is' : 'are'} removed`] : []),
      ];
      this.notes.push(notes.enumValues(this.at(change), label, phrases));
      return;
    }
    this.notes.push(notes.structLayout(this.at(change), label, describeLayoutChange(change), this.header));
  }

  private reviewData(change: ConstructChange): void {
    const name = change.construct.name;
    const marks = [...change.annotations];
    const initMark = marks.find((m) => INIT_DATA.includes(m));
    if (initMark) {
      this.notes.push(notes.initData(this.at(change), name, initMark));
      return;
    }
    if (this.addedFile) return;
    if (marks.includes('extern')) {
      this.ripple(`the declaration of ${name}`, change);
      return;
    }
    const life = lifecycle(change);
    if (life === 'added') this.notes.push(notes.globalDataAdded(this.at(change), name));
    else if (life === 'removed') this.notes.push(notes.globalDataRemoved(this.at(change), name));
    else {
      // Only what follows "=" differs: the initial value; otherwise the type or attributes.
      const beforeEquals = (lines: string[]) => lines.join(' ').split('=')[0];
      const what = beforeEquals(change.oldHead) === beforeEquals(change.newHead) ? 'initialiser' : 'definition';
      this.notes.push(notes.globalDataChanged(this.at(change), name, what));
    }
  }

  private reviewStatement(change: ConstructChange): void {
    const s = change.construct.statement;
    const where = this.at(change);
    switch (s?.kind) {
      case 'prototype':
        if (!this.addedFile) this.ripple(`the declaration of ${s.name}()`, change);
        return;
      case 'typedef':
        if (lifecycle(change) === 'modified' && !this.addedFile) this.notes.push(notes.typeChanged(where, s.name));
        return;
      case 'macro-call': {
        const call = `${s.macro}(${s.args[0] ?? ''}${s.args.length > 1 ? ', ...' : ''})`;
        if (INIT_REGISTRATION.test(s.macro)) this.register('init', s.macro, s.args[0] ?? '', change);
        else if (this.addedFile) return;
        else if (/^(asm|__asm__)$/.test(s.macro)) this.notes.push(notes.topLevelAssembly(where));
        else if (/^EXPORT_\w*SYMBOL\w*$/.test(s.macro)) this.register('export', s.macro, s.args[0] ?? '', change);
        else if (/^(MODULE_\w+|module_param\w*|core_param\w*)$/.test(s.macro))
          this.notes.push(notes.moduleMetadata(where, call));
        else if (this.header) this.ripple(call, change);
        else this.notes.push(notes.fileScopeMacro(where, call));
        return;
      }
      case 'forward-declaration':
        return;
      default:
        if (!this.addedFile) this.unknownLines.push(...change.removed, ...change.added);
    }
  }

  private register(family: 'init' | 'export', macro: string, registered: string, change: ConstructChange): void {
    const key = `${family}:${registered}`;
    const entry = this.registrations.get(key) ?? { family, registered, before: [], after: [], change };
    const life = lifecycle(change);
    if (life !== 'added') entry.before.push(macro);
    if (life !== 'removed') entry.after.push(macro);
    this.registrations.set(key, entry);
  }

  private finish(): void {
    for (const { family, registered, before, after, change } of this.registrations.values()) {
      const call = (macro: string) => `${macro}(${registered})`;
      const description =
        before.length === 1 && after.length === 1 && before[0] !== after[0]
          ? `${call(before[0]!)} to ${call(after[0]!)}`
          : call(before[0] ?? after[0]!);
      const where = this.at(change);
      this.notes.push(
        family === 'init' ? notes.initRegistration(where, description) : notes.symbolExport(where, description),
      );
    }
    if (this.rippleSubjects.length > 0) {
      this.notes.push(notes.headerRipple({ file: this.file, ...this.rippleAt }, this.rippleSubjects));
    }
    if (this.macros.length > 0) this.notes.push(notes.macroChanged({ file: this.file, ...this.macroAt }, this.macros));
    if (this.unknownLines.length > 0) {
      const sorted = [...this.unknownLines].sort((a, b) => a.diffLine - b.diffLine);
      const lines = [...new Set(sorted.map((l) => l.fileLine))];
      this.notes.push(
        notes.unknownContext({ file: this.file, line: sorted[0]!.fileLine, diffLine: sorted[0]!.diffLine }, lines),
      );
    }
  }
}

/** "member x is added; member y changes type or size". */
function describeLayoutChange(change: ConstructChange): string {
  const members = (lines: ScannedLine[]) =>
    lines
      .filter((l) => l.part === 'body' && l.code.endsWith(';') && !l.code.startsWith('}'))
      .flatMap((l) => declaredNames(l.code.replace(/;$/, '')));
  const removed = members(change.removed);
  const added = members(change.added);
  const retyped = [...new Set(added.filter((m) => removed.includes(m)))];
  const onlyAdded = added.filter((m) => !retyped.includes(m));
  const onlyRemoved = removed.filter((m) => !retyped.includes(m));
  const subject = (names: string[]) => (names.length === 1 ? `member ${names[0]}` : `members ${listed(names)}`);
  const one = (names: string[]) => names.length === 1;

  const parts: string[] = [];
  if (onlyAdded.length) parts.push(`${subject(onlyAdded)} ${one(onlyAdded) ? 'is' : 'are'} added`);
  if (onlyRemoved.length) parts.push(`${subject(onlyRemoved)} ${one(onlyRemoved) ? 'is' : 'are'} removed`);
  if (retyped.length) parts.push(`${subject(retyped)} ${one(retyped) ? 'changes' : 'change'} type or size`);
  if (parts.length === 0 && [...change.removed, ...change.added].some((l) => l.part === 'close')) {
    parts.push('its packing or alignment attributes change');
  }
  return parts.length ? parts.join('; ') : 'its members change';
}

/** Parses and reviews a unified diff; throws DiffParseError when it cannot be read. */
export function analyseDiff(text: string): DiffReport {
  const diffFiles = parseUnifiedDiff(text);
  const collected: Note[] = [];
  const functions = new Map<string, ChangedFunction>(); // by file and name
  const files = new Set<string>();
  let codeChanged = false;

  for (const diffFile of diffFiles) {
    const path = diffFile.status === 'deleted' ? diffFile.oldPath : diffFile.newPath;
    files.add(path);
    const where = { file: path };
    const kind = kindOfPath(path);
    if (kind === 'vdso') {
      collected.push(notes.vdso(where));
      continue;
    }
    if (kind === 'outside-kernel') {
      collected.push(notes.outsideKernel(where));
      continue;
    }
    if (diffFile.binary) {
      collected.push(notes.notLivePatchable(where, 'a binary file'));
      continue;
    }
    if (kind === 'boot') {
      collected.push(notes.bootCode(where));
      continue;
    }
    if (kind === 'library') {
      collected.push(notes.library(where));
      continue;
    }
    if (kind === 'assembly') {
      collected.push(notes.assembly(where));
      continue;
    }
    if (kind === 'other') {
      collected.push(notes.notLivePatchable(where, whatIsIt(path)));
      continue;
    }
    if (diffFile.status === 'deleted') {
      collected.push(notes.deletedFile(where)); // nothing to build from a deletion alone
      continue;
    }
    if (diffFile.status === 'added') collected.push(notes.newFile(where));
    if (diffFile.status === 'renamed' && diffFile.oldPath !== DEV_NULL) {
      collected.push(notes.renamedFile(where, diffFile.oldPath));
    }
    const review = new FileReview(path, kind === 'header', diffFile.status === 'added');
    review.review(diffFile);
    codeChanged ||= review.codeChanged || diffFile.status === 'added';
    collected.push(...review.notes);
    for (const fn of review.functions) {
      const key = `${fn.file}\0${fn.name}`;
      if (!functions.has(key)) functions.set(key, fn);
    }
  }

  if (!codeChanged && !collected.some((n) => n.finding.severity === 'refuse')) {
    collected.push(notes.nothingToPatch({ file: [...files][0]! }));
  }

  const findings = collected.map((n) => n.finding);
  const verdict: DiffReport['verdict'] = findings.some((f) => f.severity === 'refuse')
    ? 'refused'
    : findings.length > 0
      ? 'warnings'
      : 'ok';
  const report = { files: [...files], functions: [...functions.values()], findings, verdict };
  return { ...report, summary: summarise(report.files, report.functions, collected, verdict) };
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function summarise(
  files: string[],
  functions: ChangedFunction[],
  collected: Note[],
  verdict: DiffReport['verdict'],
): string {
  const shownFiles = files.length <= 3 ? listed(files) : `${listed(files.slice(0, 3))} and ${files.length - 3} more`;
  const changed = functions.filter((f) => f.change !== 'removed');
  const names = changed.map((f) => `${f.name}()`);
  const shownFunctions =
    names.length <= 6 ? listed(names) : `${names.slice(0, 6).join(', ')} and ${names.length - 6} more`;
  const scope =
    `The diff touches ${count(files.length, 'file')} (${shownFiles})` +
    (changed.length > 0
      ? ` and changes ${count(changed.length, 'function')}: ${shownFunctions}.`
      : ' and changes no C function by name.');

  const refusals = collected.filter((n) => n.finding.severity === 'refuse');
  const warnings = collected.filter((n) => n.finding.severity === 'warn');
  const headlines = (list: Note[], max: number) =>
    list
      .slice(0, max)
      .map((n) => n.headline)
      .join('; ') + (list.length > max ? `; and ${list.length - max} more` : '');

  if (verdict === 'refused') {
    return (
      `${scope} It cannot be shipped as a live patch as it stands: ${count(refusals.length, 'problem')} ${refusals.length === 1 ? 'blocks' : 'block'} it. ` +
      `${headlines(refusals, 3)}. Each finding says why and what to do instead; usually that is a reboot, or reworking the fix so that it changes only function bodies.` +
      (warnings.length > 0
        ? ` There ${warnings.length === 1 ? 'is' : 'are'} also ${count(warnings.length, 'warning')} to read.`
        : '')
    );
  }
  if (verdict === 'warnings') {
    return (
      `${scope} It can be built as a live patch, but ${count(warnings.length, 'point')} ${warnings.length === 1 ? 'needs' : 'need'} a human look first: ` +
      `${headlines(warnings, 3)}.`
    );
  }
  return (
    `${scope} Nothing in it looks unsafe for a live patch: it changes function bodies only, with no struct layout, global data, ` +
    'init or exit code, assembly or vDSO involved. It can go on to the compile stage, which confirms the changed functions from the object code.'
  );
}
