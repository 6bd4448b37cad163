// The agent gateway over real TLS (issue 7): an agent speaks only for the host its certificate
// names, and each refusal is audited like any other denied call.
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import {
  STATUS_DETAILS_TRAILER,
  decodeStatusDetails,
  dispatcher as dispatcherMessages,
  grpcServices,
  protoLoaderOptions,
  type dispatcher,
  type events,
} from '@rebootless/contracts';
import { appendToChain, decodeEvent, generateSigningKey, startEpoch } from '@rebootless/events';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  type Identity,
} from '@rebootless/trust';
import { startBuilder, startDispatcher, type ServiceProcess } from '@rebootless/testing';

const RELEASE = '6.1.0-56-cloud-amd64';

let pki: string;
let topic: string;
let address: string;
let dispatcherProcess: ServiceProcess;

beforeAll(async () => {
  pki = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-gw-tls-'));
  await ensureCertificateAuthority(pki);
  for (const identity of [
    { kind: 'service', id: 'dispatcher' },
    { kind: 'host', id: 'web-a' },
    { kind: 'host', id: 'evil-01' },
    { kind: 'user', id: 'cli' },
  ] as const) {
    await issueCertificate(pki, identity);
  }
  topic = await freshEventsTopic('gateway-tls', 3);
  ({ process: dispatcherProcess, address } = await startDispatcher({
    topic,
    brokers: process.env['KAFKA_BROKERS']!,
    dataDir: fs.mkdtempSync(path.join(tmpdir(), 'rebootless-gw-tls-data-')),
    extra: { REBOOTLESS_PKI_DIR: pki, REBOOTLESS_INSECURE: '' },
  }));
});

afterAll(async () => {
  await dispatcherProcess?.stop();
  if (pki) fs.rmSync(pki, { recursive: true, force: true });
});

function openStream(identity: Identity) {
  const def = loadSync(grpcServices.agentGateway.protoPath, protoLoaderOptions);
  const Gateway = (
    grpc.loadPackageDefinition(def) as unknown as {
      rebootless: { dispatcher: { v1: { AgentGateway: grpc.ServiceClientConstructor } } };
    }
  ).rebootless.dispatcher.v1.AgentGateway;
  const client = new Gateway(
    address,
    channelCredentials(loadTlsMaterial(pki, identity), { kind: 'service', id: 'dispatcher' }),
    {
      'grpc.ssl_target_name_override': 'localhost',
    },
  );
  const call = (client['connect'] as () => grpc.ClientDuplexStream<unknown, dispatcher.ConnectResponse>).call(client);
  const received: dispatcher.ConnectResponse[] = [];
  let failure: grpc.ServiceError | undefined;
  call.on('data', (m: dispatcher.ConnectResponse) => received.push(m));
  call.on('error', (e: grpc.ServiceError) => (failure = e));
  return { client, call, received, failed: () => failure };
}

async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function hello(hostId: string) {
  return {
    messageId: '1',
    hello: { facts: { hostId, kernelRelease: RELEASE, labels: {} }, agentPublicKey: Buffer.alloc(32) },
  };
}

function envelopesOf(producerId: string, hostId: string): Buffer[] {
  const key = generateSigningKey();
  const { events: chained } = appendToChain(
    startEpoch(producerId, 1),
    [
      {
        stream: `host/${hostId}`,
        payload: {
          type: 'ChainEpochStarted',
          data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
        },
      },
    ],
    key,
  );
  return chained.map((e) => Buffer.from(e.envelope));
}

/** evil-01's own chain, sealed with its own key: an epoch start, then `draft`. */
function ownChainSaying(draft: Parameters<typeof appendToChain>[1][number]): Buffer[] {
  const key = generateSigningKey();
  const { events: chained } = appendToChain(
    startEpoch('agent/evil-01', 1),
    [
      {
        stream: 'host/evil-01',
        payload: {
          type: 'ChainEpochStarted',
          data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
        },
      },
      draft,
    ],
    key,
  );
  return chained.map((e) => Buffer.from(e.envelope));
}

