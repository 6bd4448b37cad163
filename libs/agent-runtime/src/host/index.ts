export * from './host-facts';
export * from './kernel-errors';
export * from './livepatch-sysfs';
export * from './simulated-kernel-file';
