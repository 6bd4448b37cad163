export * from './errors';
export * from './patch-catalog';
export * from './fleet';
export * from './host-selection';
export * from './maintenance-window';
export * from './wave-planner';
export * from './rollout-state';
export * from './rollout-decider';
export * from './command-id';
export * from './rollout-planner';
export * from './rollout-view';
export * from './first-wave-approval';
/** The dispatcher in miniature the rollout tests drive (also the ledger's property test). */
export * as rolloutTesting from './test-fleet';
