import { archivePath, newcHeader } from './cpio';

describe('newc headers', () => {
  it('are 110 bytes of magic and hex fields, then the NUL-terminated name padded to 4 bytes', () => {
    const h = newcHeader('init', 1, 0o100755, 300);
    // 110 + "init\0" = 115, padded to 116
    expect(h.length).toBe(116);
    expect(h.subarray(0, 6).toString('ascii')).toBe('070701');
    expect(h.subarray(6, 14).toString('ascii')).toBe('00000001'); // ino
    expect(h.subarray(14, 22).toString('ascii')).toBe('000081ed'); // S_IFREG | 0755
    expect(h.subarray(54, 62).toString('ascii')).toBe('0000012c'); // filesize 300
    expect(h.subarray(94, 102).toString('ascii')).toBe('00000005'); // namesize includes the NUL
    expect(h.subarray(110, 116).toString('latin1')).toBe('init\0\0');
  });

  it('refuses paths that would escape the archive root', () => {
    expect(archivePath('/bin/node')).toBe('bin/node');
    expect(archivePath('./etc//rebootless/')).toBe('etc/rebootless');
    expect(() => archivePath('../etc/passwd')).toThrow('bad archive path');
    expect(() => archivePath('/')).toThrow('bad archive path');
  });
});
