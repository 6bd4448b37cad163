import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadSync, type MethodDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import { dispatcher, events, ledger } from './index';
import { grpcServices, grpcTransportOptions, protoLoaderOptions, protoRoot, type GrpcServiceContract } from './loader';
import { fromTimestamp, toTimestamp } from './timestamp';

function loadService(contract: GrpcServiceContract): ServiceDefinition {
  const definition = loadSync(contract.protoPath, protoLoaderOptions);
  return definition[`${contract.packageName}.${contract.serviceName}`] as ServiceDefinition;
}

function method(service: ServiceDefinition, name: string): MethodDefinition<object, object> {
  const found = service[name];
  if (!found) throw new Error(`no method ${name}`);
  return found as MethodDefinition<object, object>;
}

describe('the gRPC contracts as the runtime loader sees them', () => {
  // Written out here rather than read from the protos: renaming an RPC must fail this test.
  const expected: Record<keyof typeof grpcServices, string[]> = {
    build: ['SubmitBuild', 'WatchBuild', 'GetBuild', 'ListBuilds', 'CancelBuild', 'RetractPatch', 'FetchArtifact'],
    rollout: [
      'CreateRollout',
      'GetRollout',
      'ListRollouts',
      'WatchRollout',
      'PauseRollout',
      'ResumeRollout',
      'AbortRollout',
      'RollbackRollout',
      'ApproveRollout',
      'Undo',
      'ClearQuarantine',
      'RevokeAgentKey',
    ],
    agentGateway: ['Connect', 'FetchArtifact'],
    agentControl: ['GetStatus'],
    ledger: [
      'GetHost',
      'ListHosts',
      'CountHosts',
      'GetHostStackAt',
      'GetHostHistory',
      'ListPatches',
      'GetRollout',
      'QueryAudit',
      'PlanUndo',
      'ComplianceReport',
      'VerifyIntegrity',
      'VexReport',
    ],
  };

  it('finds the proto root from the library, three levels below the repository root', () => {
    expect(existsSync(join(protoRoot, 'rebootless/events/v1/envelope.proto'))).toBe(true);
  });

  it.each(Object.entries(expected))('loads %s with exactly its RPCs', (key, rpcs) => {
    // Given the service contract the servers and clients use
    const contract = grpcServices[key as keyof typeof grpcServices];
    expect(existsSync(contract.protoPath)).toBe(true);

    // When @grpc/proto-loader loads its file with the shared options
    const service = loadService(contract);

    // Then the service exists under its package with the RPCs of the design
    expect(service).toBeDefined();
    expect(Object.keys(service).sort()).toEqual([...rpcs].sort());
  });

  it('streams where the design says so', () => {
    const build = loadService(grpcServices.build);
    const rollout = loadService(grpcServices.rollout);
    const gateway = loadService(grpcServices.agentGateway);
    const ledger = loadService(grpcServices.ledger);

    expect(method(build, 'WatchBuild')).toMatchObject({ requestStream: false, responseStream: true });
    expect(method(build, 'FetchArtifact')).toMatchObject({ requestStream: false, responseStream: true });
    expect(method(build, 'SubmitBuild')).toMatchObject({ requestStream: false, responseStream: false });
    expect(method(rollout, 'WatchRollout')).toMatchObject({ requestStream: false, responseStream: true });
    expect(method(gateway, 'Connect')).toMatchObject({ requestStream: true, responseStream: true });
    expect(method(ledger, 'QueryAudit')).toMatchObject({ requestStream: false, responseStream: true });
  });

  it('gives NestJS one package and every file when a server hosts two services of one package', () => {
    const options = grpcTransportOptions('127.0.0.1:0', grpcServices.rollout, grpcServices.agentGateway);

    expect(options.package).toEqual(['rebootless.dispatcher.v1']);
    expect(options.protoPath).toEqual([grpcServices.rollout.protoPath, grpcServices.agentGateway.protoPath]);
    expect(options.loader).toBe(protoLoaderOptions);
  });

  it('decodes what ts-proto encodes into the shapes of the ts-proto types', () => {
    // Given an agent hello encoded by the generated code, with a 64-bit id and an enum
    const hello: dispatcher.ConnectRequest = {
      messageId: '18446744073709551615',
      hello: {
        facts: {
          hostId: 'web-17',
          hostname: 'web-17.example',
          machineId: 'm',
          kernelRelease: '6.1.0-18-cloud-amd64',
          kernelVersion: '#1 SMP Debian 6.1.76-1',
          arch: 'x86_64',
          distro: 'debian 12',
          bootId: 'b',
          labels: { rack: 'r1' },
          agentVersion: '0.1.0',
          tainted: '32768',
          taintFlags: ['K'],
        },
        agentPublicKey: new Uint8Array(32).fill(7),
      },
    };
    const bytes = dispatcher.ConnectRequest.encode(hello).finish();

    // When the runtime loader (what NestJS uses) deserializes it
    const received = method(loadService(grpcServices.agentGateway), 'Connect').requestDeserialize(Buffer.from(bytes));

    // Then longs are strings, names camelCase, maps objects, and the oneof case is the plain field
    expect(received).toMatchObject({
      messageId: '18446744073709551615',
      hello: { facts: { hostId: 'web-17', labels: { rack: 'r1' }, tainted: '32768', taintFlags: ['K'] } },
    });
    expect((received as { payload?: string }).payload).toBe('hello');
    expect(Buffer.from((received as typeof hello).hello!.agentPublicKey)).toEqual(Buffer.alloc(32, 7));
  });

  it('decodes enums as numbers and fills unset scalars, as ts-proto declares them', () => {
    // Given an integrity report encoded by the generated code, with an enum and Kafka offsets
    const report: ledger.VerifyIntegrityResponse = {
      eventsChecked: '120000',
      producersChecked: 3,
      findings: [
        {
          kind: ledger.IntegrityFindingKind.INTEGRITY_FINDING_KIND_SEQ_GAP,
          position: { producerId: 'agent/web-17', epoch: 2, seq: '41', partition: 7, offset: '9000000000' },
          detail: '',
        },
      ],
    };
    const bytes = ledger.VerifyIntegrityResponse.encode(report).finish();

    // When the runtime loader deserializes it
    const received = method(loadService(grpcServices.ledger), 'VerifyIntegrity').responseDeserialize(
      Buffer.from(bytes),
    );

    // Then the enum is its number, 64-bit values are strings, and the empty detail is present
    expect(received).toMatchObject({
      eventsChecked: '120000',
      findings: [{ kind: 4, position: { seq: '41', offset: '9000000000' }, detail: '' }],
    });
  });

  it('leaves an unset proto3 optional field undefined in ts-proto', () => {
    const state: events.LivePatchState = {
      moduleName: 'livepatch_cve_2024_1086',
      enabled: true,
      transition: false,
      stackOrder: 1,
      functions: [],
      objectsPatched: {},
    };

    const decoded = events.LivePatchState.decode(events.LivePatchState.encode(state).finish());

    expect(decoded).toEqual(state);
    expect(decoded.replace).toBeUndefined();
  });
});

