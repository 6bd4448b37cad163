// The kernel's module signature as it sits at the end of a .ko: the PKCS#7 blob, a 12-byte
// struct module_signature whose last field is the blob's length (big-endian), then a fixed magic.
const SIGNATURE_MAGIC = Buffer.from('~Module signature appended~\n');
const SIGNATURE_INFO_BYTES = 12;

export function isModuleSigned(module: Buffer): boolean {
  return module.length > SIGNATURE_MAGIC.length && module.subarray(-SIGNATURE_MAGIC.length).equals(SIGNATURE_MAGIC);
}

/** The module as it was before sign-file appended its signature; throws when it carries none. */
export function stripModuleSignature(module: Buffer): Buffer {
  if (!isModuleSigned(module)) throw new Error('the module carries no appended signature');
  const end = module.length - SIGNATURE_MAGIC.length;
  const signatureBytes = module.readUInt32BE(end - 4);
  const start = end - SIGNATURE_INFO_BYTES - signatureBytes;
  if (start <= 0) throw new Error(`the module's signature claims ${signatureBytes} bytes, more than the module has`);
  return module.subarray(0, start);
}
