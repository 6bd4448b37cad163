export * from './kafka';
export * from './process';
