export * from './config';
export * from './service-settings';
export {
  bootService,
  SERVICE_CONFIG,
  EXIT_CONFIG,
  EXIT_CANTCREAT,
  EXIT_UNAVAILABLE,
  SHUTDOWN_TIMEOUT_MS,
  DRAIN_GRACE_MS,
  type BootServiceOptions,
  type ServiceContext,
  type StopReason,
} from './boot-service';
export * from './event-log';
export { callDenied, callerActor, clientCredentials, serverTransport } from './transport';
export { guardRequestDeserializers, malformedRequestInterceptor } from './malformed-requests';
export { RpcErrorMapping, rule, type ErrorLog, type ErrorRule } from './rpc-errors';
export { addReflection } from './reflection';
export { createServiceLogger, ServiceLogger } from './logger';
export * from './version';
