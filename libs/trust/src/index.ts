export * from './identity';
export * from './token';
export * from './access-policy';
export * from './pki';
export * from './tls';
export * from './interceptor';
