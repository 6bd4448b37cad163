// Generated code lives in ./gen (npm run proto); each proto package is one namespace.
export * as events from './gen/index.rebootless.events.v1';
export * as builder from './gen/index.rebootless.builder.v1';
export * as dispatcher from './gen/index.rebootless.dispatcher.v1';
export * as agent from './gen/index.rebootless.agent.v1';
export * as ledger from './gen/index.rebootless.ledger.v1';
export * as rpc from './gen/index.google.rpc';
export { Timestamp } from './gen/google/protobuf/timestamp';
export * from './loader';
export * from './timestamp';
export * from './status-details';
