// The initramfs format the kernel unpacks: cpio "newc" (Documentation/driver-api/early-userspace/
// buffer-format.rst). Written here rather than by the cpio command so the archive is reproducible
// byte for byte (inode numbers, mtimes and order fixed), which lets the lab cache it by content.
import * as fs from 'node:fs';

export type CpioEntry =
  | { path: string; kind: 'dir'; mode: number }
  | { path: string; kind: 'file'; mode: number; data: Buffer }
  /** A regular file whose bytes are read from the host when the archive is written. */
  | { path: string; kind: 'host-file'; mode: number; source: string }
  | { path: string; kind: 'symlink'; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** One newc header plus the NUL-terminated name, padded so the data starts on a 4-byte boundary. */
export function newcHeader(name: string, ino: number, mode: number, size: number, nlink = 1): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, nameBytes.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return Buffer.concat([header, nameBytes, Buffer.alloc(pad4(header.length + nameBytes.length))]);
}

/** Entry paths as the archive holds them: relative, no `.`/`..` parts, no leading slash. */
export function archivePath(p: string): string {
  const parts = p.split('/').filter((x) => x.length > 0 && x !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new Error(`bad archive path ${JSON.stringify(p)}`);
  return parts.join('/');
}

/**
 * Writes `entries` as a newc archive to `file`. Parent directories are added (0755) where missing,
 * directories always precede their contents, and later entries for the same path win.
 */
export function writeCpio(file: string, entries: readonly CpioEntry[]): number {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const p = archivePath(e.path);
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, kind: 'dir', mode: 0o755 });
    }
    byPath.set(p, { ...e, path: p });
  }
  // Sorted by path: a parent ("a") sorts before its children ("a/b").
  const ordered = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const fd = fs.openSync(file, 'w', 0o644);
  let written = 0;
  const put = (buf: Buffer) => {
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off);
    written += buf.length;
  };
  try {
    let ino = 1;
    for (const e of ordered) {
      switch (e.kind) {
        case 'dir':
          put(newcHeader(e.path, ino++, S_IFDIR | (e.mode & 0o7777), 0, 2));
          break;
        case 'symlink': {
          const target = Buffer.from(e.target, 'utf8');
          put(newcHeader(e.path, ino++, S_IFLNK | 0o777, target.length));
          put(Buffer.concat([target, Buffer.alloc(pad4(target.length))]));
          break;
        }
        case 'file':
          put(newcHeader(e.path, ino++, S_IFREG | (e.mode & 0o7777), e.data.length));
          put(Buffer.concat([e.data, Buffer.alloc(pad4(e.data.length))]));
          break;
        case 'host-file': {
          const size = fs.statSync(e.source).size;
          put(newcHeader(e.path, ino++, S_IFREG | (e.mode & 0o7777), size));
          const src = fs.openSync(e.source, 'r');
          try {
            const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
            let copied = 0;
            for (;;) {
              const n = fs.readSync(src, chunk, 0, chunk.length, null);
              if (n === 0) break;
              put(chunk.subarray(0, n));
              copied += n;
            }
            if (copied !== size) throw new Error(`${e.source} changed size while being archived`);
          } finally {
            fs.closeSync(src);
          }
          put(Buffer.alloc(pad4(size)));
          break;
        }
        default: {
          const never: never = e;
          throw new Error(`unknown cpio entry ${JSON.stringify(never)}`);
        }
      }
    }
    put(newcHeader('TRAILER!!!', 0, 0, 0, 1));
    // The kernel reads the archive in 512-byte blocks' worth of padding without complaint; cpio(1) expects it.
    put(Buffer.alloc((512 - (written % 512)) % 512));
  } finally {
    fs.closeSync(fd);
  }
  return written;
}
