// Transport security as a user meets it, against the real builder process: TLS with client
// certificates from the pki, operator tokens checked per role, host certificates kept to what an
// agent may do, every refusal answered with the right status and recorded as a CallDenied event.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import {
  STATUS_DETAILS_TRAILER,
  decodeStatusDetails,
  grpcServices,
  protoLoaderOptions,
  type events,
} from '@rebootless/contracts';
import { decodeEvent } from '@rebootless/events';
import { livepatchSample } from '@rebootless/kernel-toolchain';
import {
  builtEntry,
  freshEventsTopic,
  readWholeTopic,
  startNode,
  testKafka,
  type RunningProcess,
} from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  exportParty,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  serverCredentials,
  type Identity,
  type Role,
} from '@rebootless/trust';
import { createServer } from 'node:net';

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
const BuildService = grpc.loadPackageDefinition(
  loadSync(grpcServices.build.protoPath, protoLoaderOptions),
) as unknown as {
  rebootless: { builder: { v1: { BuildService: new (address: string, creds: grpc.ChannelCredentials) => Client } } };
};

const BUILDER: Identity = { kind: 'service', id: 'builder' };

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function call(client: Client, method: string, request: object, metadata = new grpc.Metadata()) {
  return new Promise<{ code: number; details: string }>((resolve) => {
    (client[method] as (r: object, m: grpc.Metadata, o: object, cb: (e: grpc.ServiceError | null) => void) => void)(
      request,
      metadata,
      { deadline: Date.now() + 10_000 },
      (error) => resolve(error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: '' }),
    );
  });
}

/** The google.rpc.Status a refused call carried in its trailer (undefined when it had none). */
function refusalDetails(client: Client, method: string, request: object, metadata = new grpc.Metadata()) {
  return new Promise<ReturnType<typeof decodeStatusDetails> | undefined>((resolve) => {
    (client[method] as (r: object, m: grpc.Metadata, o: object, cb: (e: grpc.ServiceError | null) => void) => void)(
      request,
      metadata,
      { deadline: Date.now() + 10_000 },
      (error) => {
        const [trailer] = error?.metadata.get(STATUS_DETAILS_TRAILER) ?? [];
        resolve(Buffer.isBuffer(trailer) ? decodeStatusDetails(trailer) : undefined);
      },
    );
  });
}

function firstMessage(client: Client, method: string, request: object) {
  return new Promise<{ code: number; details: string }>((resolve) => {
    const stream = (client[method] as (r: object) => grpc.ClientReadableStream<unknown>)(request);
    stream.on('data', () => undefined);
    stream.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    stream.on('end', () => resolve({ code: grpc.status.OK, details: '' }));
  });
}

