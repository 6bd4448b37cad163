import * as path from 'node:path';
import { ChainStateFile } from './chain-state';

/**
 * Service producers' keys from configuration (the ledger's and the dispatcher's readers): `producer=key` pairs (the raw 32-byte Ed25519
 * key in hex or base64) and services' data dirs, whose chain/ holds each producer's key.
 * Throws a message naming the bad entry.
 */
export function serviceKeysFrom(pairs: readonly string[], dataDirs: readonly string[]): Map<string, Uint8Array[]> {
  const keys = new Map<string, Uint8Array[]>();
  const add = (producerId: string, raw: Uint8Array) => {
    const list = keys.get(producerId) ?? [];
    if (!list.some((k) => Buffer.from(k).equals(raw))) list.push(raw);
    keys.set(producerId, list);
  };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`"${pair}" is not producer=key`);
    const producerId = pair.slice(0, eq).trim();
    const text = pair.slice(eq + 1).trim();
    const raw = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
    if (raw.length !== 32) throw new Error(`the key of ${producerId} is not 32 bytes of hex or base64`);
    if (producerId.startsWith('agent/'))
      throw new Error(`${producerId}: agent keys are bound at enrollment, not configured`);
    add(producerId, raw);
  }
  for (const dir of dataDirs) {
    for (const chain of ChainStateFile.producersIn(path.join(dir, 'chain')))
      add(chain.producerId, chain.readKey().rawPublicKey);
  }
  return keys;
}
