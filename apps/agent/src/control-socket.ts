// AgentControl on a Unix socket, as deployed on a host: the file system is the access check.
// The socket is 0600 inside a 0700 directory owned by the agent's user (root under systemd),
// so only that user can connect; no certificate or token is asked for on it.
import * as fs from 'node:fs';
import * as path from 'node:path';

export class ControlSocketError extends Error {}

/**
 * Makes the socket's directory (0700) if missing, and refuses one that another user owns or
 * that others may enter: a socket there could be replaced by someone else's.
 */
export function prepareControlSocket(socketPath: string): void {
  const dir = path.dirname(socketPath);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const info = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!info.isDirectory()) throw new ControlSocketError(`${dir} is not a directory`);
  if (uid !== undefined && info.uid !== uid) {
    throw new ControlSocketError(`${dir} belongs to uid ${info.uid}, not to the agent's user (uid ${uid})`);
  }
  if ((info.mode & 0o077) !== 0) {
    throw new ControlSocketError(
      `${dir} is mode ${(info.mode & 0o777).toString(8)}: others could reach or replace the socket; make it 0700`,
    );
  }
  // A socket left by an agent that was killed: binding would fail with EADDRINUSE.
  const existing = fs.lstatSync(socketPath, { throwIfNoEntry: false });
  if (existing?.isSocket()) fs.rmSync(socketPath);
  else if (existing) throw new ControlSocketError(`${socketPath} exists and is not a socket`);
}

/** Once bound: owner read/write only, whatever the umask was. */
export function restrictControlSocket(socketPath: string): void {
  fs.chmodSync(socketPath, 0o600);
}
