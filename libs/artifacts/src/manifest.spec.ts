import { sign } from 'node:crypto';
import { events } from '@rebootless/contracts';
import { generateSigningKey } from '@rebootless/events';
import {
  ManifestError,
  ManifestVerificationError,
  encodeManifest,
  signManifest,
  verifyManifest,
  type PatchManifest,
} from './manifest';

function manifest(overrides: Partial<PatchManifest> = {}): PatchManifest {
  return {
    patchId: 'cve-2024-1086-nf-tables',
    version: '1.0.2',
    moduleName: 'livepatch_cve_2024_1086_nf_tables_1_0_2',
    kernelRelease: '6.1.0-18-cloud-amd64',
    vermagic: '6.1.0-18-cloud-amd64 SMP preempt mod_unload modversions ',
    sha256: 'a'.repeat(64),
    sizeBytes: '123456',
    functions: [{ object: 'vmlinux', name: 'nft_verdict_init', sympos: 0 }],
    replace: true,
    cves: [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }],
    severity: events.Severity.SEVERITY_HIGH,
    toolchain: { gcc: '12.2.0', kbuild: '6.1', builder: '0.1.0' },
    builtAt: '2026-11-22T06:00:00.000Z',
    description: 'nf_tables: reject QUEUE/DROP verdict parameters',
    ...overrides,
  };
}

function refusal(run: () => unknown): { reason: string; message: string } {
  try {
    run();
  } catch (error) {
    if (error instanceof ManifestVerificationError) return { reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error('expected the manifest to be refused');
}

describe('encoding a manifest', () => {
  it('Given the same manifest with its toolchain map filled in another order, When encoded, Then the bytes are identical', () => {
    const a = manifest({ toolchain: { gcc: '12.2.0', kbuild: '6.1', builder: '0.1.0', '10': 'ten', '9': 'nine' } });
    const b = manifest({ toolchain: { builder: '0.1.0', '9': 'nine', kbuild: '6.1', '10': 'ten', gcc: '12.2.0' } });

    expect(encodeManifest(a)).toEqual(encodeManifest(b));
  });

  it('Given a manifest, When encoded and decoded, Then every field comes back', () => {
    const original = manifest();

    expect(events.PatchManifest.decode(encodeManifest(original))).toEqual(original);
  });

  it('Given map keys inserted in sorted order, When encoded, Then the bytes equal the generated encoder (fields in number order)', () => {
    const sorted = manifest({ toolchain: { builder: '0.1.0', gcc: '12.2.0', kbuild: '6.1' } });

    expect(encodeManifest(sorted)).toEqual(Buffer.from(events.PatchManifest.encode(sorted).finish()));
  });
});

describe('signing and verifying a manifest', () => {
  const builder = generateSigningKey();

  it('Given a signed manifest, When verified with the builder key, Then it returns the manifest', () => {
    const signed = signManifest(manifest(), builder);

    expect(verifyManifest(signed.bytes, signed.signature, builder.rawPublicKey)).toEqual(manifest());
    expect(verifyManifest(signed.bytes, signed.signature, builder.publicKey)).toEqual(manifest());
  });

  it('Given a manifest signed by another key, When verified with the pinned builder key, Then it is refused naming the key', () => {
    const other = generateSigningKey();
    const signed = signManifest(manifest(), other);

    const { reason, message } = refusal(() => verifyManifest(signed.bytes, signed.signature, builder.rawPublicKey));

    expect(reason).toBe('bad-signature');
    expect(message).toContain(builder.rawPublicKey.toString('hex').slice(0, 16));
  });

  it('Given one altered byte of the signed manifest, When verified, Then the signature no longer verifies', () => {
    const signed = signManifest(manifest(), builder);
    const altered = Buffer.from(signed.bytes);
    // Change the release inside the manifest to another kernel's.
    const at = altered.indexOf(Buffer.from('6.1.0-18'));
    altered[at + 6] = '9'.charCodeAt(0);

    expect(refusal(() => verifyManifest(altered, signed.signature, builder.rawPublicKey)).reason).toBe('bad-signature');
  });

  it('Given a manifest re-encoded after decoding with its map in another order, When verified, Then it is refused (only the bytes as signed verify)', () => {
    const signed = signManifest(manifest({ toolchain: { b: '1', a: '2' } }), builder);
    const decoded = events.PatchManifest.decode(signed.bytes);
    const reordered = Buffer.from(events.PatchManifest.encode({ ...decoded, toolchain: { b: '1', a: '2' } }).finish());

    expect(reordered).not.toEqual(signed.bytes);
    expect(refusal(() => verifyManifest(reordered, signed.signature, builder.rawPublicKey)).reason).toBe(
      'bad-signature',
    );
  });

  it.each([
    [undefined, 'missing-signature', 'the manifest carries no signature'],
    [Buffer.alloc(0), 'missing-signature', 'the manifest carries no signature'],
    [Buffer.alloc(63), 'malformed-signature', 'the manifest signature has 63 bytes; an Ed25519 signature has 64'],
  ])('Given signature %p, When verified, Then it is refused as %s', (signature, reason, message) => {
    const signed = signManifest(manifest(), builder);

    expect(refusal(() => verifyManifest(signed.bytes, signature, builder.rawPublicKey))).toEqual({ reason, message });
  });

  it('Given signed bytes that are not a manifest, When verified, Then it is refused as undecodable', () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const signature = sign(null, garbage, builder.privateKey);

    expect(refusal(() => verifyManifest(garbage, signature, builder.rawPublicKey)).reason).toBe('undecodable');
  });

  it('Given an incomplete manifest, When signed, Then signing refuses and names every missing field', () => {
    const attempt = () =>
      signManifest(manifest({ vermagic: '', sha256: 'ABC', sizeBytes: '0', functions: [] }), builder);

    expect(attempt).toThrow(ManifestError);
    expect(attempt).toThrow(
      'manifest is incomplete: vermagic is empty; sha256 "ABC" is not 64 lower-case hex digits; ' +
        'sizeBytes "0" is not a positive integer; functions is empty: a live patch replaces at least one function',
    );
  });
});
