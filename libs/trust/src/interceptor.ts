// Enforces ACCESS_RULES on every call of a grpc-js server before any handler runs, and tells the
// handler who it runs as through metadata it alone may set.
import {
  Metadata,
  ServerInterceptingCall,
  status,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';
import { STATUS_DETAILS_TRAILER, encodeStatusDetails } from '@rebootless/contracts';
import { decideAccess, type AccessRule, type Principal } from './access-policy';
import { describeIdentity, identityFromCertificate } from './identity';
import { verifyToken, type TokenExpectations } from './token';

/** Set by the interceptor on allowed calls (any such header a client sent is removed first). */
export const PRINCIPAL_METADATA = 'x-rebootless-principal';

export interface DeniedCall {
  readonly method: string;
  readonly code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED';
  readonly reason: string;
  readonly subject: string;
  readonly certificateIdentity: string;
  readonly peer: string;
}

export interface AccessInterceptorOptions {
  readonly tokenKey: KeyObject;
  /** This service's audience and the longest token lifetime it accepts. */
  readonly tokens: TokenExpectations;
  readonly rules?: Readonly<Record<string, AccessRule>>;
  /** Told about every refused call, for the audit trail. Must not throw. */
  readonly onDenied?: (call: DeniedCall) => void;
  readonly now?: () => number;
}

export function accessInterceptor(options: AccessInterceptorOptions): ServerInterceptor {
  const now = options.now ?? Date.now;
  return (descriptor, call: ServerInterceptingCallInterface) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, proceed) => {
            const identity = identityFromCertificate(call.getAuthContext().sslPeerCertificate);
            const authorization = metadata.get('authorization')[0];
            const decision = decideAccess(
              descriptor.path,
              { identity, authorization: typeof authorization === 'string' ? authorization : undefined },
              (token) => verifyToken(token, options.tokenKey, options.tokens, now()),
              options.rules,
            );
            metadata.remove(PRINCIPAL_METADATA);
            if (!decision.allowed) {
              options.onDenied?.({
                method: descriptor.path,
                code: decision.code,
                reason: decision.reason,
                subject: decision.subject,
                certificateIdentity: describeIdentity(identity),
                peer: call.getPeer(),
              });
              call.sendStatus({
                code: status[decision.code],
                details: decision.reason,
                metadata: refusalTrailer(descriptor.path, decision.code, decision.reason),
              });
              return;
            }
            metadata.set(PRINCIPAL_METADATA, JSON.stringify(decision.principal));
            proceed(metadata);
          },
        });
      },
    });
}

/** The principal the interceptor attached to a call; undefined on an unauthenticated (insecure) server. */
export function principalOf(metadata: Metadata | undefined): Principal | undefined {
  const raw = metadata?.get(PRINCIPAL_METADATA)[0];
  if (typeof raw !== 'string') return undefined;
  try {
    return JSON.parse(raw) as Principal;
  } catch {
    return undefined;
  }
}

/**
 * The google.rpc details of an access refusal, as every service sends them (docs/adr/0015):
 * reason UNAUTHENTICATED (no valid credential) or ACCESS_DENIED (the table refuses it), the
 * serving service as domain (`/rebootless.builder.v1.BuildService/X` -> `rebootless.builder`).
 */
function refusalTrailer(method: string, code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED', reason: string): Metadata {
  const [root = 'rebootless', service = 'unknown'] = (method.split('/')[1] ?? '').split('.');
  const details = encodeStatusDetails(status[code], reason, {
    errorInfo: {
      reason: code === 'UNAUTHENTICATED' ? 'UNAUTHENTICATED' : 'ACCESS_DENIED',
      domain: `${root}.${service}`,
      metadata: { method },
    },
  });
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(details));
  return metadata;
}
