// Garbage and mutated requests to every rpc of every service, over real TLS, against the four
// services running as processes (issue 7). What must hold:
// - bytes that do not decode as the request: INVALID_ARGUMENT (or the access check's
//   UNAUTHENTICATED / PERMISSION_DENIED when the caller may not call the method at all);
// - bytes that decode (protobuf is lenient: most mutations of a valid request still decode): any
//   deliberate answer, never INTERNAL, UNKNOWN or UNIMPLEMENTED, and no process dies;
// - afterwards every service is SERVING and answers a valid call correctly.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { grpcServices, protoLoaderOptions } from '@rebootless/contracts';
import { builtEntry, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Identity,
} from '@rebootless/trust';

/** Per method; the issue asks for at least 10,000 random and mutated requests to every rpc. */
const REQUESTS_PER_METHOD = Number(process.env['FUZZ_REQUESTS_PER_METHOD'] ?? 10_000);
const IN_FLIGHT = 64;

const SERVICES = [
  { app: 'builder', prefix: 'BUILDER', contracts: [grpcServices.build] },
  { app: 'dispatcher', prefix: 'DISPATCHER', contracts: [grpcServices.rollout, grpcServices.agentGateway] },
  { app: 'ledger', prefix: 'LEDGER', contracts: [grpcServices.ledger] },
  { app: 'agent', prefix: 'AGENT', contracts: [grpcServices.agentControl] },
] as const;

// Plausible requests to mutate, so mutations reach the handlers' validation, not only the decoder.
const SEEDS: Record<string, object> = {
  SubmitBuild: {
    patchName: 'fuzz',
    version: '1',
    kernelReleases: ['6.1.0-0-fuzz'],
    cves: [{ id: 'CVE-2024-1086', severity: 4 }],
  },
  GetBuild: { buildId: '0190f5a0-0000-7000-8000-000000000000' },
  WatchBuild: { buildId: '0190f5a0-0000-7000-8000-000000000000' },
  CancelBuild: { buildId: '0190f5a0-0000-7000-8000-000000000000', reason: 'fuzz' },
  RetractPatch: { patchId: 'fuzz-patch', version: '1', reason: 'fuzz' },
  FetchArtifact: { artifactDigest: 'a'.repeat(64) },
  CreateRollout: {
    patchId: 'fuzz-patch',
    version: '1',
    selector: { kernelReleases: ['6.1.0-0-fuzz'] },
    strategy: { canaryCount: 1, waves: [{ percent: 50 }, { percent: 50 }] },
    dryRun: true,
  },
  GetRollout: { rolloutId: '0190f5a0-0000-7000-8000-000000000000' },
  GetHost: { hostId: 'fuzz-host' },
  GetHostStackAt: { hostId: 'fuzz-host', at: { seconds: '1795334300', nanos: 0 } },
  PlanUndo: { hostId: 'fuzz-host', patchId: 'fuzz-patch' },
};

const NEVER = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.UNIMPLEMENTED]);
const UNDECODABLE_ANSWERS = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
]);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function mutate(seed: Buffer): Buffer {
  const out = Buffer.from(seed);
  switch (Math.floor(Math.random() * 4)) {
    case 0: // flip bytes
      for (let i = 0; i < 1 + Math.floor(Math.random() * 4) && out.length > 0; i++) {
        out[Math.floor(Math.random() * out.length)] = Math.floor(Math.random() * 256);
      }
      return out;
    case 1: // truncate
      return out.subarray(0, Math.floor(Math.random() * out.length));
    case 2: // splice random bytes in
      return Buffer.concat([
        out.subarray(0, Math.floor(Math.random() * (out.length + 1))),
        randomBytes(1 + Math.floor(Math.random() * 16)),
        out,
      ]);
    default: // pure garbage
      return randomBytes(Math.floor(Math.random() * 256));
  }
}

interface Outcome {
  code: number;
  details: string;
}

function callRaw(
  client: grpc.Client,
  method: MethodDefinition<object, object>,
  bytes: Buffer,
  metadata: grpc.Metadata,
): Promise<Outcome> {
  const id = (b: Buffer) => b;
  const deadline = Date.now() + 5_000;
  return new Promise((resolve) => {
    const done = (code: number, details: string) => resolve({ code, details });
    if (!method.requestStream && !method.responseStream) {
      client.makeUnaryRequest(method.path, id, id, bytes, metadata, { deadline }, (error) =>
        error ? done(error.code, error.details) : done(grpc.status.OK, ''),
      );
    } else if (!method.requestStream) {
      const call = client.makeServerStreamRequest(method.path, id, id, bytes, metadata, { deadline });
      // Read to the end rather than cancel: thousands of client resets trip Node's HTTP/2 defence
      // against rapid-reset floods, which closes the session (a transport answer, not the service's).
      call.on('data', () => undefined);
      call.on('error', (error: grpc.ServiceError) => done(error.code, error.details));
      call.on('end', () => done(grpc.status.OK, ''));
    } else {
      const call = client.makeBidiStreamRequest(method.path, id, id, metadata, { deadline });
      call.on('data', () => call.cancel());
      call.on('error', (error: grpc.ServiceError) => done(error.code, error.details));
      call.on('end', () => done(grpc.status.OK, ''));
      call.write(bytes);
      call.end();
    }
  });
}

