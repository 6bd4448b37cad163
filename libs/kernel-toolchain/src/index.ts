export * from './errors';
export * from './validate';
export {
  currentAndPreviousCloudReleases,
  currentDebianCloudRelease,
  debianCloudReleases,
  parseDepends,
  parseStanzas,
} from './apt';
export type { Dependency, Stanza } from './apt';
// apt and child-process plumbing, shared with libs/kernel-lab (which fetches kernel images the same way).
export { aptHasLists, aptShow, checkInterrupted, errorLines, noListsError, runAptTool } from './apt';
export { findExecutable, minimalEnv, runProcess, SpawnError } from './process';
export type { RunOptions, RunResult } from './process';
export * from './headers-cache';
export * from './compile';
export * from './diagnostics';
export * from './modinfo';
export * from './livepatch-sample';
export * from './sandbox';
export * from './kernel-profile';
export * from './klp-build';
export * from './module-signature';
export { rebootlessCacheDir } from './cache-root';
