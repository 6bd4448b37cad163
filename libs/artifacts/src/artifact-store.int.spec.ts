// The store on a real filesystem (a temporary directory per test): what is written, what is
// served, and what is refused when the bytes on disk are not what the builder signed.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { generateSigningKey } from '@rebootless/events';
import {
  ArtifactNotFoundError,
  ArtifactRejectedError,
  ArtifactStore,
  InvalidDigestError,
  RetractedArtifactError,
  TamperedArtifactError,
  signManifest,
  verifyManifest,
  type PatchManifest,
  type StoredArtifact,
} from './index';

const builder = generateSigningKey();

function moduleBytes(label: string, size = 200_000): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + label.charCodeAt(i % label.length)) & 0xff;
  return out;
}

function manifestFor(module: Buffer, overrides: Partial<PatchManifest> = {}): PatchManifest {
  return {
    patchId: 'cmdline-demo',
    version: '1.0.0',
    moduleName: 'livepatch_cmdline_demo_1_0_0',
    kernelRelease: '6.1.0-56-cloud-amd64',
    vermagic: '6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ',
    sha256: createHash('sha256').update(module).digest('hex'),
    sizeBytes: String(module.length),
    functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }],
    replace: false,
    cves: [],
    severity: events.Severity.SEVERITY_UNSPECIFIED,
    toolchain: { gcc: '12.2.0' },
    builtAt: '2026-11-22T06:00:00.000Z',
    description: '',
    ...overrides,
  };
}

async function drain(store: ArtifactStore, artifact: StoredArtifact, chunkBytes?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of store.chunks(artifact, chunkBytes)) parts.push(chunk);
  return Buffer.concat(parts);
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

let dir: string;
let store: ArtifactStore;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-artifacts-'));
  store = new ArtifactStore({ dir, builderKey: builder.rawPublicKey });
});

afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('storing and serving an artifact', () => {
  it('Given a module and its signed manifest, When stored and opened, Then it is found under its sha256 with the manifest bytes as signed', async () => {
    const module = moduleBytes('a');
    const signed = signManifest(manifestFor(module), builder);

    const { artifact, existing } = await store.put({ module, signed });
    const opened = await store.open(artifact.digest);

    expect(existing).toBe(false);
    expect(opened.digest).toBe(createHash('sha256').update(module).digest('hex'));
    expect(opened.manifestBytes).toEqual(signed.bytes);
    expect(verifyManifest(opened.manifestBytes, opened.signature, builder.rawPublicKey)).toEqual(signed.manifest);
    expect(await drain(store, opened, 4096)).toEqual(module);
    expect(store.list()).toEqual([opened.digest]);
    expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('Given an intact artifact already stored, When the same module is stored again with a newer manifest, Then the first stays as it was', async () => {
    const module = moduleBytes('a');
    const first = signManifest(manifestFor(module), builder);
    await store.put({ module, signed: first });

    const again = await store.put({
      module,
      signed: signManifest(manifestFor(module, { builtAt: '2026-11-23T00:00:00.000Z' }), builder),
    });

    expect(again.existing).toBe(true);
    expect(again.artifact.manifestBytes).toEqual(first.bytes);
  });

  it('Given a module that does not hash to its manifest, When stored, Then it is rejected and nothing is written', async () => {
    const module = moduleBytes('a');
    const signed = signManifest(manifestFor(moduleBytes('b')), builder);

    const error = await rejection(store.put({ module, signed }));

    expect(error).toBeInstanceOf(ArtifactRejectedError);
    expect(error.message).toContain("the module's sha256 is");
    expect(store.list()).toEqual([]);
  });

  it('Given a manifest signed by another key, When stored, Then it is rejected', async () => {
    const module = moduleBytes('a');
    const error = await rejection(
      store.put({ module, signed: signManifest(manifestFor(module), generateSigningKey()) }),
    );

    expect(error).toBeInstanceOf(ArtifactRejectedError);
    expect(error.message).toContain('not signed by the builder key');
  });

  it('Given a digest nobody stored or one that is not a digest, When opened, Then not found and invalid digest', async () => {
    expect(await rejection(store.open('0'.repeat(64)))).toBeInstanceOf(ArtifactNotFoundError);
    expect(await rejection(store.open('../../etc/passwd'))).toBeInstanceOf(InvalidDigestError);
    expect(await rejection(store.open('A'.repeat(64)))).toBeInstanceOf(InvalidDigestError);
  });
});

describe('a tampered artifact is never served', () => {
  let artifact: StoredArtifact;
  let module: Buffer;

  beforeEach(async () => {
    module = moduleBytes('a');
    ({ artifact } = await store.put({ module, signed: signManifest(manifestFor(module), builder) }));
  });

  async function tamperKind(): Promise<string> {
    const error = await rejection(store.open(artifact.digest));
    if (!(error instanceof TamperedArtifactError)) throw error;
    return error.kind;
  }

  it('Given one byte of the stored module flipped, When opened, Then it is refused as a digest mismatch', async () => {
    const bytes = fs.readFileSync(artifact.modulePath);
    bytes[1234] ^= 0xff;
    fs.writeFileSync(artifact.modulePath, bytes);

    expect(await tamperKind()).toBe('module-digest-mismatch');
  });

  it('Given the stored module truncated, When opened, Then it is refused as a size mismatch', async () => {
    fs.truncateSync(artifact.modulePath, module.length - 10);

    expect(await tamperKind()).toBe('module-size-mismatch');
  });

  it('Given the stored module deleted, When opened, Then it is refused as incomplete', async () => {
    fs.rmSync(artifact.modulePath);

    expect(await tamperKind()).toBe('incomplete');
  });

  it('Given the stored manifest replaced by one for another module, signed with the right key, When opened, Then the digest disagrees', async () => {
    const other = signManifest(manifestFor(moduleBytes('b')), builder);
    fs.writeFileSync(path.join(store.entryDir(artifact.digest), 'manifest.pb'), other.bytes);
    fs.writeFileSync(path.join(store.entryDir(artifact.digest), 'manifest.sig'), other.signature);

    expect(await tamperKind()).toBe('manifest-digest-mismatch');
  });

  it('Given the stored manifest edited (another kernel release), When opened, Then its signature fails', async () => {
    const file = path.join(store.entryDir(artifact.digest), 'manifest.pb');
    const decoded = events.PatchManifest.decode(fs.readFileSync(file));
    fs.writeFileSync(file, events.PatchManifest.encode({ ...decoded, kernelRelease: '6.1.0-99-cloud-amd64' }).finish());

    expect(await tamperKind()).toBe('manifest-signature');
  });

  it('Given the module altered after it was opened, When streamed, Then the stream fails before the last chunk', async () => {
    const opened = await store.open(artifact.digest);
    const bytes = fs.readFileSync(opened.modulePath);
    bytes[bytes.length - 5] ^= 0xff;
    fs.writeFileSync(opened.modulePath, bytes);

    const received: Buffer[] = [];
    const error = await rejection(
      (async () => {
        for await (const chunk of store.chunks(opened, 4096)) received.push(chunk);
      })(),
    );

    expect(error).toBeInstanceOf(TamperedArtifactError);
    expect(Buffer.concat(received).length).toBeLessThan(module.length);
  });

  it('Given a damaged entry, When the intact module is stored again, Then the damaged one goes to quarantine and the new one is served', async () => {
    fs.truncateSync(artifact.modulePath, 10);

    const again = await store.put({ module, signed: signManifest(manifestFor(module), builder) });

    expect(again.existing).toBe(false);
    expect(await drain(store, await store.open(artifact.digest))).toEqual(module);
    expect(fs.readdirSync(path.join(dir, 'quarantine'))).toHaveLength(1);
  });
});

describe('retracting a patch', () => {
  it('Given a stored artifact of a patch version, When that version is retracted, Then opening it is refused with the reason, also after a restart', async () => {
    const module = moduleBytes('a');
    const { artifact } = await store.put({ module, signed: signManifest(manifestFor(module), builder) });

    const first = store.retract({ patchId: 'cmdline-demo', version: '1.0.0', reason: 'panics on boot with 32 CPUs' });
    const second = store.retract({ patchId: 'cmdline-demo', version: '1.0.0', reason: 'again' });
    const reopened = new ArtifactStore({ dir, builderKey: builder.rawPublicKey });
    const error = await rejection(reopened.open(artifact.digest));

    expect(first.newly).toBe(true);
    expect(second).toEqual({ retraction: first.retraction, newly: false });
    expect(error).toBeInstanceOf(RetractedArtifactError);
    expect(error.message).toContain('retracted at');
    expect(error.message).toContain('panics on boot with 32 CPUs');
  });

  it('Given a retraction not yet announced, When marked announced, Then the flag survives a restart', () => {
    store.retract({ patchId: 'p', version: '2', reason: 'bad' });
    store.markAnnounced('p', '2');

    expect(new ArtifactStore({ dir }).retractions()).toEqual([
      expect.objectContaining({ patchId: 'p', announced: true }),
    ]);
  });

  it('Given an unreadable retraction list, When the store opens, Then it refuses to start rather than serve a retracted patch', () => {
    fs.writeFileSync(path.join(dir, 'retractions.json'), '{ not json');

    expect(() => new ArtifactStore({ dir })).toThrow(/retraction list .* is unreadable/);
  });
});
