import { isModuleSigned, stripModuleSignature } from './module-signature';

describe('the appended module signature', () => {
  const body = Buffer.from('\x7fELF pretend module body');
  const signed = (sig: Buffer) => {
    const info = Buffer.alloc(12);
    info.writeUInt32BE(sig.length, 8);
    return Buffer.concat([body, sig, info, Buffer.from('~Module signature appended~\n')]);
  };

  it('strips exactly what sign-file appended', () => {
    const module = signed(Buffer.alloc(400, 7));
    expect(isModuleSigned(module)).toBe(true);
    expect(stripModuleSignature(module).equals(body)).toBe(true);
  });

  it('refuses a module with no signature, or one whose length field lies', () => {
    expect(isModuleSigned(body)).toBe(false);
    expect(() => stripModuleSignature(body)).toThrow('carries no appended signature');
    const lying = signed(Buffer.alloc(10));
    lying.writeUInt32BE(1_000_000, lying.length - 28 - 4);
    expect(() => stripModuleSignature(lying)).toThrow('claims 1000000 bytes');
  });
});
