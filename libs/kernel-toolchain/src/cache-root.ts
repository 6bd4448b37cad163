import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Where one of rebootless's caches lives: $<explicitEnv> if set, else
 * $XDG_CACHE_HOME/rebootless/<name>, else ~/.cache/rebootless/<name>. CI keeps ~/.cache/rebootless.
 */
export function rebootlessCacheDir(name: string, explicitEnv: string): string {
  const explicit = process.env[explicitEnv];
  if (explicit) return path.resolve(explicit);
  const xdg = process.env['XDG_CACHE_HOME'];
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'rebootless', name);
}
