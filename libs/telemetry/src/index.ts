export * from './start';
export * from './spans';
export * from './metrics';
export * from './logs';
