import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { loadSync } from '@grpc/proto-loader';
import { descriptorSetPath, grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { ACCESS_RULES, decideAccess } from './access-policy';
import { identityFromCertificate } from './identity';
import { mintToken, verifyToken } from './token';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const verify = (token: string) => verifyToken(token, publicKey, { audience: 'dispatcher', maxLifetimeSeconds: 43_200 });
const bearer = (sub: string, roles: ('operator' | 'approver' | 'auditor')[]) =>
  `Bearer ${mintToken(privateKey, { sub, roles, ttlSeconds: 600 })}`;

const CREATE = '/rebootless.dispatcher.v1.RolloutService/CreateRollout';
const APPROVE = '/rebootless.dispatcher.v1.RolloutService/ApproveRollout';
const CONNECT = '/rebootless.dispatcher.v1.AgentGateway/Connect';
const AUDIT = '/rebootless.ledger.v1.LedgerService/QueryAudit';
const PLAN = '/rebootless.ledger.v1.LedgerService/PlanUndo';

describe('decideAccess', () => {
  it('Given an operator token, Then writes are allowed and the principal names the user', () => {
    const d = decideAccess(CREATE, { authorization: bearer('alice', ['operator']) }, verify);
    expect(d).toEqual({
      allowed: true,
      principal: { identity: undefined, user: { sub: 'alice', roles: ['operator'] } },
    });
  });

  it('Given no token, Then UNAUTHENTICATED saying which role the method needs', () => {
    const d = decideAccess(CREATE, {}, verify);
    expect(d).toMatchObject({ allowed: false, code: 'UNAUTHENTICATED' });
    expect(!d.allowed && d.reason).toMatch(/bearer token with role operator/);
  });

  it('Given a token signed with another key, Then UNAUTHENTICATED', () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const token = mintToken(other, { sub: 'mallory', roles: ['operator'], ttlSeconds: 600 });
    const d = decideAccess(CREATE, { authorization: `Bearer ${token}` }, verify);
    expect(d).toMatchObject({ allowed: false, code: 'UNAUTHENTICATED', reason: expect.stringMatching(/signature/) });
  });

  it('Given an expired token, Then UNAUTHENTICATED naming the expiry', () => {
    const token = mintToken(privateKey, { sub: 'bob', roles: ['operator'], ttlSeconds: 60 }, Date.now() - 120_000);
    const d = decideAccess(CREATE, { authorization: `Bearer ${token}` }, verify);
    expect(d).toMatchObject({ allowed: false, code: 'UNAUTHENTICATED', reason: expect.stringMatching(/expired/) });
  });

  it('Given a token whose claims were edited, Then the signature no longer verifies', () => {
    const token = mintToken(privateKey, { sub: 'carol', roles: ['auditor'], ttlSeconds: 600 });
    const [v, payload, sig] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.roles = ['operator'];
    const forged = `${v}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
    expect(decideAccess(CREATE, { authorization: `Bearer ${forged}` }, verify)).toMatchObject({
      allowed: false,
      code: 'UNAUTHENTICATED',
    });
  });

  it('Given the wrong role, Then PERMISSION_DENIED naming both roles and the user', () => {
    expect(decideAccess(CREATE, { authorization: bearer('carol', ['auditor']) }, verify)).toEqual({
      allowed: false,
      code: 'PERMISSION_DENIED',
      reason: `carol holds auditor; ${CREATE} needs operator`,
      subject: 'user:carol',
    });
    expect(decideAccess(APPROVE, { authorization: bearer('alice', ['operator']) }, verify)).toMatchObject({
      allowed: false,
      code: 'PERMISSION_DENIED',
    });
    expect(decideAccess(APPROVE, { authorization: bearer('dave', ['approver']) }, verify)).toMatchObject({
      allowed: true,
    });
  });

  it('Given an auditor, Then reads are allowed and writes are not', () => {
    expect(decideAccess(AUDIT, { authorization: bearer('carol', ['auditor']) }, verify)).toMatchObject({
      allowed: true,
    });
  });

  it('Given an agent certificate, Then it may open the gateway stream but not call operator methods', () => {
    const host = { kind: 'host', id: 'web-01' } as const;
    expect(decideAccess(CONNECT, { identity: host }, verify)).toEqual({ allowed: true, principal: { identity: host } });
    expect(decideAccess(CREATE, { identity: host }, verify)).toMatchObject({ allowed: false, code: 'UNAUTHENTICATED' });
    expect(decideAccess(CONNECT, { authorization: bearer('alice', ['operator']) }, verify)).toMatchObject({
      allowed: false,
      code: 'PERMISSION_DENIED',
    });
  });

  it('Given the dispatcher service certificate, Then it may ask the ledger for an undo plan', () => {
    const dispatcher = { kind: 'service', id: 'dispatcher' } as const;
    expect(decideAccess(PLAN, { identity: dispatcher }, verify)).toMatchObject({ allowed: true });
    expect(decideAccess(PLAN, { identity: { kind: 'service', id: 'builder' } }, verify)).toMatchObject({
      allowed: false,
    });
  });

  it('Given a method the table does not know, Then it is refused (fail closed)', () => {
    expect(
      decideAccess('/rebootless.x.v1.Nope/Do', { authorization: bearer('a', ['operator']) }, verify),
    ).toMatchObject({
      allowed: false,
      code: 'PERMISSION_DENIED',
    });
  });

  it('has a rule for every rpc of every service in the contracts, and none for an rpc that does not exist', () => {
    const methods: string[] = [];
    for (const svc of Object.values(grpcServices)) {
      const def = loadSync(svc.protoPath, protoLoaderOptions)[`${svc.packageName}.${svc.serviceName}`] as Record<
        string,
        { path: string }
      >;
      methods.push(...Object.values(def).map((m) => m.path));
    }
    // The standard services every server adds beside ours: health and reflection, from the protos their packages ship.
    const standard = [
      ['grpc-health-check/proto/health/v1/health.proto', 'grpc.health.v1.Health'],
      ['@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto', 'grpc.reflection.v1.ServerReflection'],
      [
        '@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto',
        'grpc.reflection.v1alpha.ServerReflection',
      ],
    ] as const;
    for (const [file, name] of standard) {
      const def = loadSync(require.resolve(file), protoLoaderOptions)[name] as Record<string, { path: string }>;
      methods.push(...Object.values(def).map((m) => m.path));
    }
    expect(methods.length).toBeGreaterThan(25);
    expect(Object.keys(ACCESS_RULES).sort()).toEqual(methods.sort());
  });

  it('Given any certificate of the CA and no token, Then reflection is allowed (TLS itself refuses a caller without one)', () => {
    const reflect = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';
    expect(decideAccess(reflect, { identity: { kind: 'host', id: 'web-01' } }, verify)).toMatchObject({
      allowed: true,
    });
  });
});

describe('the access each RPC documents in proto/', () => {
  // FileDescriptorProto field 6 is service, ServiceDescriptorProto field 2 is method.
  const documented = new Map<string, string>();
  for (const file of fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)).file) {
    for (const loc of file.sourceCodeInfo?.location ?? []) {
      const [kind, si, sub, mi] = loc.path;
      if (kind !== 6 || sub !== 2 || loc.path.length !== 4) continue;
      const service = file.service[si!]!;
      documented.set(`/${file.package}.${service.name}/${service.method[mi!]!.name}`, loc.leadingComments);
    }
  }

  it.each(Object.entries(ACCESS_RULES).filter(([m]) => m.startsWith('/rebootless.')))(
    '%s says in its comment what the table enforces',
    (method, rule) => {
      const comment = documented.get(method) ?? '';
      const access = /Access: ([^]*?)\.\s*$/m.exec(comment.replace(/\n/g, ' '))?.[1] ?? '';
      expect(access).not.toBe('');
      if (rule.anyCertificate) expect(access).toMatch(/any client certificate of the CA; no token/);
      const said = (['approver', 'auditor', 'operator'] as const).filter((r) => access.includes(r));
      expect(said).toEqual([...(rule.roles ?? [])].sort());
      for (const service of rule.services ?? []) expect(access).toContain(`${service} service's certificate`);
      expect(access.includes("agent's host certificate")).toBe(rule.hosts === true);
    },
  );
});

describe('identityFromCertificate', () => {
  it('reads the one rebootless URI SAN and ignores DNS and IP names', () => {
    expect(
      identityFromCertificate({
        subjectaltname: 'URI:urn:rebootless:host:web-01, DNS:localhost, IP Address:127.0.0.1',
      }),
    ).toEqual({ kind: 'host', id: 'web-01' });
  });

  it('names nobody when a certificate carries two identities or none', () => {
    expect(
      identityFromCertificate({ subjectaltname: 'URI:urn:rebootless:host:a, URI:urn:rebootless:service:ledger' }),
    ).toBeUndefined();
    expect(identityFromCertificate({ subjectaltname: 'DNS:localhost' })).toBeUndefined();
    expect(identityFromCertificate(undefined)).toBeUndefined();
  });
});
