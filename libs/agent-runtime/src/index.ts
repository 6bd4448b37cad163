export * from './host';
export * from './verification';
export * from './agent';
export * from './state/agent-state';
export * from './state/event-outbox';
export * from './talk/event-sink';
export * from './talk/gateway-link';
export * from './talk/artifact-fetch';
export * from './talk/grpc-clients';
export * from './talk/shared-artifact-downloads';
export * from './kernel-ipc';
export * from './status-report';
// Test support shared with the dispatcher's tests and benchmarks: real gRPC endpoints, signed artifacts.
export * from './testing/agent-harness';
export * from './testing/fixtures';
export * from './drift-schedule';
