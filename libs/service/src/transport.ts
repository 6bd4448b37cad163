// Transport security for a service: the gRPC server's credentials and access interceptor, and
// the credentials its own clients (dispatcher → ledger, agent → dispatcher/builder) present.
import * as path from 'node:path';
import { ChannelCredentials, ServerCredentials, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import { events } from '@rebootless/contracts';
import type { EventDraft } from '@rebootless/events';
import {
  DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
  TOKEN_PUBLIC_KEY,
  accessInterceptor,
  channelCredentials,
  loadTlsMaterial,
  principalOf,
  readTokenPublicKey,
  serverCredentials,
  type DeniedCall,
  type Identity,
} from '@rebootless/trust';
import type { TransportSecurity } from './service-settings';

export interface ServerTransport {
  readonly credentials: ServerCredentials;
  readonly interceptors: ServerInterceptor[];
  /** For the start log: what a reader must know about how the server is exposed. */
  readonly description: string;
}

export function serverTransport(
  security: TransportSecurity,
  identity: Identity,
  onDenied: (call: DeniedCall) => void,
  maxTokenLifetimeSeconds = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
): ServerTransport {
  if (security.mode === 'insecure') {
    return {
      credentials: ServerCredentials.createInsecure(),
      interceptors: [],
      description:
        'INSECURE: plaintext gRPC, no client certificates, no tokens, anyone who reaches the port can call ' +
        'every method (REBOOTLESS_INSECURE=true); set REBOOTLESS_PKI_DIR instead outside a test',
    };
  }
  const material = loadTlsMaterial(security.pkiDir, identity);
  const tokenKey = readTokenPublicKey(path.join(security.pkiDir, TOKEN_PUBLIC_KEY));
  return {
    credentials: serverCredentials(material),
    // A token names the services it is for: this one's name, or "rebootless" for all of them.
    interceptors: [
      accessInterceptor({
        tokenKey,
        onDenied,
        tokens: { audience: identity.id, maxLifetimeSeconds: maxTokenLifetimeSeconds },
      }),
    ],
    description: `TLS with client certificates of the CA in ${security.pkiDir}, as ${identity.kind}:${identity.id}`,
  };
}

/** What this service presents when it calls another one, and the identity it expects back. */
export function clientCredentials(
  security: TransportSecurity,
  identity: Identity,
  server: Identity | readonly Identity[],
): ChannelCredentials {
  return security.mode === 'insecure'
    ? ChannelCredentials.createInsecure()
    : channelCredentials(loadTlsMaterial(security.pkiDir, identity), server);
}

export function callDenied(service: string, denied: DeniedCall): EventDraft {
  return {
    stream: `producer/${service}`,
    actor: { kind: events.ActorKind.ACTOR_KIND_USER, id: denied.subject, origin: denied.peer },
    payload: {
      type: 'CallDenied',
      data: {
        method: denied.method,
        code: denied.code,
        reason: denied.reason,
        subject: denied.subject,
        certificateIdentity: denied.certificateIdentity,
        peer: denied.peer,
        target: '',
      },
    },
  };
}

/**
 * Who made a call, as events record it (PCI-DSS 10.2.2 user identity and origination): the
 * token's user, else the certificate's identity, else "unauthenticated" on a plaintext server.
 */
export function callerActor(metadata: Metadata | undefined, peer: string): events.Actor {
  const principal = principalOf(metadata);
  if (principal?.user) return { kind: events.ActorKind.ACTOR_KIND_USER, id: principal.user.sub, origin: peer };
  const identity = principal?.identity;
  if (identity) {
    const kind = {
      host: events.ActorKind.ACTOR_KIND_HOST,
      service: events.ActorKind.ACTOR_KIND_SERVICE,
      user: events.ActorKind.ACTOR_KIND_USER,
    }[identity.kind];
    return { kind, id: identity.id, origin: peer };
  }
  return { kind: events.ActorKind.ACTOR_KIND_USER, id: 'unauthenticated', origin: peer };
}
