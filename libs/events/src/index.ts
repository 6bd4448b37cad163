export * from './event-types';
export * from './uuidv7';
export * from './signing';
export * from './chain';
export * from './wire';
export * from './verifier';
export * from './seal-verdicts';
export * from './producer-authority';
