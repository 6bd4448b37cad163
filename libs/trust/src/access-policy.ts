// Who may call what (DESIGN.md section 7). One table for every service, so the threat model in
// docs/ and the code that enforces it read the same. Pure: the gRPC interceptor feeds it the
// caller's certificate identity and token and carries out its decision.
import { describeIdentity, type Identity } from './identity';
import { TokenError, type Role, type TokenClaims } from './token';

export interface AccessRule {
  /** Anyone holding a certificate of the CA (TLS already checked it). */
  readonly anyCertificate?: true;
  /** Operator tokens carrying one of these roles. */
  readonly roles?: readonly Role[];
  /** An agent's certificate: the handler must still check the host it speaks for. */
  readonly hosts?: true;
  /** Services, by the name their certificate carries. */
  readonly services?: readonly string[];
}

const WRITE: AccessRule = { roles: ['operator'] };
const READ: AccessRule = { roles: ['auditor', 'operator', 'approver'] };

/** Full method path → rule. A method missing here is refused: the table fails closed. */
export const ACCESS_RULES: Readonly<Record<string, AccessRule>> = {
  '/grpc.health.v1.Health/Check': { anyCertificate: true },
  '/grpc.health.v1.Health/Watch': { anyCertificate: true },
  '/grpc.health.v1.Health/List': { anyCertificate: true },
  // Reflection describes only what proto/ already publishes; a certificate keeps strangers out (ADR 0018).
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': { anyCertificate: true },
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': { anyCertificate: true },

  '/rebootless.builder.v1.BuildService/SubmitBuild': WRITE,
  '/rebootless.builder.v1.BuildService/CancelBuild': WRITE,
  '/rebootless.builder.v1.BuildService/RetractPatch': WRITE,
  '/rebootless.builder.v1.BuildService/WatchBuild': READ,
  '/rebootless.builder.v1.BuildService/GetBuild': { ...READ, services: ['dispatcher'] },
  '/rebootless.builder.v1.BuildService/ListBuilds': { ...READ, services: ['dispatcher'] },
  '/rebootless.builder.v1.BuildService/FetchArtifact': { ...READ, hosts: true, services: ['dispatcher'] },

  '/rebootless.dispatcher.v1.AgentGateway/Connect': { hosts: true },
  // The site's artifact cache (ADR 0026): any host of the deployment's CA, as the builder allows.
  '/rebootless.dispatcher.v1.AgentGateway/FetchArtifact': { hosts: true },
  '/rebootless.dispatcher.v1.RolloutService/CreateRollout': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/PauseRollout': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/ResumeRollout': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/AbortRollout': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/RollbackRollout': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/Undo': WRITE,
  // Revoking a host's agent key silences the host's facts: an operator's action, like a rollout.
  '/rebootless.dispatcher.v1.RolloutService/RevokeAgentKey': WRITE,
  '/rebootless.dispatcher.v1.RolloutService/ApproveRollout': { roles: ['approver'] },
  '/rebootless.dispatcher.v1.RolloutService/GetRollout': READ,
  '/rebootless.dispatcher.v1.RolloutService/ListRollouts': READ,
  '/rebootless.dispatcher.v1.RolloutService/WatchRollout': READ,
  // Issue 21: taking a patch out of a host's quarantine is an operator's write, audited.
  '/rebootless.dispatcher.v1.RolloutService/ClearQuarantine': WRITE,

  '/rebootless.ledger.v1.LedgerService/GetHost': { ...READ, services: ['dispatcher'] },
  '/rebootless.ledger.v1.LedgerService/ListHosts': { ...READ, services: ['dispatcher'] },
  '/rebootless.ledger.v1.LedgerService/CountHosts': { ...READ, services: ['dispatcher'] },
  '/rebootless.ledger.v1.LedgerService/GetHostStackAt': READ,
  '/rebootless.ledger.v1.LedgerService/GetHostHistory': READ,
  '/rebootless.ledger.v1.LedgerService/ListPatches': READ,
  '/rebootless.ledger.v1.LedgerService/GetRollout': READ,
  '/rebootless.ledger.v1.LedgerService/QueryAudit': READ,
  '/rebootless.ledger.v1.LedgerService/PlanUndo': { ...READ, services: ['dispatcher'] },
  '/rebootless.ledger.v1.LedgerService/ComplianceReport': READ,
  '/rebootless.ledger.v1.LedgerService/VexReport': READ,
  '/rebootless.ledger.v1.LedgerService/VerifyIntegrity': READ,

  // Bound to loopback on the host itself, for the local status command run by root.
  '/rebootless.agent.v1.AgentControl/GetStatus': { anyCertificate: true },
};

/** Who a call runs as once allowed: handlers read it to attribute events and check the host. */
export interface Principal {
  readonly identity?: Identity;
  /** Set when the call was allowed by an operator token. */
  readonly user?: { readonly sub: string; readonly roles: readonly Role[] };
}

export type AccessDecision =
  | { readonly allowed: true; readonly principal: Principal }
  | {
      readonly allowed: false;
      readonly code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED';
      readonly reason: string;
      /** As much of the caller as is known, for the audit event. */
      readonly subject: string;
    };

export interface CallerCredentials {
  readonly identity?: Identity;
  /** The raw value of the authorization metadata, if any. */
  readonly authorization?: string;
}

export function decideAccess(
  method: string,
  caller: CallerCredentials,
  verify: (token: string) => TokenClaims,
  rules: Readonly<Record<string, AccessRule>> = ACCESS_RULES,
): AccessDecision {
  const { identity } = caller;
  const deny = (code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED', reason: string, subject = describeIdentity(identity)) =>
    ({ allowed: false, code, reason, subject }) as const;

  const rule = rules[method];
  if (!rule) return deny('PERMISSION_DENIED', `no access rule allows ${method}`);
  if (rule.anyCertificate) return { allowed: true, principal: { identity } };
  if (identity?.kind === 'host' && rule.hosts) return { allowed: true, principal: { identity } };
  if (identity?.kind === 'service' && rule.services?.includes(identity.id)) {
    return { allowed: true, principal: { identity } };
  }
  if (!rule.roles) {
    return deny('PERMISSION_DENIED', `${describeIdentity(identity)} may not call ${method}`);
  }
  const header = caller.authorization;
  if (!header) {
    return deny(
      'UNAUTHENTICATED',
      `${method} needs a bearer token with role ${rule.roles.join(' or ')} (authorization: Bearer <token>)`,
    );
  }
  const match = /^Bearer ([!-~]+)$/.exec(header);
  if (!match) return deny('UNAUTHENTICATED', 'the authorization header is not "Bearer <token>"');
  let claims: TokenClaims;
  try {
    claims = verify(match[1]!);
  } catch (error) {
    const why = error instanceof TokenError ? error.message : 'the token could not be checked';
    return deny('UNAUTHENTICATED', why);
  }
  const user = `user:${claims.sub}`;
  if (!claims.roles.some((role) => rule.roles!.includes(role))) {
    return deny(
      'PERMISSION_DENIED',
      `${claims.sub} holds ${claims.roles.join(', ')}; ${method} needs ${rule.roles.join(' or ')}`,
      user,
    );
  }
  return { allowed: true, principal: { identity, user: { sub: claims.sub, roles: claims.roles } } };
}
