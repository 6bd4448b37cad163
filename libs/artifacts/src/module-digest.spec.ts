import { createHash } from 'node:crypto';
import { ModuleDigestCheck, TamperedArtifactError } from './module-digest';

const moduleFile = Buffer.from('\x7fELF a livepatch module, more or less'.repeat(100));
const pinned = { sha256: createHash('sha256').update(moduleFile).digest('hex'), sizeBytes: String(moduleFile.length) };

function kindOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof TamperedArtifactError) return error.kind;
    throw error;
  }
  return 'accepted';
}

describe('checking a module against its manifest as it streams', () => {
  it('Given the module in chunks, When finished, Then it is accepted and its digest returned', () => {
    const check = new ModuleDigestCheck(pinned);
    for (let at = 0; at < moduleFile.length; at += 1000) check.update(moduleFile.subarray(at, at + 1000));

    expect(check.finish()).toBe(pinned.sha256);
  });

  it('Given a truncated module, When finished, Then it is refused as a size mismatch', () => {
    const check = new ModuleDigestCheck(pinned);
    check.update(moduleFile.subarray(0, moduleFile.length - 1));

    expect(kindOf(() => check.finish())).toBe('module-size-mismatch');
  });

  it('Given a module longer than pinned, When the extra byte arrives, Then it is refused at once', () => {
    const check = new ModuleDigestCheck(pinned);
    check.update(moduleFile);

    expect(kindOf(() => check.update(Buffer.from([0])))).toBe('module-size-mismatch');
  });

  it('Given one flipped byte, When finished, Then it is refused as a digest mismatch naming both digests', () => {
    const altered = Buffer.from(moduleFile);
    altered[100] ^= 0x01;
    const check = new ModuleDigestCheck(pinned);
    check.update(altered);

    expect(() => check.finish()).toThrow(`the manifest pins ${pinned.sha256}`);
    expect(kindOf(() => new ModuleDigestCheck(pinned).finish())).toBe('module-size-mismatch');
  });
});
