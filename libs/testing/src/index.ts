export * from './kafka';
export * from './process';
export * from './otlp-receiver';
export * from './trace-view';
export * from './fleet/rig';
export * from './fleet/simulated-fleet';
export * from './prometheus';
export * from './kafka-cluster';
