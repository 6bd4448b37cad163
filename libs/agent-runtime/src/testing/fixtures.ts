// Signed artifacts and a kernel port that records what it was asked, for the agent's tests.
import { signManifest, sha256Hex, type ArtifactStore, type PatchManifest } from '@rebootless/artifacts';
import { events } from '@rebootless/contracts';
import type { SigningKey } from '@rebootless/events';
import type { KernelPort } from '@rebootless/kernel-model';

export const TEST_RELEASE = '6.1.0-56-cloud-amd64';

export interface TestPatch {
  patchId: string;
  version: string;
  functions?: events.PatchedFunction[];
  replace?: boolean;
  kernelRelease?: string;
  cves?: string[];
}

/** Builds a module (bytes that only the simulated kernel will "load"), signs it and stores it. */
export async function storeSignedArtifact(
  store: ArtifactStore,
  key: SigningKey,
  patch: TestPatch,
): Promise<{ digest: string; manifest: PatchManifest }> {
  const release = patch.kernelRelease ?? TEST_RELEASE;
  const moduleName = `livepatch_${patch.patchId}_${patch.version}`.replace(/[^A-Za-z0-9_]/g, '_');
  const module = Buffer.from(`\x7fELF ${moduleName} `.repeat(300));
  const manifest: PatchManifest = {
    patchId: patch.patchId,
    version: patch.version,
    moduleName,
    kernelRelease: release,
    vermagic: `${release} SMP preempt mod_unload modversions`,
    sha256: sha256Hex(module),
    sizeBytes: String(module.length),
    functions: patch.functions ?? [{ object: 'vmlinux', name: `fix_${patch.patchId.replace(/-/g, '_')}`, sympos: 0 }],
    replace: patch.replace ?? false,
    cves: (patch.cves ?? [`CVE-2026-${patch.patchId.length}0001`]).map((id) => ({
      id,
      severity: events.Severity.SEVERITY_HIGH,
      cvssScore: '7.8',
    })),
    severity: events.Severity.SEVERITY_HIGH,
    toolchain: { gcc: '12.2.0' },
    builtAt: '2026-11-20T10:00:00Z',
    description: '',
  };
  const signed = signManifest(manifest, key);
  const { artifact } = await store.put({ module, signed });
  return { digest: artifact.digest, manifest };
}

export type KernelCall = { method: string; args: unknown[] };

/** Wraps a port and records every call that could change the kernel (load, remove, enable, force). */
export function recordingKernel<K extends KernelPort>(kernel: K): { kernel: K; changes: KernelCall[] } {
  const changes: KernelCall[] = [];
  const changing = new Set(['loadModule', 'removeModule', 'setEnabled', 'force']);
  const proxy = new Proxy(kernel, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (typeof prop === 'string' && changing.has(prop)) changes.push({ method: prop, args });
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { kernel: proxy, changes };
}
