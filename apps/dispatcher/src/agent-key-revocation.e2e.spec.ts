// Issue 16, "Agent keys are vouched for": an operator revokes a host's agent key with the CLI
// (`rebootless hosts revoke-key`), against the real dispatcher over TLS. The dispatcher writes
// AgentKeyRevoked; its gateway then refuses every relay under that key (PERMISSION_DENIED,
// recorded as CallDenied); a thief writing under the stolen key straight to Kafka gets a stored
// finding in the ledger, not a fact; the rebuilt host re-enrols with a new key and counts again.
// And an agent may answer only commands the dispatcher sent to its host.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { grpcServices, protoLoaderOptions, events, type dispatcher } from '@rebootless/contracts';
import {
  appendToChain,
  decodeEvent,
  generateSigningKey,
  keyFingerprint,
  startEpoch,
  type ChainHead,
  type EventDraft,
  type SigningKey,
} from '@rebootless/events';
import { LedgerConsumer, LedgerDatabase, LedgerQueries, replayLag, serviceKeysFrom } from '@rebootless/ledger-store';
import {
  builtEntry,
  freshEventsTopic,
  readWholeTopic,
  startDispatcher,
  testKafka,
  type ServiceProcess,
} from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Identity,
  type Role,
} from '@rebootless/trust';

const RELEASE = '6.1.0-56-cloud-amd64';
const kafka = testKafka('agent-key-revocation');

let work: string;
let pki: string;
let topic: string;
let address: string;
let dispatcherDir: string;
let dispatcherProcess: ServiceProcess;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-revoke-'));
  pki = path.join(work, 'pki');
  await ensureCertificateAuthority(pki);
  for (const identity of [
    { kind: 'service', id: 'dispatcher' },
    { kind: 'host', id: 'web-r' },
    { kind: 'host', id: 'web-c' },
    { kind: 'host', id: 'web-k' },
    { kind: 'user', id: 'cli' },
  ] as const) {
    await issueCertificate(pki, identity);
  }
  topic = await freshEventsTopic('agent-key-revocation', 3);
  dispatcherDir = path.join(work, 'dispatcher');
  fs.mkdirSync(dispatcherDir);
  ({ process: dispatcherProcess, address } = await startDispatcher({
    topic,
    brokers: process.env['KAFKA_BROKERS']!,
    dataDir: dispatcherDir,
    extra: { REBOOTLESS_PKI_DIR: pki, REBOOTLESS_INSECURE: '', DISPATCHER_UNSEALED_TAIL_TIMEOUT_MS: '1000' },
  }));
});

