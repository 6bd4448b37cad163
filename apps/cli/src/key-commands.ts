// Agent keys, as operators act on them: `hosts revoke-key` asks the dispatcher (whose gateway
// bound the key when the host enrolled) to write AgentKeyRevoked (docs/adr/0012).
import type { dispatcher } from '@rebootless/contracts';
import type { CommandContext } from './context';
import { ExitCode } from './exit-codes';
import { optionalCount, str } from './flags';

export async function hostsRevokeKey(ctx: CommandContext): Promise<ExitCode> {
  const hostId = ctx.positionals['HOST']!;
  const epoch = optionalCount(ctx.flags, 'epoch', 1) ?? 0;
  const reason = str(ctx.flags, 'reason')!;
  const response = await ctx.calls.unary<dispatcher.RevokeAgentKeyResponse>('dispatcher', 'RevokeAgentKey', {
    hostId,
    epoch,
    reason,
  });
  const epochs = response.epochs ?? [];
  const fingerprints = response.keyFingerprints ?? [];
  const keys = epochs.map((e, i) => `epoch ${e} (key ${fingerprints[i] ?? '?'})`).join(', ');
  ctx.answer(
    `revoked ${hostId}'s agent key of ${keys}: the gateway refuses its relays and readers keep what it signs from now on out of the read models. ` +
      `Re-enrol a rebuilt host with a new key (remove its agent's chain state and start the agent).`,
    () => ({ hostId, producerId: `agent/${hostId}`, epochs, keyFingerprints: fingerprints, reason }),
  );
  return ExitCode.Ok;
}
