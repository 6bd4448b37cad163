// The bindings the gateway writes for an agent's relayed epoch starts (docs/adr/0012, "Agent
// keys are vouched for"): the gateway verified the connection's certificate names the host, so
// it is the party that may say which key signs that host's chain.
import { decodeEvent, type EventDraft } from '@rebootless/events';

export interface ConnectionIdentity {
  /** SHA-256 of the certificate the agent presented, hex; empty on an insecure server. */
  certificateFingerprint: string;
  /** The host the certificate names; empty on an insecure server. */
  certificateIdentity: string;
}

/**
 * One `AgentKeyBound` per epoch start of `agent/<hostId>` among `envelopes`, on the host's
 * stream. Envelopes the relay would refuse are left to it (it checks them all before writing).
 */
export function agentKeyBindings(
  hostId: string,
  envelopes: readonly Uint8Array[],
  connection: ConnectionIdentity,
): EventDraft[] {
  const producerId = `agent/${hostId}`;
  const drafts: EventDraft[] = [];
  for (const bytes of envelopes) {
    let body;
    try {
      body = decodeEvent(bytes).body;
    } catch {
      continue;
    }
    const started = body.chainEpochStarted;
    if (!started || body.producer?.producerId !== producerId || started.publicKey.length !== 32) continue;
    drafts.push({
      stream: `host/${hostId}`,
      causationId: body.eventId,
      payload: {
        type: 'AgentKeyBound',
        data: {
          hostId,
          producerId,
          epoch: body.producer.epoch,
          publicKey: started.publicKey,
          certificateFingerprint: connection.certificateFingerprint,
          certificateIdentity: connection.certificateIdentity,
        },
      },
    });
  }
  return drafts;
}
