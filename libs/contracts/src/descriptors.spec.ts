// The shipped descriptor set (npm run proto:descriptors) as a Java or Go team would use it:
// every file says where its stubs go, and no outer class can clash with a generated type.
import { readFileSync } from 'node:fs';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { descriptorSetPath } from './loader';

const files = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)).file;
const ours = files.filter((f) => f.name.startsWith('rebootless/'));

function topLevelNames(file: FileDescriptorProto): string[] {
  return [...file.messageType, ...file.enumType, ...file.service].map((d) => d.name);
}

describe('the shipped descriptor set', () => {
  it('holds every rebootless proto with its imports and its comments (source info)', () => {
    expect(ours.map((f) => f.name)).toContain('rebootless/builder/v1/builder.proto');
    expect(ours.length).toBe(11);
    expect(files.map((f) => f.name)).toContain('google/protobuf/timestamp.proto');
    for (const file of ours) expect(file.sourceCodeInfo?.location.length ?? 0).toBeGreaterThan(0);
    const builder = ours.find((f) => f.name === 'rebootless/builder/v1/builder.proto')!;
    const comments = builder.sourceCodeInfo!.location.map((l) => l.leadingComments).join('\n');
    expect(comments).toMatch(/\S/);
  });

  it.each(ours.map((f) => [f.name, f] as const))('%s sets the Java and Go options', (_name, file) => {
    const pkg = file.package.split('.')[1]!;
    expect(file.options?.javaPackage).toBe(`dev.rebootless.${pkg}.v1`);
    expect(file.options?.javaMultipleFiles).toBe(true);
    expect(file.options?.goPackage).toBe(`github.com/rebootless/rebootless/gen/go/rebootless/${pkg}/v1;${pkg}v1`);
    expect(file.options?.javaOuterClassname).toMatch(/^[A-Z][A-Za-z]*Proto$/);
  });

  it('gives no outer class the name of a generated type of the same Java package (the old builder.proto "Builder" clash)', () => {
    const byPackage = new Map<string, string[]>();
    for (const file of ours) {
      const names = byPackage.get(file.options!.javaPackage) ?? [];
      names.push(...topLevelNames(file));
      byPackage.set(file.options!.javaPackage, names);
    }
    for (const file of ours) {
      const outer = file.options!.javaOuterClassname;
      // Every message class nests a Builder; an outer class must not be called that either.
      expect([...byPackage.get(file.options!.javaPackage)!, 'Builder', 'OrBuilder']).not.toContain(outer);
    }
    const outers = ours.map((f) => `${f.options!.javaPackage}.${f.options!.javaOuterClassname}`);
    expect(new Set(outers).size).toBe(outers.length);
  });
});
