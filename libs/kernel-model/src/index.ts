export * from './kernel-port';
export * from './kernel-release';
export * from './taint';
export * from './clock';
export * from './functions';
export * from './simulated-kernel';
export * from './patch-stack';
