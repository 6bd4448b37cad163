// The LedgerService's queries, each read model's in its folder.
export * from './hosts/queries';
export { getRollout } from './rollouts/queries';
export { listPatches, patchMap } from './catalog/queries';
export { queryAudit } from './audit/queries';
export { integrityFindingCount, integrityFindings } from './findings/queries';
