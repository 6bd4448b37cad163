import { signManifest, sha256Hex, type PatchManifest } from '@rebootless/artifacts';
import { events } from '@rebootless/contracts';
import { generateSigningKey } from '@rebootless/events';
import {
  CommandRefused,
  compareVersions,
  verifyArtifact,
  vermagicMismatch,
  type ManifestCheckInput,
  type RefusalReason,
} from './verification';

const builderKey = generateSigningKey();
const strangerKey = generateSigningKey();
const RELEASE = '6.1.0-56-cloud-amd64';
const KERNEL = { release: RELEASE, version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)' };
const NOW = new Date('2026-11-22T09:00:00Z');
const moduleBytes = Buffer.from('\x7fELF livepatch module for nf_tables '.repeat(40));

function manifestFor(module: Buffer, over: Partial<PatchManifest> = {}): PatchManifest {
  return {
    cves: [{ id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_HIGH, cvssScore: '7.8' }],
    replace: false,
    severity: events.Severity.SEVERITY_HIGH,
    toolchain: {},
    description: '',
    patchId: 'cve-2024-1086',
    version: '2',
    moduleName: 'livepatch_cve_2024_1086_2',
    kernelRelease: RELEASE,
    vermagic: `${RELEASE} SMP preempt mod_unload modversions`,
    sha256: sha256Hex(module),
    sizeBytes: String(module.length),
    functions: [{ object: 'nf_tables', name: 'nft_verdict_init', sympos: 0 }],
    builtAt: '2026-11-20T10:00:00Z',
    ...over,
  };
}

interface Case {
  module?: Buffer[];
  signedWith?: typeof builderKey;
  manifest?: Partial<PatchManifest>;
  tamperSignedBytes?: boolean;
  input?: Partial<ManifestCheckInput>;
  command?: { commandId?: string; expiresAt?: Date };
  seen?: string[];
  allowDowngrade?: boolean;
}

/** Runs every check as the agent does on a complete download; returns the refusal, if any. */
function verify(c: Case = {}): RefusalReason | 'accepted' {
  const manifest = manifestFor(moduleBytes, c.manifest);
  const signed = signManifest(manifest, c.signedWith ?? builderKey);
  const bytes = Buffer.from(signed.bytes);
  if (c.tamperSignedBytes) bytes[bytes.length - 1] ^= 0x01;
  try {
    verifyArtifact({
      command: {
        commandId: c.command?.commandId ?? 'cmd-1',
        expiresAt: c.command?.expiresAt ?? new Date(NOW.getTime() + 60_000),
      },
      now: NOW,
      seen: (id) => (c.seen ?? []).includes(id),
      manifestBytes: bytes,
      signature: signed.signature,
      pinnedBuilderKey: builderKey.rawPublicKey,
      request: {
        patchId: manifest.patchId,
        version: manifest.version,
        kernelRelease: RELEASE,
        artifactDigest: manifest.sha256,
        allowDowngrade: c.allowDowngrade ?? false,
      },
      kernel: KERNEL,
      retracted: () => undefined,
      quarantined: () => undefined,
      liveVersion: undefined,
      maxArtifactBytes: 1024 * 1024,
      module: c.module ?? [moduleBytes],
      ...c.input,
    });
    return 'accepted';
  } catch (error) {
    if (error instanceof CommandRefused) return error.reason;
    throw error;
  }
}

describe('verifying an artifact before the kernel is touched', () => {
  it('Given a module signed by the pinned builder for this kernel, Then it is accepted', () => {
    expect(verify()).toBe('accepted');
  });

  it('Given a module altered after signing (same size), Then it is refused as a digest mismatch', () => {
    const tampered = Buffer.from(moduleBytes);
    tampered[100] ^= 0xff;
    expect(verify({ module: [tampered] })).toBe('digest-mismatch');
  });

  it('Given a manifest signed by another key, Then it is refused as a bad signature', () => {
    expect(verify({ signedWith: strangerKey })).toBe('bad-signature');
  });

  it('Given signed manifest bytes altered on the way, Then it is refused as a bad signature', () => {
    expect(verify({ tamperSignedBytes: true })).toBe('bad-signature');
  });

  it('Given a module built for another kernel release, Then it is refused', () => {
    expect(
      verify({
        manifest: { kernelRelease: '6.1.0-18-cloud-amd64', vermagic: '6.1.0-18-cloud-amd64 SMP preempt mod_unload' },
      }),
    ).toBe('wrong-kernel-release');
  });

  it('Given a vermagic naming another kernel, Then it is refused as wrong vermagic', () => {
    expect(verify({ manifest: { vermagic: '6.1.0-18-cloud-amd64 SMP preempt mod_unload modversions' } })).toBe(
      'wrong-vermagic',
    );
    expect(verify({ manifest: { vermagic: `${RELEASE} preempt mod_unload modversions` } })).toBe('wrong-vermagic');
  });

  it('Given a command id already received, Then it is refused as replayed', () => {
    expect(verify({ seen: ['cmd-1'] })).toBe('replayed');
  });

  it('Given a command past its expiry, Then it is refused as expired', () => {
    expect(verify({ command: { expiresAt: new Date(NOW.getTime() - 1) } })).toBe('expired');
  });

  it('Given an older version than the live one, Then it is refused as a downgrade unless the command allows it', () => {
    expect(verify({ input: { liveVersion: '10' } })).toBe('downgrade');
    expect(verify({ input: { liveVersion: '10' }, allowDowngrade: true })).toBe('accepted');
  });

  it('Given a retracted patch version, Then it is refused as retracted', () => {
    expect(verify({ input: { retracted: (p, v) => (p === 'cve-2024-1086' && v === '2' ? 'oops' : undefined) } })).toBe(
      'retracted',
    );
  });

  it('Given a download that stops short, Then it is refused as truncated', () => {
    expect(verify({ module: [moduleBytes.subarray(0, moduleBytes.length - 10)] })).toBe('truncated');
  });

  it('Given more bytes than the manifest pins, Then it is refused as oversized as soon as they arrive', () => {
    expect(verify({ module: [moduleBytes, Buffer.from('extra')] })).toBe('oversized');
  });

  it('Given a manifest announcing more than the agent accepts, Then it is refused before any download', () => {
    expect(verify({ input: { maxArtifactBytes: 100 } })).toBe('oversized');
  });

  it('Given a quarantined patch, Then it is refused', () => {
    expect(verify({ input: { quarantined: () => 'the host went down after it' } })).toBe('quarantined');
  });

  it('Given a command naming another artifact than the signed manifest, Then it is refused', () => {
    expect(
      verify({
        input: {
          request: {
            patchId: 'cve-2024-1086',
            version: '2',
            kernelRelease: RELEASE,
            artifactDigest: 'a'.repeat(64),
            allowDowngrade: false,
          },
        },
      }),
    ).toBe('manifest-mismatch');
  });
});

describe('patch versions', () => {
  it('orders numeric parts numerically', () => {
    expect(compareVersions('1.10', '1.9')).toBeGreaterThan(0);
    expect(compareVersions('2', '10')).toBeLessThan(0);
    expect(compareVersions('1.2.0', '1.2.0')).toBe(0);
    expect(compareVersions('1.2', '1.2.1')).toBeLessThan(0);
  });
});

describe('vermagic', () => {
  it('accepts the running release on an SMP kernel', () => {
    expect(vermagicMismatch(`${RELEASE} SMP preempt mod_unload modversions`, KERNEL)).toBeUndefined();
  });
});
