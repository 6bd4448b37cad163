// The README's grpcurl and grpc_health_probe lines, run against the real builder over TLS by a
// client that knows only the reflection protocol (as grpcurl does): it lists the services,
// fetches their descriptors from the server, builds each request from them, and decodes the
// answer with them. No rebootless proto or generated code is used on the client side.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { create, createFileRegistry, fromBinary, fromJson, toBinary, toJson, type JsonValue } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { REPO_ROOT, builtEntry, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Role,
} from '@rebootless/trust';

interface ReflectionAnswer {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

// The reflection protocol itself is the one thing the client knows, as grpcurl embeds it.
const reflectionProto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
const Reflection = (
  grpc.loadPackageDefinition(loadSync(reflectionProto, { keepCase: false, oneofs: true })) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  }
).grpc.reflection.v1.ServerReflection;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** A grpcurl-like client: everything it learns about the API comes over the reflection stream. */
class ReflectionClient {
  private readonly reflection: grpc.Client & Record<string, () => grpc.ClientDuplexStream<object, ReflectionAnswer>>;
  private readonly raw: grpc.Client;
  private readonly files = new Map<string, FileDescriptorProto>();

  constructor(address: string, credentials: grpc.ChannelCredentials) {
    this.reflection = new Reflection(address, credentials) as typeof this.reflection;
    this.raw = new grpc.Client(address, credentials);
  }

  close(): void {
    this.reflection.close();
    this.raw.close();
  }

  private ask(request: object): Promise<ReflectionAnswer> {
    return new Promise((resolve, reject) => {
      const stream = this.reflection['serverReflectionInfo']!();
      stream.on('data', (answer: ReflectionAnswer) => {
        resolve(answer);
        stream.end();
      });
      stream.on('error', reject);
      stream.write(request);
    });
  }

  async listServices(): Promise<string[]> {
    const answer = await this.ask({ listServices: '' });
    return answer.listServicesResponse!.service.map((s) => s.name).sort();
  }

  /** The file declaring the symbol and every file it imports, fetched by name as needed. */
  async registryFor(symbol: string) {
    const take = (answer: ReflectionAnswer) => {
      if (answer.errorResponse) throw new Error(`reflection: ${answer.errorResponse.errorMessage}`);
      for (const bytes of answer.fileDescriptorResponse!.fileDescriptorProto) {
        const file = fromBinary(FileDescriptorProtoSchema, bytes);
        this.files.set(file.name, file);
      }
    };
    take(await this.ask({ fileContainingSymbol: symbol }));
    for (let missing = this.missing(); missing.length > 0; missing = this.missing()) {
      for (const name of missing) take(await this.ask({ fileByFilename: name }));
    }
    // A FileDescriptorSet lists each file after its imports, as protoc writes one.
    const ordered: FileDescriptorProto[] = [];
    const place = (name: string) => {
      const file = this.files.get(name)!;
      if (ordered.includes(file)) return;
      file.dependency.forEach(place);
      ordered.push(file);
    };
    [...this.files.keys()].forEach(place);
    return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  }

  private missing(): string[] {
    return [...this.files.values()].flatMap((f) => f.dependency).filter((d) => !this.files.has(d));
  }

  /** service/method with a JSON request, as `grpcurl -d JSON address pkg.Service/Method`. */
  async invoke(
    target: string,
    json: JsonValue,
    headers: Record<string, string>,
  ): Promise<{ code: number; details: string; json?: JsonValue }> {
    const [serviceName, methodName] = target.split('/') as [string, string];
    const registry = await this.registryFor(serviceName);
    const service = registry.getService(serviceName);
    const method = service?.methods.find((m) => m.name === methodName);
    if (!method) throw new Error(`the server does not describe ${target}`);
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
    const request = fromJson(method.input, json);
    return new Promise((resolve) => {
      this.raw.makeUnaryRequest(
        `/${serviceName}/${methodName}`,
        (m: typeof request) => Buffer.from(toBinary(method.input, m)),
        (b: Buffer) => fromBinary(method.output, b),
        request,
        metadata,
        { deadline: Date.now() + 10_000 },
        (error, value) =>
          resolve(
            error
              ? { code: error.code, details: error.details }
              : { code: grpc.status.OK, details: '', json: toJson(method.output, value!, { registry }) },
          ),
      );
    });
  }
}

/** Splits a README command line as sh would (quotes only; the $(...) token was replaced before). */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

function readmeCommands(): string[] {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.split('## Calling the services from other tools')[1]!.split('\n## ')[0]!;
  const block = section.split('```sh\n')[1]!.split('```')[0]!;
  return block.split('\n').filter((l) => l.trim() !== '');
}

