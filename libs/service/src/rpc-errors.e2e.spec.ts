// A client that knows only gRPC and the google.rpc protos can branch on more than the status
// code: each service, run as an operator runs it (the built dist/main.js, a real socket), sends
// a google.rpc.Status in the grpc-status-details-bin trailer beside the message. Build first.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  STATUS_DETAILS_TRAILER,
  decodeStatusDetails,
  grpcServices,
  protoLoaderOptions,
  type DecodedStatus,
  type GrpcServiceContract,
} from '@rebootless/contracts';
import { builtEntry, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';

// Each test waits on real processes; these bounds say when to give up, they measure nothing.
jest.setTimeout(60_000);

const running: RunningProcess[] = [];
const dirs: string[] = [];
let topic: string;

beforeAll(async () => {
  topic = await freshEventsTopic('rpc-errors', 1);
});

afterAll(() => {
  for (const p of running) p.child.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Starts the built service in plaintext on a free port; resolves with its address. */
async function start(name: string, envPrefix: string): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), `rebootless-rpc-errors-${name}-`));
  dirs.push(dataDir);
  const address = `127.0.0.1:${await freePort()}`;
  const service = startNode(builtEntry(`apps/${name}/dist/main.js`), {
    EVENTS_TOPIC: topic,
    REBOOTLESS_DATA_DIR: dataDir,
    [`${envPrefix}_GRPC_ADDRESS`]: address,
  });
  running.push(service);
  await service.waitFor(new RegExp(`${name} ready on ${address.replace(/\./g, '\\.')}`), 45_000);
  return address;
}

interface Refusal {
  readonly code: grpc.status;
  readonly message: string;
  readonly status: DecodedStatus;
}

/** Calls a unary RPC through a generic client made from the proto alone, expecting a refusal. */
function refusal(address: string, contract: GrpcServiceContract, method: string, request: object): Promise<Refusal> {
  const definition = protoLoader.loadSync(contract.protoPath, protoLoaderOptions);
  const Client = grpc.makeGenericClientConstructor(
    definition[`${contract.packageName}.${contract.serviceName}`] as grpc.ServiceDefinition,
    contract.serviceName,
  );
  const client = new Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null) => void) => void>)[method]!.call(
      client,
      request,
      (error) => {
        client.close();
        if (!error) return reject(new Error(`${method} ${JSON.stringify(request)} was accepted`));
        const [trailer] = error.metadata.get(STATUS_DETAILS_TRAILER);
        if (!Buffer.isBuffer(trailer)) return reject(new Error(`${method}: no ${STATUS_DETAILS_TRAILER} trailer`));
        resolve({ code: error.code, message: error.details, status: decodeStatusDetails(trailer) });
      },
    );
  });
}

describe('the ledger', () => {
  let address: string;
  beforeAll(async () => {
    address = await start('ledger', 'LEDGER');
  });

  it('INVALID_ARGUMENT: an ErrorInfo and a BadRequest naming the field and why', async () => {
    const r = await refusal(address, grpcServices.ledger, 'GetHostStackAt', {
      hostId: 'web-1',
      at: { seconds: '1767225600', nanos: 1_500_000_000 },
    });
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.status).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      message: r.message,
      errorInfo: { reason: 'INVALID_FIELD', domain: 'rebootless.ledger', metadata: {} },
      badRequest: { fieldViolations: [{ field: 'at', description: 'nanos 1500000000 is outside 0 to 999999999' }] },
    });
  });

  it('NOT_FOUND: an ErrorInfo, and the message as before', async () => {
    const r = await refusal(address, grpcServices.ledger, 'GetHost', { hostId: 'no-such-host' });
    expect([r.code, r.message]).toEqual([grpc.status.NOT_FOUND, 'host no-such-host is not known to the ledger']);
    expect(r.status.errorInfo).toEqual({ reason: 'NOT_IN_LEDGER', domain: 'rebootless.ledger', metadata: {} });
    expect(r.status.badRequest).toBeUndefined();
  });

  it('INVALID_ARGUMENT for bytes that are no request: MALFORMED_REQUEST, the whole message at fault', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const method = '/rebootless.ledger.v1.LedgerService/GetHost';
    const error = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        method,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff]), // field 1, a length no message can hold
        (e) => resolve(e),
      ),
    );
    client.close();
    const [trailer] = error?.metadata.get(STATUS_DETAILS_TRAILER) ?? [];
    const decoded = decodeStatusDetails(trailer as Buffer);
    expect(decoded.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(decoded.message).toMatch(/^the request is not a valid GetHostRequest message/);
    expect(decoded.errorInfo).toEqual({
      reason: 'MALFORMED_REQUEST',
      domain: 'rebootless.ledger',
      metadata: { method },
    });
    expect(decoded.badRequest).toEqual({ fieldViolations: [{ field: '', description: decoded.message }] });
  });
});

describe('the builder', () => {
  let address: string;
  beforeAll(async () => {
    address = await start('builder', 'BUILDER');
  });

  it('INVALID_ARGUMENT on a submission: one field violation per problem, not only the first', async () => {
    const r = await refusal(address, grpcServices.build, 'SubmitBuild', {});
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.status.errorInfo).toEqual({ reason: 'INVALID_SUBMISSION', domain: 'rebootless.builder', metadata: {} });
    const violations = r.status.badRequest?.fieldViolations ?? [];
    // The message lists the same problems, so a client reading either sees the same thing.
    expect(violations.map((v) => `${v.field}: ${v.description}`).join('; ')).toBe(r.message);
    expect(violations.map((v) => v.field)).toEqual(['patch_name', 'version', 'kernel_releases', 'fix']);
  });

  it('NOT_FOUND names the build in the ErrorInfo metadata', async () => {
    const r = await refusal(address, grpcServices.build, 'GetBuild', { buildId: 'no-such-build' });
    expect(r.code).toBe(grpc.status.NOT_FOUND);
    expect(r.status.errorInfo).toEqual({
      reason: 'BUILD_NOT_FOUND',
      domain: 'rebootless.builder',
      metadata: { buildId: 'no-such-build' },
    });
  });
});

describe('the dispatcher', () => {
  let address: string;
  beforeAll(async () => {
    address = await start('dispatcher', 'DISPATCHER');
  });

  it('FAILED_PRECONDITION: a PreconditionFailure whose type is the ErrorInfo reason', async () => {
    const r = await refusal(address, grpcServices.rollout, 'CreateRollout', {
      patchId: 'no-such-patch',
      version: '1',
      selector: { labels: { group: 'web' }, hostIds: [], kernelReleases: [] },
      strategy: { canaryCount: 1, waves: [{ percent: 100 }] },
      reason: 'e2e',
    });
    expect(r.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.status.errorInfo).toEqual({
      reason: 'ROLLOUT_PRECONDITION',
      domain: 'rebootless.dispatcher',
      metadata: {},
    });
    expect(r.status.preconditionFailure).toEqual({
      violations: [{ type: 'ROLLOUT_PRECONDITION', subject: '', description: r.message }],
    });
  });

  it('NOT_FOUND names the rollout in the ErrorInfo metadata', async () => {
    const r = await refusal(address, grpcServices.rollout, 'GetRollout', { rolloutId: 'no-such-rollout' });
    expect([r.code, r.message]).toEqual([grpc.status.NOT_FOUND, 'no rollout no-such-rollout']);
    expect(r.status.errorInfo?.metadata).toEqual({ rolloutId: 'no-such-rollout' });
  });
});