describe('every rpc of every service, fed garbage and mutations over TLS', () => {
  let pki: string;
  const processes: RunningProcess[] = [];
  const addresses = new Map<string, string>();

  beforeAll(async () => {
    pki = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-fuzz-pki-'));
    await ensureCertificateAuthority(pki);
    for (const svc of SERVICES) await issueCertificate(pki, { kind: 'service', id: svc.app });
    await issueCertificate(pki, { kind: 'user', id: 'cli' });
    await issueCertificate(pki, { kind: 'host', id: 'fuzz-host' });
    const topic = await freshEventsTopic('fuzz', 3);
    for (const svc of SERVICES) {
      const address = `127.0.0.1:${await freePort()}`;
      addresses.set(svc.app, address);
      const proc = startNode(builtEntry(`apps/${svc.app}/dist/main.js`), {
        [`${svc.prefix}_GRPC_ADDRESS`]: address,
        REBOOTLESS_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), `rebootless-fuzz-${svc.app}-`)),
        REBOOTLESS_PKI_DIR: pki,
        EVENTS_TOPIC: topic,
        AGENT_HOST_ID: 'fuzz-host',
        NO_COLOR: '1',
      });
      processes.push(proc);
      await proc.waitFor(new RegExp(`${svc.app} ready on`), 60_000);
    }
  }, 180_000);

  afterAll(async () => {
    for (const proc of processes) proc.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited()));
    if (pki) fs.rmSync(pki, { recursive: true, force: true });
  });

  for (const svc of SERVICES) {
    for (const contract of svc.contracts) {
      const definition = loadSync(contract.protoPath, protoLoaderOptions)[
        `${contract.packageName}.${contract.serviceName}`
      ] as unknown as Record<string, MethodDefinition<object, object>>;
      for (const [name, method] of Object.entries(definition)) {
        it(`${contract.serviceName}/${name}: ${REQUESTS_PER_METHOD} requests, no crash, no INTERNAL/UNKNOWN, undecodable → INVALID_ARGUMENT`, async () => {
          // Agents' rpcs with an agent's certificate, everything else with a token holding every role.
          const identity: Identity = method.path.includes('AgentGateway')
            ? { kind: 'host', id: 'fuzz-host' }
            : { kind: 'user', id: 'cli' };
          const client = new grpc.Client(
            addresses.get(svc.app)!,
            channelCredentials(loadTlsMaterial(pki, identity), { kind: 'service', id: svc.app }),
            {
              'grpc.ssl_target_name_override': 'localhost',
            },
          );
          const metadata = new grpc.Metadata();
          metadata.set(
            'authorization',
            `Bearer ${mintToken(readTokenPrivateKey(pki), { sub: 'fuzzer', roles: ['operator', 'approver', 'auditor'], ttlSeconds: 3600 })}`,
          );
          const seed = method.requestSerialize(SEEDS[name] ?? {});
          const failures: string[] = [];
          const seen = new Map<number, number>();
          try {
            let next = 0;
            const worker = async () => {
              while (next < REQUESTS_PER_METHOD && failures.length < 5) {
                next++;
                const bytes = mutate(seed);
                let decodes = true;
                try {
                  method.requestDeserialize(bytes);
                } catch {
                  decodes = false;
                }
                const outcome = await callRaw(client, method, bytes, metadata);
                seen.set(outcome.code, (seen.get(outcome.code) ?? 0) + 1);
                const bad = decodes ? NEVER.has(outcome.code) : !UNDECODABLE_ANSWERS.has(outcome.code);
                if (bad)
                  failures.push(`${grpc.status[outcome.code]} "${outcome.details}" for ${bytes.toString('hex')}`);
              }
            };
            await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
          } finally {
            client.close();
          }
          expect(failures).toEqual([]);
          expect([...seen.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(REQUESTS_PER_METHOD);
          for (const proc of processes) expect(proc.child.exitCode).toBeNull();
        }, 300_000);
      }
    }
  }

  it('leaves every service serving and answering a valid call correctly', async () => {
    const health = loadSync((require('grpc-health-check') as { protoPath: string }).protoPath, protoLoaderOptions);
    const Health = grpc.loadPackageDefinition(health) as unknown as {
      grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials, o: object) => grpc.Client } } };
    };
    for (const svc of SERVICES) {
      const client = new Health.grpc.health.v1.Health(
        addresses.get(svc.app)!,
        channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), { kind: 'service', id: svc.app }),
        { 'grpc.ssl_target_name_override': 'localhost' },
      ) as grpc.Client & {
        check: (r: object, cb: (e: grpc.ServiceError | null, r: { status: number }) => void) => void;
      };
      const status = await new Promise<number>((resolve, reject) =>
        client.check({ service: '' }, (e, r) => (e ? reject(e) : resolve(r.status))),
      );
      client.close();
      expect({ service: svc.app, status }).toEqual({ service: svc.app, status: 1 /* SERVING */ });
    }
  });
});