describe('an agent holding the certificate of host evil-01, relaying its own sealed chain', () => {
  const patchAppliedOnWeb02 = ownChainSaying({
    stream: 'host/evil-01',
    payload: {
      type: 'PatchApplied',
      data: {
        hostId: 'web-02',
        commandId: '',
        patchId: 'nft-verdict',
        version: '1',
        moduleName: 'lp_nft_1',
        transitionMs: '1',
        forced: false,
        replace: false,
        functions: [],
        stack: [],
      },
    },
  });
  const retraction = ownChainSaying({
    stream: 'patch/nft-verdict',
    payload: { type: 'PatchRetracted', data: { patchId: 'nft-verdict', version: '1', reason: 'forged' } },
  });

  it.each([
    [
      'that web-02 applied a patch',
      patchAppliedOnWeb02,
      'the agent of evil-01 may speak only about its own host, not "web-02"',
    ],
    ['that a patch is retracted', retraction, 'an agent may not emit PatchRetracted'],
  ])('cannot say %s: PERMISSION_DENIED, nothing written, CallDenied recorded', async (_, envelopes, reason) => {
    const { client, call, received, failed } = openStream({ kind: 'host', id: 'evil-01' });
    call.write(hello('evil-01'));
    call.write({ messageId: '2', relayEvents: { envelopes } });
    await until(() => failed() !== undefined, 'the stream was refused');
    expect(failed()!.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(failed()!.details).toContain(reason);
    expect(received.map((m) => m.ack?.messageId)).toEqual(['1']);
    let records = await readWholeTopic(testKafka(), topic);
    // Not even the epoch start of the refused batch was written.
    expect(records.filter((r) => r.value && envelopes.some((e) => Buffer.compare(r.value!, e) === 0))).toEqual([]);
    let denied: events.CallDenied[] = [];
    for (let i = 0; i < 60 && denied.length === 0; i++) {
      if (i > 0) {
        await new Promise((r) => setTimeout(r, 250));
        records = await readWholeTopic(testKafka(), topic);
      }
      denied = records.flatMap((r) => {
        const body = r.value ? decodeEvent(r.value).body : undefined;
        return body?.callDenied && body.callDenied.reason.includes(reason) ? [body.callDenied] : [];
      });
    }
    expect(denied).toEqual([
      expect.objectContaining({
        subject: 'host:evil-01',
        code: 'PERMISSION_DENIED',
        reason: expect.stringContaining(reason),
      }),
    ]);
    client.close();
  });
});

describe('an agent holding the certificate of host web-a', () => {
  it('may say hello as web-a and relay web-a events', async () => {
    const { client, call, received, failed } = openStream({ kind: 'host', id: 'web-a' });
    call.write(hello('web-a'));
    call.write({ messageId: '2', relayEvents: { envelopes: envelopesOf('agent/web-a', 'web-a') } });
    await until(() => received.some((m) => m.ack?.messageId === '2'), 'the relay was acknowledged');
    expect(failed()).toBeUndefined();
    call.end();
    client.close();
  });

  it("is vouched for: the gateway's AgentKeyBound names the certificate and comes before the epoch start it binds", async () => {
    const { client, call, received } = openStream({ kind: 'host', id: 'web-a' });
    call.write(hello('web-a'));
    const relayed = envelopesOf('agent/web-a', 'web-a');
    call.write({ messageId: '2', relayEvents: { envelopes: relayed } });
    await until(() => received.some((m) => m.ack?.messageId === '2'), 'the relay was acknowledged');
    call.end();
    client.close();

    const started = decodeEvent(relayed[0]!).body;
    const records = await readWholeTopic(testKafka(), topic);
    const epochStart = records.find((r) => r.value && Buffer.compare(r.value, relayed[0]!) === 0)!;
    const bindings = records.filter((r) => {
      const b = r.value ? decodeEvent(r.value).body.agentKeyBound : undefined;
      return b && Buffer.from(b.publicKey).equals(Buffer.from(started.chainEpochStarted!.publicKey));
    });
    expect(bindings).toHaveLength(1);
    const binding = bindings[0]!;
    const body = decodeEvent(binding.value!).body;
    const certificate = new X509Certificate(loadTlsMaterial(pki, { kind: 'host', id: 'web-a' }).cert);
    expect({ producer: body.producer?.producerId, stream: body.stream, ...body.agentKeyBound }).toEqual({
      producer: 'dispatcher',
      stream: 'host/web-a',
      hostId: 'web-a',
      producerId: 'agent/web-a',
      epoch: 1,
      publicKey: started.chainEpochStarted!.publicKey,
      certificateFingerprint: certificate.fingerprint256.replace(/:/g, '').toLowerCase(),
      certificateIdentity: 'web-a',
    });
    // Same partition (the host's stream), earlier offset: a reader meets the binding first.
    expect(binding.partition).toBe(epochStart.partition);
    expect(BigInt(binding.offset)).toBeLessThan(BigInt(epochStart.offset));
  });

  it('cannot say hello as web-b: PERMISSION_DENIED', async () => {
    const { client, call, failed } = openStream({ kind: 'host', id: 'web-a' });
    call.write(hello('web-b'));
    await until(() => failed() !== undefined, 'the stream was refused');
    expect({ code: failed()!.code, details: failed()!.details }).toEqual({
      code: grpc.status.PERMISSION_DENIED,
      details: 'the certificate names host web-a, not web-b',
    });
    const [trailer] = failed()!.metadata.get(STATUS_DETAILS_TRAILER);
    expect(decodeStatusDetails(trailer as Buffer).errorInfo).toEqual({
      reason: 'NOT_THIS_HOST',
      domain: 'rebootless.dispatcher',
      metadata: {},
    });
    client.close();
  });

  it("cannot relay (sign for) web-b's events: PERMISSION_DENIED, nothing written", async () => {
    const { client, call, received, failed } = openStream({ kind: 'host', id: 'web-a' });
    call.write(hello('web-a'));
    const forged = envelopesOf('agent/web-b', 'web-b');
    call.write({ messageId: '2', relayEvents: { envelopes: forged } });
    await until(() => failed() !== undefined, 'the stream was refused');
    expect(failed()!.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(received.map((m) => m.ack?.messageId)).toEqual(['1']);
    const records = await readWholeTopic(testKafka(), topic);
    expect(records.filter((r) => r.value && Buffer.compare(r.value, forged[0]!) === 0)).toEqual([]);
    // A refused relay binds nothing either.
    expect(records.filter((r) => r.value && decodeEvent(r.value).body.agentKeyBound?.hostId === 'web-b')).toEqual([]);
    client.close();
  });

  it('an operator client certificate cannot open an agent stream at all', async () => {
    const { client, call, failed } = openStream({ kind: 'user', id: 'cli' });
    call.write(hello('web-a'));
    await until(() => failed() !== undefined, 'the stream was refused');
    expect(failed()!.code).toBe(grpc.status.PERMISSION_DENIED);
    client.close();
  });

  it('each refusal is in the log as a CallDenied event naming the certificate and the reason', async () => {
    let denied: events.CallDenied[] = [];
    for (let i = 0; i < 60 && denied.length < 3; i++) {
      const records = await readWholeTopic(testKafka(), topic);
      denied = records.flatMap((r) => {
        const body = r.value ? decodeEvent(r.value).body : undefined;
        return body?.callDenied ? [body.callDenied] : [];
      });
      if (denied.length < 3) await new Promise((r) => setTimeout(r, 250));
    }
    expect(denied).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ subject: 'host:web-a', reason: 'the certificate names host web-a, not web-b' }),
        expect.objectContaining({ subject: 'host:web-a', reason: expect.stringContaining('agent/web-b') }),
        expect.objectContaining({ certificateIdentity: 'user:cli', code: 'PERMISSION_DENIED' }),
      ]),
    );
  });
});