describe('an event body round trip through the generated codec', () => {
  it('keeps the oneof payload and 64-bit numbers as strings', () => {
    // Given an event body whose payload is one case of the oneof
    const body: events.EventBody = {
      eventId: '01927e6e-3c5a-7cc0-9a63-3c1f0f0b7d11',
      type: 'PatchApplied',
      stream: 'host/web-17',
      occurredAt: toTimestamp(new Date('2026-11-22T05:00:00.123Z')),
      actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: 'web-17', origin: '' },
      correlationId: 'rollout-1',
      causationId: 'cmd-1',
      producer: { producerId: 'agent/web-17', epoch: 1, seq: '9007199254740993', prevHash: new Uint8Array(32) },
      patchApplied: {
        hostId: 'web-17',
        commandId: 'cmd-1',
        patchId: 'cve-2024-1086-nf-tables',
        version: '2',
        moduleName: 'livepatch_cve_2024_1086',
        transitionMs: '1250',
        forced: false,
        replace: true,
        functions: [{ object: 'vmlinux', name: 'nft_verdict_init', sympos: 0 }],
        stack: [],
      },
    };

    // When it is encoded and decoded again
    const decoded = events.EventBody.decode(events.EventBody.encode(body).finish());

    // Then it is the same body, and no other payload case is set
    expect(decoded).toEqual(body);
    expect(decoded.buildRequested).toBeUndefined();
    expect(fromTimestamp(decoded.occurredAt!).toISOString()).toBe('2026-11-22T05:00:00.123Z');
  });
});

describe('timestamps', () => {
  it.each([
    ['an instant after 1970', '2001-09-09T01:46:40.123Z', { seconds: '1000000000', nanos: 123_000_000 }],
    [
      'an instant before 1970, with non-negative nanos',
      '1969-12-31T23:59:59.250Z',
      { seconds: '-1', nanos: 250_000_000 },
    ],
  ])('converts %s both ways', (_name, iso, timestamp) => {
    expect(toTimestamp(new Date(iso))).toEqual(timestamp);
    expect(fromTimestamp(timestamp).toISOString()).toBe(iso);
  });

  it('refuses an invalid date rather than writing NaN seconds', () => {
    expect(() => toTimestamp(new Date('not a date'))).toThrow(RangeError);
  });
});