describe('a service with TLS and operator tokens (the builder as a process)', () => {
  let pki: string;
  let builderPki: string;
  let otherPki: string;
  let topic: string;
  let address: string;
  let builder: RunningProcess;
  const clients: Client[] = [];

  const clientAs = (identity: Identity, dir = pki): Client => {
    const client = new BuildService.rebootless.builder.v1.BuildService(
      address,
      channelCredentials(loadTlsMaterial(dir, identity), BUILDER),
    );
    clients.push(client);
    return client;
  };
  const bearer = (sub: string, roles: Role[]) => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${mintToken(readTokenPrivateKey(pki), { sub, roles, ttlSeconds: 600 })}`);
    return md;
  };

  beforeAll(async () => {
    pki = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-'));
    otherPki = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-other-'));
    await ensureCertificateAuthority(pki);
    for (const identity of [
      { kind: 'service', id: 'builder' },
      { kind: 'user', id: 'cli' },
      { kind: 'host', id: 'web-01' },
    ] as const) {
      await issueCertificate(pki, identity);
    }
    await issueCertificate(otherPki, { kind: 'user', id: 'cli' });
    // The builder gets its own directory: its key and certificate, ca.crt, token.pub (ADR 0013).
    builderPki = exportParty(pki, `${pki}-builder`, [{ kind: 'service', id: 'builder' }]).dir;
    topic = await freshEventsTopic('transport', 1);
    address = `127.0.0.1:${await freePort()}`;
    builder = startNode(builtEntry('apps/builder/dist/main.js'), {
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-builder-tls-')),
      REBOOTLESS_PKI_DIR: builderPki,
      EVENTS_TOPIC: topic,
      NO_COLOR: '1',
    });
    await builder.waitFor(/builder ready on/);
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    builder?.child.kill('SIGTERM');
    await builder?.exited();
    for (const dir of [pki, builderPki, otherPki]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('says at start that it serves TLS with client certificates', () => {
    expect(builder.output()).toContain(`TLS with client certificates of the CA in ${builderPki}, as service:builder`);
    expect(fs.readdirSync(builderPki).sort()).toEqual([
      'ca.crt',
      'service-builder.crt',
      'service-builder.key',
      'token.pub',
    ]);
  });

  it('answers an operator read with a token of any role', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    expect(await call(cli, 'listBuilds', {}, bearer('carol', ['auditor']))).toEqual({
      code: grpc.status.OK,
      details: '',
    });
  });

  it('refuses a call without a token as UNAUTHENTICATED, and a token without the role as PERMISSION_DENIED', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    const missing = await call(cli, 'retractPatch', { patchId: 'p', version: '1', reason: 'x' });
    expect(missing.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(missing.details).toMatch(/needs a bearer token with role operator/);

    const wrongRole = await call(
      cli,
      'retractPatch',
      { patchId: 'p', version: '1', reason: 'x' },
      bearer('carol', ['auditor']),
    );
    expect(wrongRole).toEqual({
      code: grpc.status.PERMISSION_DENIED,
      details: 'carol holds auditor; /rebootless.builder.v1.BuildService/RetractPatch needs operator',
    });

    const garbage = new grpc.Metadata();
    garbage.set('authorization', 'Bearer rbl1.not.atoken');
    expect((await call(cli, 'listBuilds', {}, garbage)).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('says why in google.rpc details a client can branch on: UNAUTHENTICATED or ACCESS_DENIED, and the method', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    const retract = { patchId: 'p', version: '1', reason: 'x' };
    const method = '/rebootless.builder.v1.BuildService/RetractPatch';
    expect((await refusalDetails(cli, 'retractPatch', retract))?.errorInfo).toEqual({
      reason: 'UNAUTHENTICATED',
      domain: 'rebootless.builder',
      metadata: { method },
    });
    expect(await refusalDetails(cli, 'retractPatch', retract, bearer('carol', ['auditor']))).toEqual({
      code: grpc.status.PERMISSION_DENIED,
      message: `carol holds auditor; ${method} needs operator`,
      errorInfo: { reason: 'ACCESS_DENIED', domain: 'rebootless.builder', metadata: { method } },
    });
  });

  it('lets an agent certificate fetch artifacts but not submit or retract', async () => {
    const agent = clientAs({ kind: 'host', id: 'web-01' });
    const fetched = await firstMessage(agent, 'fetchArtifact', { artifactDigest: 'a'.repeat(64) });
    // Past the access check: the builder itself answers that it has no such artifact.
    expect(fetched.code).toBe(grpc.status.NOT_FOUND);
    expect((await call(agent, 'retractPatch', { patchId: 'p', version: '1', reason: 'x' })).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
  });

  it('does not let a client choose its own principal through metadata', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    const forged = new grpc.Metadata();
    forged.set('x-rebootless-principal', JSON.stringify({ user: { sub: 'root', roles: ['operator'] } }));
    expect((await call(cli, 'retractPatch', { patchId: 'p', version: '1', reason: 'x' }, forged)).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
  });

  it('answers bytes that are not the request message with INVALID_ARGUMENT naming the type, after the access check', async () => {
    const raw = new grpc.Client(
      address,
      channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), BUILDER),
    );
    const send = (metadata: grpc.Metadata) =>
      new Promise<{ code: number; details: string }>((resolve) =>
        raw.makeUnaryRequest(
          '/rebootless.builder.v1.BuildService/SubmitBuild',
          (b: Buffer) => b,
          (b: Buffer) => b,
          // A tag varint that runs off the end of the message.
          Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
          metadata,
          (error) => resolve(error ? { code: error.code, details: error.details } : { code: 0, details: '' }),
        ),
      );
    try {
      expect(await send(bearer('alice', ['operator']))).toEqual({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^the request is not a valid SubmitBuildRequest message \(/),
      });
      expect((await send(new grpc.Metadata())).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      raw.close();
    }
  });

  it('records the user of the token as the actor of what the call caused', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    const submitted = await call(
      cli,
      'submitBuild',
      {
        patchName: 'actor-check',
        version: '1',
        description: 'who submitted this',
        cves: [{ id: 'CVE-2024-1086', severity: 4 }],
        kernelReleases: ['6.1.0-999-nonexistent-amd64'],
        livepatchModuleSource: Buffer.from(livepatchSample({ moduleName: 'actor_check', replacementText: 'x\n' })),
      },
      bearer('alice', ['operator']),
    );
    expect(submitted).toEqual({ code: grpc.status.OK, details: '' });
    let actor: events.Actor | undefined;
    for (let i = 0; i < 50 && !actor; i++) {
      const records = await readWholeTopic(testKafka(), topic);
      actor = records
        .map((r) => (r.value ? decodeEvent(r.value).body : undefined))
        .find((b) => b?.buildRequested?.patchName === 'actor-check')?.actor;
      if (!actor) await new Promise((r) => setTimeout(r, 200));
    }
    expect(actor).toMatchObject({ kind: 1 /* USER */, id: 'alice', origin: expect.stringContaining('127.0.0.1') });
  });

  it('refuses plaintext clients and certificates of another CA at the handshake', async () => {
    const plain = new BuildService.rebootless.builder.v1.BuildService(address, grpc.credentials.createInsecure());
    clients.push(plain);
    expect((await call(plain, 'listBuilds', {}, bearer('carol', ['auditor']))).code).toBe(grpc.status.UNAVAILABLE);
    const stranger = clientAs({ kind: 'user', id: 'cli' }, otherPki);
    expect((await call(stranger, 'listBuilds', {}, bearer('carol', ['auditor']))).code).toBe(grpc.status.UNAVAILABLE);
  });

  it('refuses a token meant for another service, and one minted to live longer than 12 hours, as UNAUTHENTICATED', async () => {
    const cli = clientAs({ kind: 'user', id: 'cli' });
    const key = readTokenPrivateKey(pki);
    const withToken = (token: string) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${token}`);
      return md;
    };
    const forLedger = mintToken(key, { sub: 'carol', roles: ['auditor'], ttlSeconds: 600, audience: ['ledger'] });
    const misaddressed = await call(cli, 'listBuilds', {}, withToken(forLedger));
    expect(misaddressed.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(misaddressed.details).toContain('the token is meant for ledger, not builder');
    const forBuilder = mintToken(key, { sub: 'carol', roles: ['auditor'], ttlSeconds: 600, audience: ['builder'] });
    expect((await call(cli, 'listBuilds', {}, withToken(forBuilder))).code).toBe(grpc.status.OK);
    const monthLong = mintToken(key, { sub: 'carol', roles: ['auditor'], ttlSeconds: 30 * 86_400 });
    const tooLong = await call(cli, 'listBuilds', {}, withToken(monthLong));
    expect(tooLong.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(tooLong.details).toContain('this service accepts at most 43200 s');
  });

  it('a client refuses a server whose certificate names another identity, even one signed by the CA', async () => {
    // The network attacker between CLI and service holds a host's key (a compromised host) and
    // answers in the builder's place: the CA signed that certificate, but it does not name the builder.
    const impostor = new grpc.Server();
    impostor.addService(
      (BuildService.rebootless.builder.v1.BuildService as unknown as { service: grpc.ServiceDefinition }).service,
      { listBuilds: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { builds: [] }) },
    );
    const port = await new Promise<number>((resolve, reject) =>
      impostor.bindAsync(
        '127.0.0.1:0',
        serverCredentials(loadTlsMaterial(pki, { kind: 'host', id: 'web-01' })),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      ),
    );
    try {
      const fooled = new BuildService.rebootless.builder.v1.BuildService(
        `127.0.0.1:${port}`,
        channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), BUILDER),
      );
      clients.push(fooled);
      const answer = await call(fooled, 'listBuilds', {}, bearer('carol', ['auditor']));
      expect(answer.code).toBe(grpc.status.UNAVAILABLE);
      // The genuine builder, called by a client expecting the ledger, is refused the same way.
      const misdirected = new BuildService.rebootless.builder.v1.BuildService(
        address,
        channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), { kind: 'service', id: 'ledger' }),
      );
      clients.push(misdirected);
      expect((await call(misdirected, 'listBuilds', {}, bearer('carol', ['auditor']))).code).toBe(
        grpc.status.UNAVAILABLE,
      );
      // And the one it expects is reached.
      expect(
        (await call(clientAs({ kind: 'user', id: 'cli' }), 'listBuilds', {}, bearer('carol', ['auditor']))).code,
      ).toBe(grpc.status.OK);
    } finally {
      impostor.forceShutdown();
    }
  });

  it('records every refused call as a CallDenied event saying who, what and why', async () => {
    let denied: events.CallDenied[] = [];
    for (let i = 0; i < 50 && denied.length < 5; i++) {
      const records = await readWholeTopic(testKafka(), topic);
      denied = records.flatMap((r) => {
        const body = r.value ? decodeEvent(r.value).body : undefined;
        return body?.callDenied ? [body.callDenied] : [];
      });
      if (denied.length < 5) await new Promise((r) => setTimeout(r, 200));
    }
    expect(denied).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          method: '/rebootless.builder.v1.BuildService/RetractPatch',
          code: 'PERMISSION_DENIED',
          subject: 'user:carol',
          certificateIdentity: 'user:cli',
        }),
        expect.objectContaining({
          method: '/rebootless.builder.v1.BuildService/RetractPatch',
          code: 'UNAUTHENTICATED',
          certificateIdentity: 'host:web-01',
        }),
      ]),
    );
    expect(denied.every((d) => d.peer.startsWith('127.0.0.1:') || d.peer.startsWith('ipv4:127.0.0.1'))).toBe(true);
  });
});