afterAll(async () => {
  await dispatcherProcess?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const token = (sub: string, roles: Role[]) => mintToken(readTokenPrivateKey(pki), { sub, roles, ttlSeconds: 3600 });

/** The built CLI, as an operator runs it. */
function cli(args: string[], tokenValue: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
  const child = spawn(process.execPath, [builtEntry('apps/cli/dist/main.js'), ...args], {
    env: {
      ...inherited,
      REBOOTLESS_PKI_DIR: pki,
      REBOOTLESS_DISPATCHER: address,
      REBOOTLESS_TOKEN: tokenValue,
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** An agent's stream over TLS; its hello names `helloKey` as the key it signs with (default: none). */
function openStream(identity: Identity, helloKey: Buffer = Buffer.alloc(32)) {
  const def = loadSync(grpcServices.agentGateway.protoPath, protoLoaderOptions);
  const Gateway = (
    grpc.loadPackageDefinition(def) as unknown as {
      rebootless: { dispatcher: { v1: { AgentGateway: grpc.ServiceClientConstructor } } };
    }
  ).rebootless.dispatcher.v1.AgentGateway;
  const client = new Gateway(
    address,
    channelCredentials(loadTlsMaterial(pki, identity), { kind: 'service', id: 'dispatcher' }),
    { 'grpc.ssl_target_name_override': 'localhost' },
  );
  const call = (client['connect'] as () => grpc.ClientDuplexStream<unknown, dispatcher.ConnectResponse>).call(client);
  const received: dispatcher.ConnectResponse[] = [];
  let failure: grpc.ServiceError | undefined;
  call.on('data', (m: dispatcher.ConnectResponse) => received.push(m));
  call.on('error', (e: grpc.ServiceError) => (failure = e));
  call.write({
    messageId: '1',
    hello: { facts: { hostId: identity.id, kernelRelease: RELEASE, labels: {} }, agentPublicKey: helloKey },
  });
  let next = 2;
  /** Relays `envelopes`; resolves with the ack, or with the refusal that ended the stream. */
  const relay = async (envelopes: Buffer[]): Promise<grpc.ServiceError | undefined> => {
    const messageId = String(next++);
    call.write({ messageId, relayEvents: { envelopes } });
    await until(() => received.some((m) => m.ack?.messageId === messageId) || failure !== undefined, 'an answer');
    return failure;
  };
  /** Resolves with the status that ended the stream. */
  const ended = async (): Promise<grpc.ServiceError> => {
    await until(() => failure !== undefined, 'the stream ended');
    return failure!;
  };
  return { close: () => client.close(), relay, ended, isOpen: () => failure === undefined };
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A host's agent chain: one key, one epoch, each write sealed. */
class AgentChain {
  head: ChainHead;
  constructor(
    readonly hostId: string,
    readonly key: SigningKey,
    epoch: number,
  ) {
    this.head = startEpoch(`agent/${hostId}`, epoch);
  }

  write(payloads: EventDraft['payload'][]): Buffer[] {
    const drafts = payloads.map((payload) => ({
      stream: `host/${this.hostId}`,
      actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: this.hostId, origin: this.hostId },
      payload,
    }));
    const out = appendToChain(this.head, drafts, this.key);
    this.head = out.head;
    return out.events.map((e) => Buffer.from(e.envelope));
  }

  facts(): events.HostFacts {
    return {
      hostId: this.hostId,
      hostname: this.hostId,
      machineId: `m-${this.hostId}`,
      kernelRelease: RELEASE,
      kernelVersion: '#1 SMP Debian',
      arch: 'x86_64',
      distro: 'debian 12',
      bootId: 'boot-1',
      labels: {},
      agentVersion: '0.1.0',
      tainted: '0',
      taintFlags: [],
    };
  }

  enrol(): Buffer[] {
    return this.write([
      {
        type: 'ChainEpochStarted',
        data: { publicKey: this.key.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
      },
      { type: 'HostEnrolled', data: { facts: this.facts(), agentPublicKey: this.key.rawPublicKey } },
    ]);
  }

  inventory(): Buffer[] {
    return this.write([{ type: 'HostInventoryReported', data: { facts: this.facts(), patches: [] } }]);
  }

  applied(commandId: string, moduleName: string): Buffer[] {
    const fn = { object: 'vmlinux', name: 'tcp_ack', sympos: 0 };
    return this.write([
      {
        type: 'PatchApplied',
        data: {
          hostId: this.hostId,
          commandId,
          patchId: 'tcp-ack',
          version: '1',
          moduleName,
          transitionMs: '1',
          forced: false,
          replace: false,
          functions: [fn],
          stack: [
            {
              moduleName,
              enabled: true,
              transition: false,
              replace: false,
              stackOrder: 1,
              functions: [fn],
              objectsPatched: {},
            },
          ],
        },
      },
    ]);
  }
}

const bodies = async () =>
  (await readWholeTopic(kafka, topic)).flatMap((r) => {
    try {
      return r.value ? [{ record: r, body: decodeEvent(r.value).body }] : [];
    } catch {
      return [];
    }
  });

async function deniedCalls(reasonPart: string): Promise<events.CallDenied[]> {
  let denied: events.CallDenied[] = [];
  await until(async () => {
    denied = (await bodies()).flatMap(({ body }) =>
      body.callDenied && body.callDenied.reason.includes(reasonPart) ? [body.callDenied] : [],
    );
    return denied.length > 0;
  }, `a CallDenied saying "${reasonPart}" is in the log`);
  return denied;
}

const written = async (envelopes: Buffer[]) =>
  (await readWholeTopic(kafka, topic)).filter((r) => r.value && envelopes.some((e) => e.equals(r.value!)));

describe('an operator revokes the agent key of host web-r with `rebootless hosts revoke-key`', () => {
  const stolen = generateSigningKey();
  const first = new AgentChain('web-r', stolen, 1);
  /** The chain's head as the log has it once enrolled: what a thief continues from. */
  let enrolledHead: ChainHead;
  let revokedAt = 0;

  it('binds the enrolled key first, then refuses an auditor the revocation (exit 5, CallDenied)', async () => {
    const agent = openStream({ kind: 'host', id: 'web-r' });
    expect(await agent.relay(first.enrol())).toBeUndefined();
    agent.close();
    enrolledHead = first.head;

    const denied = await cli(['hosts', 'revoke-key', 'web-r', '--reason', 'disk stolen'], token('carol', ['auditor']));
    expect(denied.code).toBe(5);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toContain(
      'carol holds auditor; /rebootless.dispatcher.v1.RolloutService/RevokeAgentKey needs operator',
    );
    const calls = await deniedCalls('RevokeAgentKey needs operator');
    expect(calls[0]).toEqual(
      expect.objectContaining({ method: '/rebootless.dispatcher.v1.RolloutService/RevokeAgentKey' }),
    );
  });

  it('writes AgentKeyRevoked and answers which key it revoked (--json)', async () => {
    const operator = token('alice', ['operator']);
    let run = await cli(['hosts', 'revoke-key', 'web-r', '--reason', 'disk stolen', '--json'], operator);
    // The dispatcher learns the binding as its follower reads it back from the log: a moment after the relay.
    for (let i = 0; i < 40 && run.code === 4; i++) {
      await new Promise((r) => setTimeout(r, 250));
      run = await cli(['hosts', 'revoke-key', 'web-r', '--reason', 'disk stolen', '--json'], operator);
    }
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(run.stdout)).toEqual({
      hostId: 'web-r',
      producerId: 'agent/web-r',
      epochs: [1],
      keyFingerprints: [keyFingerprint(stolen.rawPublicKey)],
      reason: 'disk stolen',
    });
    const revocations = (await bodies()).filter(({ body }) => body.agentKeyRevoked);
    expect(
      revocations.map(({ body }) => ({
        by: body.producer?.producerId,
        stream: body.stream,
        ...body.agentKeyRevoked,
        actor: body.actor?.id,
      })),
    ).toEqual([
      {
        by: 'dispatcher',
        stream: 'host/web-r',
        hostId: 'web-r',
        producerId: 'agent/web-r',
        epoch: 0,
        reason: 'disk stolen',
        actor: 'alice',
      },
    ]);
    revokedAt = Date.now();

    // Nothing is left to revoke: NOT_FOUND, exit 4, named.
    const again = await cli(['hosts', 'revoke-key', 'web-r', '--reason', 'twice'], operator);
    expect(again.code).toBe(4);
    expect(again.stderr).toContain('no agent key of host web-r is bound');
  });

  it('the gateway refuses the revoked key: PERMISSION_DENIED, nothing written, CallDenied recorded', async () => {
    expect(revokedAt).toBeGreaterThan(0);
    const agent = openStream({ kind: 'host', id: 'web-r' });
    const later = first.inventory();
    const refused = await agent.relay(later);
    agent.close();
    expect(refused?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused?.details).toContain('agent/web-r epoch 1: its key was revoked by an operator');
    expect(await written(later)).toEqual([]);
    expect((await deniedCalls('its key was revoked'))[0]).toEqual(
      expect.objectContaining({ subject: 'host:web-r', code: 'PERMISSION_DENIED' }),
    );

    // A new epoch under the same (stolen) key is refused as well, and binds nothing.
    const sameKey = new AgentChain('web-r', stolen, 2);
    const restart = openStream({ kind: 'host', id: 'web-r' });
    const restarted = sameKey.enrol();
    const refusedAgain = await restart.relay(restarted);
    restart.close();
    expect(refusedAgain?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refusedAgain?.details).toContain('which an operator revoked');
    expect(await written(restarted)).toEqual([]);
    expect((await bodies()).filter(({ body }) => body.agentKeyBound?.epoch === 2)).toEqual([]);
  });

  it('the rebuilt host re-enrols with a new key: bound in a new epoch, its events relayed again', async () => {
    const rebuilt = new AgentChain('web-r', generateSigningKey(), 3);
    const agent = openStream({ kind: 'host', id: 'web-r' });
    const enrolled = rebuilt.enrol();
    expect(await agent.relay(enrolled)).toBeUndefined();
    expect(await agent.relay(rebuilt.inventory())).toBeUndefined();
    agent.close();
    expect(await written(enrolled)).toHaveLength(2);
    const bound = (await bodies()).flatMap(({ body }) => (body.agentKeyBound ? [body.agentKeyBound] : []));
    expect(
      bound.map((b) => ({ epoch: b.epoch, key: keyFingerprint(b.publicKey), cert: b.certificateIdentity })),
    ).toEqual([
      { epoch: 1, key: keyFingerprint(first.key.rawPublicKey), cert: 'web-r' },
      { epoch: 3, key: keyFingerprint(rebuilt.key.rawPublicKey), cert: 'web-r' },
    ]);
  });

  it("the ledger keeps the thief's events under the revoked key, written straight to Kafka, out as a stored finding", async () => {
    // The thief has the stolen key and the chain's head, and a Kafka writer: a sealed PatchApplied.
    first.head = enrolledHead; // the refused inventory never reached the log
    const forged = first.applied('', 'lp_stolen');
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: forged.map((value) => ({ key: 'host/web-r', value })) });
    await producer.disconnect();

    const db = await LedgerDatabase.open({ dataDir: path.join(work, 'ledger') });
    // The ledger vouches for the dispatcher's chain (its key in the dispatcher's data dir), nothing else.
    const consumer = new LedgerConsumer({
      kafka,
      db,
      topic,
      serviceKeys: serviceKeysFrom([], [dispatcherDir]),
      unsealedTailTimeoutMs: 1_000,
    });
    try {
      await consumer.start();
      await until(
        async () => (await replayLag(kafka, topic, consumer.positions)).behind === 0n,
        'the ledger caught up',
        60_000,
      );
      const q = new LedgerQueries(db, { onlineWindowMs: 3_600_000 });
      const findings = (await q.integrityFindings()).filter((f) => f.producerId === 'agent/web-r');
      expect(findings).toEqual([
        expect.objectContaining({
          kind: 'unknown-producer-key',
          epoch: 1,
          detail: expect.stringContaining(
            `is signed by key ${keyFingerprint(stolen.rawPublicKey)}, which was revoked before it`,
          ),
        }),
      ]);
      // The host is known (enrolled before the revocation, and again after the rebuild); nothing of the thief's is on it.
      const host = (await q.getHost('web-r')).host;
      expect(host?.stack?.entries ?? []).toEqual([]);
      const history = await q.getHostHistory({ hostId: 'web-r', pageSize: 0, pageToken: '' });
      expect(history.records.filter((r) => r.body?.patchApplied)).toEqual([]);
    } finally {
      await consumer.stop();
      await db.close();
    }
  });
});

describe('an agent answering a command', () => {
  it('may not answer one the dispatcher never sent to its host: PERMISSION_DENIED, nothing written, CallDenied', async () => {
    const chain = new AgentChain('web-c', generateSigningKey(), 1);
    const agent = openStream({ kind: 'host', id: 'web-c' });
    expect(await agent.relay(chain.enrol())).toBeUndefined();
    const answer = chain.applied('cmd-never-sent', 'lp_tcp_1');
    const refused = await agent.relay(answer);
    agent.close();
    expect(refused?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused?.details).toContain('it answers command cmd-never-sent, which this dispatcher never sent to web-c');
    expect(await written(answer)).toEqual([]);
    expect((await deniedCalls('cmd-never-sent'))[0]).toEqual(expect.objectContaining({ subject: 'host:web-c' }));
  });

  it('may report what it did on its own (a re-apply after boot names no dispatcher command)', async () => {
    const chain = new AgentChain('web-c', generateSigningKey(), 2);
    const agent = openStream({ kind: 'host', id: 'web-c' });
    expect(await agent.relay(chain.enrol())).toBeUndefined();
    const own = chain.applied('at-start/boot-1/tcp-ack/1', 'lp_tcp_1');
    expect(await agent.relay(own)).toBeUndefined();
    agent.close();
    expect(await written(own)).toHaveLength(1);
  });
});

describe('an agent connected when an operator revokes its key', () => {
  const stolen = generateSigningKey();
  const chain = new AgentChain('web-k', stolen, 1);

  it('is cut off at once (UNAUTHENTICATED, naming the revocation), and may not reconnect with that key', async () => {
    // Given host web-k's agent, enrolled and connected, its hello naming its key
    const agent = openStream({ kind: 'host', id: 'web-k' }, stolen.rawPublicKey);
    expect(await agent.relay(chain.enrol())).toBeUndefined();

    // When an operator revokes the key (once the dispatcher has read the binding back from the log)
    const operator = token('alice', ['operator']);
    let run = await cli(['hosts', 'revoke-key', 'web-k', '--reason', 'laptop lost'], operator);
    for (let i = 0; i < 40 && run.code === 4; i++) {
      await new Promise((r) => setTimeout(r, 250));
      run = await cli(['hosts', 'revoke-key', 'web-k', '--reason', 'laptop lost'], operator);
    }
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });

    // Then the open stream ends UNAUTHENTICATED, saying which key was revoked and why
    const cut = await agent.ended();
    agent.close();
    expect(cut.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(cut.details).toContain(
      `an operator revoked the agent key of host web-k, epoch 1 (key ${keyFingerprint(stolen.rawPublicKey)}) (laptop lost)`,
    );

    // And a reconnection with the revoked key is refused at its hello, and recorded
    const again = openStream({ kind: 'host', id: 'web-k' }, stolen.rawPublicKey);
    const refused = await again.ended();
    again.close();
    expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(refused.details).toContain(
      `agent/web-k: its key ${keyFingerprint(stolen.rawPublicKey)} was revoked by an operator`,
    );
    expect((await deniedCalls(`agent/web-k: its key ${keyFingerprint(stolen.rawPublicKey)}`))[0]).toEqual(
      expect.objectContaining({ subject: 'host:web-k', code: 'UNAUTHENTICATED' }),
    );
  });

  it('reconnects once it comes back with a new key, which the gateway binds', async () => {
    const fresh = generateSigningKey();
    const rebuilt = new AgentChain('web-k', fresh, 2);
    const agent = openStream({ kind: 'host', id: 'web-k' }, fresh.rawPublicKey);
    const enrolled = rebuilt.enrol();
    expect(await agent.relay(enrolled)).toBeUndefined();
    expect(await agent.relay(rebuilt.inventory())).toBeUndefined();
    expect(agent.isOpen()).toBe(true);
    agent.close();
    expect(await written(enrolled)).toHaveLength(2);
    const bound = (await bodies()).flatMap(({ body }) =>
      body.agentKeyBound?.hostId === 'web-k' ? [keyFingerprint(body.agentKeyBound.publicKey)] : [],
    );
    expect(bound).toEqual([keyFingerprint(stolen.rawPublicKey), keyFingerprint(fresh.rawPublicKey)]);
  });
});
