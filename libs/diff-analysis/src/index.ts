export { DiffParseError, DEV_NULL, parseUnifiedDiff } from './unified-diff';
export type { DiffFile, DiffFileStatus, DiffHunk } from './unified-diff';
export { analyseDiff } from './diff-review';
export type { ChangedFunction, DiffReport } from './diff-review';
export type { Finding, FindingSeverity } from './reviewer-notes';