describe('grpcurl and grpc_health_probe as the README shows them (reflection only, TLS, the real builder)', () => {
  let pki: string;
  let address: string;
  let builder: RunningProcess;
  const clients: ReflectionClient[] = [];

  /** Runs one README line against the test's builder and pki and returns what grpcurl would print. */
  async function run(line: string): Promise<{ code: number; details: string; json?: JsonValue; services?: string[] }> {
    const withToken = line.replace(
      /\$\(node scripts\/pki\.mjs token --sub (\S+) --roles (\S+)\)/,
      (_all, sub: string, roles: string) =>
        mintToken(readTokenPrivateKey(pki), { sub, roles: roles.split(',') as Role[], ttlSeconds: 600 }),
    );
    const [tool, ...args] = words(withToken.replaceAll('.data/pki', pki).replaceAll('127.0.0.1:7451', address));
    const flag = (name: string) => {
      const at = args.indexOf(name);
      return at < 0 ? undefined : args.splice(at, 2)[1];
    };
    const ca = flag('-cacert') ?? flag('-tls-ca-cert');
    const cert = flag('-cert') ?? flag('-tls-client-cert');
    const key = flag('-key') ?? flag('-tls-client-key');
    const credentials = grpc.ChannelCredentials.createSsl(
      fs.readFileSync(ca!),
      fs.readFileSync(key!),
      fs.readFileSync(cert!),
    );
    const headers: Record<string, string> = {};
    for (let h = flag('-H'); h !== undefined; h = flag('-H')) {
      const at = h.indexOf(':');
      headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
    }
    if (tool === 'grpc_health_probe') {
      const target = flag('-addr')!;
      const service = flag('-service') ?? '';
      const client = new ReflectionClient(target, credentials);
      clients.push(client);
      return client.invoke('grpc.health.v1.Health/Check', { service }, headers);
    }
    expect(tool).toBe('grpcurl');
    const data = flag('-d');
    const [target, verb, symbol] = args;
    const client = new ReflectionClient(target!, credentials);
    clients.push(client);
    if (verb === 'list') return { code: grpc.status.OK, details: '', services: await client.listServices() };
    if (verb === 'describe') {
      const registry = await client.registryFor(symbol!);
      const service = registry.getService(symbol!);
      return { code: grpc.status.OK, details: '', services: service?.methods.map((m) => m.name) ?? [] };
    }
    return client.invoke(verb!, JSON.parse(data ?? '{}') as JsonValue, headers);
  }

  beforeAll(async () => {
    pki = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-reflect-'));
    await ensureCertificateAuthority(pki);
    await issueCertificate(pki, { kind: 'service', id: 'builder' });
    await issueCertificate(pki, { kind: 'user', id: 'cli' });
    address = `127.0.0.1:${await freePort()}`;
    builder = startNode(builtEntry('apps/builder/dist/main.js'), {
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-builder-reflect-')),
      REBOOTLESS_PKI_DIR: pki,
      EVENTS_TOPIC: await freshEventsTopic('reflection', 1),
      NO_COLOR: '1',
    });
    await builder.waitFor(/builder ready on/);
  });

  afterAll(async () => {
    clients.forEach((c) => c.close());
    builder?.child.kill('SIGTERM');
    await builder?.exited();
    if (pki) fs.rmSync(pki, { recursive: true, force: true });
  });

  it('the README shows the five commands this test runs', () => {
    expect(readmeCommands().map((l) => words(l).slice(0, 1)[0])).toEqual([
      'grpcurl',
      'grpcurl',
      'grpcurl',
      'grpcurl',
      'grpc_health_probe',
    ]);
  });

  it('grpcurl list: the builder names its service and health, and nothing of another service', async () => {
    const listed = await run(readmeCommands()[0]!);
    expect(listed.services).toEqual(['grpc.health.v1.Health', 'rebootless.builder.v1.BuildService']);
  });

  it('grpcurl describe: every RPC of BuildService, learnt from the server alone', async () => {
    const described = await run(readmeCommands()[1]!);
    expect(described.services).toEqual([
      'SubmitBuild',
      'WatchBuild',
      'GetBuild',
      'ListBuilds',
      'CancelBuild',
      'RetractPatch',
      'FetchArtifact',
    ]);
  });

  it('grpcurl with a token: ListBuilds answers, decoded with the served descriptors', async () => {
    expect(await run(readmeCommands()[2]!)).toEqual({ code: grpc.status.OK, details: '', json: {} });
  });

  it('grpcurl with a token: the request built from the descriptors reaches the handler with its field', async () => {
    expect(await run(readmeCommands()[3]!)).toEqual({
      code: grpc.status.NOT_FOUND,
      details: 'no build "01890000-0000-7000-8000-000000000000" on this builder',
    });
  });

  it('without the token the same call is UNAUTHENTICATED naming the header and role it needs', async () => {
    const line = readmeCommands()[3]!.replace(/-H "[^"]*" /, '');
    const answer = await run(line);
    expect(answer.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(answer.details).toMatch(/bearer token with role/);
  });

  it('grpc_health_probe: SERVING', async () => {
    expect(await run(readmeCommands()[4]!)).toEqual({ code: grpc.status.OK, details: '', json: { status: 'SERVING' } });
  });

  it('a caller without a certificate of the CA learns nothing, not even the service list', async () => {
    const stranger = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-stranger-'));
    try {
      await ensureCertificateAuthority(stranger);
      await issueCertificate(stranger, { kind: 'user', id: 'cli' });
      const client = new ReflectionClient(
        address,
        channelCredentials(loadTlsMaterial(stranger, { kind: 'user', id: 'cli' })),
      );
      clients.push(client);
      await expect(client.listServices()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      fs.rmSync(stranger, { recursive: true, force: true });
    }
  });
});
