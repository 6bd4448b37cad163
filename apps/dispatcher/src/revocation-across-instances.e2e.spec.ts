// docs/adr/0028: an operator revokes a host's agent key through one dispatcher instance while the
// host's agent is connected to another. The other instance reads the revocation from the log and
// cuts the agent's stream (UNAUTHENTICATED, naming the revocation); the agent cannot come back to
// it with that key. Two dispatcher processes over TLS, one PostgreSQL, one topic.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Client as PgClient } from 'pg';
import { events, grpcServices, protoLoaderOptions, type dispatcher } from '@rebootless/contracts';
import { appendToChain, generateSigningKey, keyFingerprint, startEpoch } from '@rebootless/events';
import { ChainStateFile } from '@rebootless/kafka';
import { builtEntry, freshEventsTopic, startDispatcher, type ServiceProcess } from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
} from '@rebootless/trust';

const PG_ADMIN = process.env['DATABASE_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASE = `rebootless_revocation_${process.pid}`;

let root: string;
let pki: string;
const instances = new Map<string, { process: ServiceProcess; address: string }>();

async function pg(sql: string): Promise<void> {
  const c = new PgClient({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-revocation-'));
  pki = path.join(root, 'pki');
  await ensureCertificateAuthority(pki);
  for (const identity of [
    { kind: 'service', id: 'dispatcher' },
    { kind: 'host', id: 'web-x' },
    { kind: 'user', id: 'cli' },
  ] as const)
    await issueCertificate(pki, identity);
  const topic = await freshEventsTopic('revocation-across-instances', 3);
  await pg(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await pg(`CREATE DATABASE ${DATABASE}`);
  const url = new URL(PG_ADMIN);
  url.pathname = `/${DATABASE}`;
  // Each instance's key exists before either starts, so each vouches for the other's chain.
  const dirs = { a: path.join(root, 'dispatcher-a'), b: path.join(root, 'dispatcher-b') };
  for (const [name, dir] of Object.entries(dirs))
    new ChainStateFile(path.join(dir, 'chain'), `dispatcher/${name}`).loadOrCreateKey();
  for (const [name, other] of [
    ['a', 'b'],
    ['b', 'a'],
  ] as const) {
    const started = await startDispatcher({
      topic,
      brokers: process.env['KAFKA_BROKERS']!,
      dataDir: dirs[name],
      extra: {
        REBOOTLESS_PKI_DIR: pki,
        REBOOTLESS_INSECURE: '',
        DISPATCHER_INSTANCE: name,
        DISPATCHER_DATABASE_URL: url.toString(),
        DISPATCHER_TRUSTED_DATA_DIRS: dirs[other],
        DISPATCHER_UNSEALED_TAIL_TIMEOUT_MS: '1000',
      },
    });
    instances.set(name, started);
  }
}, 180_000);

afterAll(async () => {
  for (const i of instances.values()) await i.process.stop();
  await pg(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => undefined);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Host web-x's agent stream to an instance, its hello naming `key`. */
function agentStream(address: string, key: Buffer) {
  const def = loadSync(grpcServices.agentGateway.protoPath, protoLoaderOptions);
  const Gateway = (
    grpc.loadPackageDefinition(def) as unknown as {
      rebootless: { dispatcher: { v1: { AgentGateway: grpc.ServiceClientConstructor } } };
    }
  ).rebootless.dispatcher.v1.AgentGateway;
  const client = new Gateway(
    address,
    channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: 'web-x' }), { kind: 'service', id: 'dispatcher' }),
    { 'grpc.ssl_target_name_override': 'localhost' },
  );
  const call = (client['connect'] as () => grpc.ClientDuplexStream<unknown, dispatcher.ConnectResponse>).call(client);
  const acks = new Set<string>();
  let failure: grpc.ServiceError | undefined;
  call.on('data', (m: dispatcher.ConnectResponse) => m.ack && acks.add(m.ack.messageId));
  call.on('error', (e: grpc.ServiceError) => (failure = e));
  call.write({ messageId: '1', hello: { facts: { hostId: 'web-x', labels: {} }, agentPublicKey: key } });
  return {
    relay: async (envelopes: Buffer[]) => {
      call.write({ messageId: '2', relayEvents: { envelopes } });
      await until(() => acks.has('2') || failure !== undefined, 'the relay is answered');
      return failure;
    },
    ended: async () => {
      await until(() => failure !== undefined, 'the stream ended');
      return failure!;
    },
    close: () => client.close(),
  };
}

function revokeKey(address: string): Promise<{ code: number | null; stderr: string }> {
  const token = mintToken(readTokenPrivateKey(pki), { sub: 'alice', roles: ['operator'], ttlSeconds: 3600 });
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
  const child = spawn(
    process.execPath,
    [builtEntry('apps/cli/dist/main.js'), 'hosts', 'revoke-key', 'web-x', '--reason', 'host stolen'],
    {
      env: { ...inherited, REBOOTLESS_PKI_DIR: pki, REBOOTLESS_DISPATCHER: address, REBOOTLESS_TOKEN: token },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

describe('a revocation made through one dispatcher instance', () => {
  it('cuts the agent connected to the other instance, which then refuses it with that key', async () => {
    // Given web-x's agent connected to instance b, enrolled there (b binds its key)
    const key = generateSigningKey();
    const b = instances.get('b')!.address;
    const agent = agentStream(b, key.rawPublicKey);
    const enrol = appendToChain(
      startEpoch('agent/web-x', 1),
      [
        {
          stream: 'host/web-x',
          actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: 'web-x', origin: 'web-x' },
          payload: {
            type: 'ChainEpochStarted',
            data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
          },
        },
      ],
      key,
    ).events.map((e) => Buffer.from(e.envelope));
    expect(await agent.relay(enrol)).toBeUndefined();

    // When an operator revokes the key through instance a (once a has read b's binding)
    const a = instances.get('a')!.address;
    let run = await revokeKey(a);
    for (let i = 0; i < 60 && run.code === 4; i++) {
      await new Promise((r) => setTimeout(r, 250));
      run = await revokeKey(a);
    }
    expect(run).toEqual({ code: 0, stderr: '' });

    // Then b, reading the revocation from the log, ends the agent's stream, naming it
    const cut = await agent.ended();
    agent.close();
    expect(cut.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(cut.details).toContain(
      `an operator revoked the agent key of host web-x, epoch 1 (key ${keyFingerprint(key.rawPublicKey)}) (host stolen)`,
    );
    // And b refuses the agent's return with that key
    const again = agentStream(b, key.rawPublicKey);
    const refused = await again.ended();
    again.close();
    expect(refused.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(refused.details).toContain(`its key ${keyFingerprint(key.rawPublicKey)} was revoked by an operator`);
  }, 120_000);
});
