// gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl, grpcui, Postman and
// other tools discover a server's services and message shapes without a copy of proto/.
// It says nothing the open-source protos do not, yet it is still behind a client
// certificate like every other method (ADR 0018; libs/trust/src/access-policy.ts).
import { readFileSync } from 'node:fs';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { descriptorSetPath, protoLoaderOptions, type GrpcServiceContract } from '@rebootless/contracts';

/** The standard health service every server also answers, as grpc-health-check ships it. */

/**
 * proto-loader writes type references as the .proto spelled them and no JSON names ("ServingStatus"); a
 * reflection client resolves only fully-qualified ones (".grpc.health.v1.HealthCheckResponse.ServingStatus").
 */
function qualified(file: FileDescriptorProto): FileDescriptorProto {
  const known = new Set<string>();
  const collect = (prefix: string, messages: DescriptorProto[]) => {
    for (const m of messages) {
      known.add(`${prefix}.${m.name}`);
      for (const e of m.enumType) known.add(`${prefix}.${m.name}.${e.name}`);
      collect(`${prefix}.${m.name}`, m.nestedType);
    }
  };
  const root = file.package ? `.${file.package}` : '';
  collect(root, file.messageType);
  for (const e of file.enumType) known.add(`${root}.${e.name}`);
  const resolve = (scope: string, ref: string) => {
    if (ref === '' || ref.startsWith('.')) return ref;
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
      if (known.has(`${s}.${ref}`)) return `${s}.${ref}`;
      if (s === '') return ref;
    }
  };
  const visit = (scope: string, messages: DescriptorProto[]) => {
    for (const m of messages) {
      for (const f of m.field) {
        f.typeName = resolve(`${scope}.${m.name}`, f.typeName);
        // protoc always writes the JSON name; clients print fields by it.
        f.jsonName ||= f.name.replace(/_([a-z0-9])/g, (_all, c: string) => c.toUpperCase());
      }
      visit(`${scope}.${m.name}`, m.nestedType);
    }
  };
  visit(root, file.messageType);
  for (const s of file.service) {
    for (const m of s.method) {
      m.inputType = resolve(root, m.inputType);
      m.outputType = resolve(root, m.outputType);
    }
  }
  return file;
}

/**
 * Adds reflection for the given services (and grpc.health.v1.Health) to a grpc-js server.
 * Our files are served as buf compiled them, comments included, so `grpcurl describe` shows
 * the documentation; only the given services are listed: a tool sees what the server serves.
 */
export function addReflection(server: Pick<Server, 'addService'>, services: readonly GrpcServiceContract[]): void {
  const ours = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)).file;
  // Resolved here, not at load: a bundled agent without the proto files still starts (main.ts).
  const healthProto = require.resolve('grpc-health-check/proto/health/v1/health.proto');
  const health = Object.values(loadSync(healthProto, protoLoaderOptions)).flatMap((d) =>
    'fileDescriptorProtos' in d ? (d.fileDescriptorProtos as Buffer[]) : [],
  );
  const files = [...ours, ...health.map((bytes) => qualified(fromBinary(FileDescriptorProtoSchema, bytes)))].map(
    (file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file)),
  );
  // ReflectionService reads only the fileDescriptorProtos of what it is given.
  const definition = { all: { fileDescriptorProtos: files } } as unknown as PackageDefinition;
  new ReflectionService(definition, {
    services: [...services.map((s) => `${s.packageName}.${s.serviceName}`), 'grpc.health.v1.Health'],
  }).addToServer(server);
}