// The site artifact cache (ADR 0026) is behind the same door as the agent stream. This dispatcher
// has no builder to fetch from, so a caller who gets past TLS and the access table is told so
// (FAILED_PRECONDITION ARTIFACTS_NOT_SERVED); anyone else never reaches the cache.
describe('FetchArtifact on the gateway', () => {
  const DIGEST = 'ab'.repeat(32);

  function fetchWith(
    credentials: grpc.ChannelCredentials,
    at = address,
  ): Promise<{ code: grpc.status; details: string; got: number }> {
    const client = new grpc.Client(at, credentials, { 'grpc.ssl_target_name_override': 'localhost' });
    return new Promise((resolve) => {
      let got = 0;
      const call = client.makeServerStreamRequest(
        '/rebootless.dispatcher.v1.AgentGateway/FetchArtifact',
        (m: { artifactDigest: string }) => Buffer.from(dispatcherMessages.FetchArtifactRequest.encode(m).finish()),
        (b: Buffer) => b,
        { artifactDigest: DIGEST },
        { deadline: Date.now() + 15_000 },
      );
      call.on('data', () => (got += 1));
      call.on('error', (e: grpc.ServiceError) => {
        client.close();
        resolve({ code: e.code, details: e.details, got });
      });
      call.on('end', () => {
        client.close();
        resolve({ code: grpc.status.OK, details: '', got });
      });
    });
  }

  it('answers a host certificate of the deployment (past TLS and the access table)', async () => {
    const r = await fetchWith(
      channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: 'web-a' }), { kind: 'service', id: 'dispatcher' }),
    );
    expect(r).toEqual({
      code: grpc.status.FAILED_PRECONDITION,
      details: 'this dispatcher serves no artifacts (DISPATCHER_BUILDER_ADDRESS is unset): fetch from the builder',
      got: 0,
    });
  });

  it("with a builder configured, asks it over mTLS as the dispatcher service and passes on the builder's answer", async () => {
    await issueCertificate(pki, { kind: 'service', id: 'builder' });
    const env = {
      topic,
      brokers: process.env['KAFKA_BROKERS']!,
      extra: { REBOOTLESS_PKI_DIR: pki, REBOOTLESS_INSECURE: '' },
    };
    const built = await startBuilder({ ...env, dataDir: fs.mkdtempSync(path.join(tmpdir(), 'rebootless-gw-tls-b-')) });
    const caching = await startDispatcher({
      ...env,
      dataDir: fs.mkdtempSync(path.join(tmpdir(), 'rebootless-gw-tls-d-')),
      extra: { ...env.extra, DISPATCHER_BUILDER_ADDRESS: built.address },
    });
    try {
      const r = await fetchWith(
        channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: 'web-a' }), { kind: 'service', id: 'dispatcher' }),
        caching.address,
      );
      // The builder itself answered: the dispatcher's certificate got it past the builder's TLS and access table.
      expect(r.code).toBe(grpc.status.NOT_FOUND);
      expect(r.details).toContain(`the builder at ${built.address} answered FetchArtifact ${DIGEST} with NOT_FOUND: `);
    } finally {
      await caching.process.stop();
      await built.process.stop();
    }
  });

  it('refuses a client without a certificate: the TLS handshake fails, nothing is served', async () => {
    const ca = fs.readFileSync(path.join(pki, 'ca.crt'));
    const r = await fetchWith(grpc.credentials.createSsl(ca));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.got).toBe(0);
  });

  it("refuses a host certificate from another CA (a host minted by someone else's PKI)", async () => {
    const otherPki = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-gw-tls-other-'));
    try {
      await ensureCertificateAuthority(otherPki);
      await issueCertificate(otherPki, { kind: 'host', id: 'web-a' });
      const forged = loadTlsMaterial(otherPki, { kind: 'host', id: 'web-a' });
      const ca = fs.readFileSync(path.join(pki, 'ca.crt'));
      const r = await fetchWith(grpc.credentials.createSsl(ca, forged.key, forged.cert));
      expect(r.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.got).toBe(0);
    } finally {
      fs.rmSync(otherPki, { recursive: true, force: true });
    }
  });

  it('refuses an operator certificate: artifacts are for hosts (PERMISSION_DENIED)', async () => {
    const r = await fetchWith(
      channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), { kind: 'service', id: 'dispatcher' }),
    );
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.got).toBe(0);
  });
});
