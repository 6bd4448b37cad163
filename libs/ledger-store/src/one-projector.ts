import { AssignerProtocol, PartitionAssigner } from 'kafkajs';

const NAME = 'RebootlessOneProjector';

/**
 * Kafka's group protocol choosing which ledger projects (docs/adr/0024): every partition goes to
 * one member, the one that joined first (its start time rides in the member's metadata), the
 * others stand by and answer queries from the shared database. A producer's chain spans
 * partitions (the dispatcher writes on every host's), so a verifier needs all of them: the
 * partitions move together, to the next member, when that one dies or leaves.
 */
export function oneProjectorAssigner(startedAt: number): PartitionAssigner {
  return ({ cluster }) => ({
    name: NAME,
    version: 1,
    async assign({ members, topics }) {
      const since = (metadata: Buffer) => {
        const n = Number(AssignerProtocol.MemberMetadata.decode(metadata)?.userData.toString() ?? '');
        return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER;
      };
      const [first] = members
        .map((m) => ({ memberId: m.memberId, since: since(m.memberMetadata) }))
        .sort((a, b) => a.since - b.since || (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
      const all = Object.fromEntries(
        topics.map((t) => [t, cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId)]),
      );
      return members.map((m) => ({
        memberId: m.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: m.memberId === first?.memberId ? all : {},
          userData: Buffer.alloc(0),
        }),
      }));
    },
    protocol({ topics }) {
      return {
        name: NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: 1,
          topics,
          userData: Buffer.from(String(startedAt)),
        }),
      };
    },
  });
}
