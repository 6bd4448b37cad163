// The site cache on a real filesystem (a temporary directory per test). The builder side is the
// cache's port, a function here that signs modules with a real builder key and counts its calls;
// the dispatcher's e2e test (apps/dispatcher/src/site-artifacts.e2e.spec.ts) runs it against the
// real builder.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { generateSigningKey } from '@rebootless/events';
import {
  ArtifactCache,
  ArtifactRetractedError,
  ArtifactUpstreamError,
  InvalidDigestError,
  signManifest,
  type FetchedFromBuilder,
  type PatchManifest,
} from './index';

const builderKey = generateSigningKey();
const otherKey = generateSigningKey();

function moduleBytes(label: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + label.charCodeAt(i % label.length)) & 0xff;
  return out;
}

function artifact(label: string, size = 100_000, key = builderKey): { digest: string; fetched: FetchedFromBuilder } {
  const module = moduleBytes(label, size);
  const manifest: PatchManifest = {
    patchId: `patch-${label}`,
    version: '1.0.0',
    moduleName: `lp_${label}`,
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
  };
  const signed = signManifest(manifest, key);
  return {
    digest: manifest.sha256,
    fetched: { manifestBytes: Buffer.from(signed.bytes), signature: Buffer.from(signed.signature), module },
  };
}

/** A builder that serves what it was given, after `delayMs`, and counts what it was asked. */
function builderOf(artifacts: { digest: string; fetched: FetchedFromBuilder }[], delayMs = 20) {
  const asked: string[] = [];
  return {
    asked,
    fetch: async (digest: string): Promise<FetchedFromBuilder> => {
      asked.push(digest);
      await new Promise((r) => setTimeout(r, delayMs));
      const found = artifacts.find((a) => a.digest === digest);
      if (!found) throw new ArtifactUpstreamError('not-found', `no artifact ${digest}`);
      return found.fetched;
    },
  };
}

