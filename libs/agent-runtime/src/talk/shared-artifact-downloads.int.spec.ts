// SharedArtifactDownloads over real gRPC against a FetchArtifact endpoint serving a real store.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { ArtifactStore } from '@rebootless/artifacts';
import { generateSigningKey } from '@rebootless/events';
import { startArtifactServer, type ArtifactServer } from '../testing/agent-harness';
import { storeSignedArtifact } from '../testing/fixtures';
import { ArtifactFetchError } from './artifact-fetch';
import { sharedClient } from './grpc-clients';
import { SharedArtifactDownloads } from './shared-artifact-downloads';

const key = generateSigningKey();
let tmp: string;
let store: ArtifactStore;
let server: ArtifactServer;
let client: ReturnType<typeof sharedClient>;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shared-downloads-'));
  store = new ArtifactStore({ dir: path.join(tmp, 'builder') });
  server = await startArtifactServer(store);
  client = sharedClient(server.address, credentials.createInsecure());
});

afterAll(async () => {
  client.release();
  await server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('SharedArtifactDownloads', () => {
  it('serves every caller that asks while a download runs from that one download', async () => {
    const artifact = await storeSignedArtifact(store, key, { patchId: 'single-flight', version: '1' });
    const downloads = new SharedArtifactDownloads();
    const got = await Promise.all(
      Array.from({ length: 50 }, () => downloads.fetch(client.client, artifact.digest, 10_000)),
    );
    expect(downloads.fetches).toBe(1);
    const original = await store.open(artifact.digest);
    for (const g of got) {
      expect(g.manifestBytes).toEqual(original.manifestBytes);
      expect(g.signature).toEqual(original.signature);
      expect(g.module).toEqual(fs.readFileSync(original.modulePath));
    }
  });

  it('asks the builder again once a finished download is older than reuseMs (retractions are not missed for long)', async () => {
    const artifact = await storeSignedArtifact(store, key, { patchId: 'reuse', version: '1' });
    let now = 1_000_000;
    const downloads = new SharedArtifactDownloads({ reuseMs: 2_000, now: () => now });
    await downloads.fetch(client.client, artifact.digest, 10_000);
    now += 1_999;
    await downloads.fetch(client.client, artifact.digest, 10_000);
    expect(downloads.fetches).toBe(1);
    now += 1;
    await downloads.fetch(client.client, artifact.digest, 10_000);
    expect(downloads.fetches).toBe(2);
  });

  it('does not keep a failed download: the next caller asks again and gets the module', async () => {
    const downloads = new SharedArtifactDownloads();
    const other = new ArtifactStore({ dir: path.join(tmp, 'not-yet-served') });
    const artifact = await storeSignedArtifact(other, key, { patchId: 'late', version: '1' });
    // Not in the served store yet: NOT_FOUND, for both callers of that one download.
    const failed = await Promise.allSettled([
      downloads.fetch(client.client, artifact.digest, 10_000),
      downloads.fetch(client.client, artifact.digest, 10_000),
    ]);
    expect(downloads.fetches).toBe(1);
    for (const f of failed) {
      expect(f.status).toBe('rejected');
      expect((f as PromiseRejectedResult).reason).toBeInstanceOf(ArtifactFetchError);
    }
    await storeSignedArtifact(store, key, { patchId: 'late', version: '1' });
    const got = await downloads.fetch(client.client, artifact.digest, 10_000);
    expect(downloads.fetches).toBe(2);
    expect(got.digest).toBe(artifact.digest);
  });

  it('keeps a download in a store once however many agents ask, and tries again after a failed put', async () => {
    const artifact = await storeSignedArtifact(store, key, { patchId: 'keep-once', version: '1' });
    const downloads = new SharedArtifactDownloads();
    const got = await downloads.fetch(client.client, artifact.digest, 10_000);
    const kept = new ArtifactStore({ dir: path.join(tmp, 'kept'), builderKey: key.rawPublicKey });
    let puts = 0;
    const put = async () => {
      puts += 1;
      if (puts === 1) throw new Error('disk full');
      const manifest = (await store.open(artifact.digest)).manifest;
      return (
        await kept.put({ module: got.module, signed: { manifest, bytes: got.manifestBytes, signature: got.signature } })
      ).artifact;
    };
    await expect(got.keep(kept, put)).rejects.toThrow('disk full');
    const stored = await Promise.all([got.keep(kept, put), got.keep(kept, put), got.keep(kept, put)]);
    expect(puts).toBe(2);
    expect(new Set(stored.map((s) => s.modulePath)).size).toBe(1);
  });
});
