export * from './topic';
export * from './log-reader';
export * from './chain-state';
export * from './publisher';
export * from './consumer';
export * from './trusted-keys';
export * from './whole-send';
export * from './gathered-sends';
