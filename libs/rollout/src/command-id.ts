// A command's id is derived from the fold, not drawn at random (docs/adr/0025, fencing addendum).
// A driver cut off from the database may write a command late, after the instance that took its
// lease over read the log without it and decided the same host's next step: both then write the
// same id, and every reader (the other instances, the ledger, the agent) takes it as one command.
import { createHash } from 'node:crypto';
import type { HostRun, RolloutRun } from './rollout-state';

export interface CommandAsked {
  type: 'HostApplyRequested' | 'HostRevertRequested';
  patchId: string;
  version: string;
  undoStep: number;
}

/**
 * The id of the host's next command in the rollout: a UUID (version 8, RFC 9562) hashed from the
 * rollout, the host, the host's commands so far in it (each new command replaces one of them, so
 * the next id changes with every command) and what is asked. A different request is a different
 * command, and keeps its own id.
 */
export function commandIdFor(run: RolloutRun, host: HostRun, asked: CommandAsked): string {
  const hash = createHash('sha256');
  for (const part of [
    'rebootless/command/v1',
    run.rolloutId,
    host.hostId,
    host.apply?.commandId ?? '',
    host.revert?.commandId ?? '',
    asked.type,
    asked.patchId,
    asked.version,
    String(asked.undoStep),
  ]) {
    // Length-prefixed, so no two lists of parts hash alike.
    hash.update(`${Buffer.byteLength(part)}:`).update(part);
  }
  const b = hash.digest().subarray(0, 16);
  b[6] = 0x80 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
