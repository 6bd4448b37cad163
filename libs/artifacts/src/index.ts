export * from './manifest';
export * from './module-digest';
export * from './artifact-store';
export * from './artifact-cache';