async function drain(cache: ArtifactCache, digest: string): Promise<Buffer> {
  const served = await cache.serve(digest);
  const parts: Buffer[] = [];
  for await (const chunk of served.chunks()) parts.push(chunk);
  return Buffer.concat(parts);
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-artifact-cache-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function cacheOf(
  builder: ReturnType<typeof builderOf>,
  overrides: Partial<ConstructorParameters<typeof ArtifactCache>[0]> = {},
): ArtifactCache {
  return new ArtifactCache({
    dir,
    maxBytes: 1024 * 1024,
    fetchFromBuilder: builder.fetch,
    builderKeys: () => [builderKey.rawPublicKey],
    retraction: () => undefined,
    chunkBytes: 16 * 1024,
    ...overrides,
  });
}

describe('given an empty cache', () => {
  it('when 50 hosts ask for one module at once, then the builder is asked once and each gets the bytes and header as signed', async () => {
    const a = artifact('a');
    const builder = builderOf([a]);
    const cache = cacheOf(builder);
    const served = await Promise.all(Array.from({ length: 50 }, () => cache.serve(a.digest)));
    expect(builder.asked).toEqual([a.digest]);
    for (const s of served) {
      expect(s.manifestBytes.equals(a.fetched.manifestBytes)).toBe(true);
      expect(s.signature.equals(a.fetched.signature)).toBe(true);
      const parts: Buffer[] = [];
      for await (const chunk of s.chunks()) parts.push(chunk);
      expect(Buffer.concat(parts).equals(a.fetched.module)).toBe(true);
    }
    expect(cache.counters).toMatchObject({ builderFetches: 1, misses: 50, hits: 0, bytesServed: 50 * 100_000 });
    expect(await drain(cache, a.digest)).toEqual(a.fetched.module);
    expect(cache.counters).toMatchObject({ builderFetches: 1, hits: 1 });
  });

  it('when the builder fails, then every waiting host hears why and the next request asks again', async () => {
    const a = artifact('a');
    const builder = builderOf([]);
    const cache = cacheOf(builder);
    const results = await Promise.allSettled([cache.serve(a.digest), cache.serve(a.digest)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(ArtifactUpstreamError);
    await expect(cache.serve(a.digest)).rejects.toThrow(`no artifact ${a.digest}`);
    expect(builder.asked).toEqual([a.digest, a.digest]);
    expect(cache.digests()).toEqual([]);
  });

  it('when the builder answers with a manifest another key signed, then nothing is kept', async () => {
    const forged = artifact('a', 1000, otherKey);
    const cache = cacheOf(builderOf([forged]));
    await expect(cache.serve(forged.digest)).rejects.toThrow(
      /is not the builder's: the manifest signature does not verify/,
    );
    expect(cache.digests()).toEqual([]);
  });

  it('when the builder answers with other bytes than the manifest pins, then nothing is kept', async () => {
    const a = artifact('a', 1000);
    const swapped = { digest: a.digest, fetched: { ...a.fetched, module: moduleBytes('b', 1000) } };
    const cache = cacheOf(builderOf([swapped]));
    await expect(cache.serve(a.digest)).rejects.toThrow(/the module's sha256 is [0-9a-f]{64} but its manifest pins/);
    expect(cache.digests()).toEqual([]);
  });

  it('when a digest is not 64 hex digits, then it is refused before the builder is asked', async () => {
    const builder = builderOf([]);
    await expect(cacheOf(builder).serve('../../etc/passwd')).rejects.toBeInstanceOf(InvalidDigestError);
    expect(builder.asked).toEqual([]);
  });
});

describe('given a cache bounded to 250 kB', () => {
  it('when a third 100 kB module arrives, then the least recently served is evicted and fetched again when asked', async () => {
    const [a, b, c] = [artifact('a'), artifact('b'), artifact('c')];
    const builder = builderOf([a, b, c]);
    let clock = 0;
    const cache = cacheOf(builder, { maxBytes: 250_000, now: () => ++clock });
    await drain(cache, a.digest);
    await drain(cache, b.digest);
    await drain(cache, a.digest); // a is now more recent than b
    await drain(cache, c.digest);
    expect(cache.digests()).toEqual([a.digest, c.digest].sort());
    expect(cache.sizeBytes).toBe(200_000);
    expect(fs.existsSync(cache.modulePath(b.digest))).toBe(false);
    expect(cache.counters.evictions).toBe(1);
    await drain(cache, b.digest);
    expect(builder.asked).toEqual([a.digest, b.digest, c.digest, b.digest]);
  });

  it('when it restarts, then what it kept is served without asking the builder', async () => {
    const a = artifact('a');
    const builder = builderOf([a]);
    await drain(cacheOf(builder), a.digest);
    const again = cacheOf(builder);
    expect(again.digests()).toEqual([a.digest]);
    expect(await drain(again, a.digest)).toEqual(a.fetched.module);
    expect(builder.asked).toEqual([a.digest]);
  });
});

describe('given a kept module', () => {
  it('when a byte of it changes on disk, then it is served as it is (the agent refuses it), dropped, and fetched again', async () => {
    const a = artifact('a');
    const builder = builderOf([a]);
    const damaged: string[] = [];
    const cache = cacheOf(builder, { onDamaged: (digest) => damaged.push(digest) });
    await drain(cache, a.digest);
    const file = cache.modulePath(a.digest);
    const bytes = fs.readFileSync(file);
    bytes[12_345] ^= 0xff;
    fs.writeFileSync(file, bytes);

    const served = await drain(cache, a.digest);
    expect(served.equals(bytes)).toBe(true);
    expect(damaged).toEqual([a.digest]);
    expect(cache.digests()).toEqual([]);
    expect(fs.existsSync(file)).toBe(false);

    expect(await drain(cache, a.digest)).toEqual(a.fetched.module);
    expect(builder.asked).toEqual([a.digest, a.digest]);
    expect(cache.counters.damaged).toBe(1);
  });

  it('when its patch version is retracted, then it is refused without asking the builder, and kept', async () => {
    const a = artifact('a');
    const builder = builderOf([a]);
    const retracted = new Map<string, string>();
    const cache = cacheOf(builder, { retraction: (p, v) => retracted.get(`${p} ${v}`) });
    await drain(cache, a.digest);
    retracted.set('patch-a 1.0.0', 'breaks nfs');
    const refusal = await cache.serve(a.digest).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(ArtifactRetractedError);
    expect((refusal as Error).message).toBe(
      `artifact ${a.digest} belongs to patch patch-a version 1.0.0, retracted: breaks nfs`,
    );
    expect(builder.asked).toEqual([a.digest]);
  });
});
