// A Kafka writer against the ledger (docs/threat-model.md, "Kafka writer" and "one host"): forged
// records of every shape appended to the real log, replayed into both real databases. Each must
// be a stored finding and never a fact; the genuine events after them must still be projected.
import { events, ledger, toTimestamp } from '@rebootless/contracts';
import { ChainedEvent, EventDraft, appendToChain, generateSigningKey } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { complianceReport } from './planning';
import { LedgerQueries } from './queries';
import { LogWriter, ScriptedProducer, agentKeyBound, createScratchDatabase } from './scripted-log';

const kafka = testKafka('ledger-forgery-test');
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const day = (d: number) => new Date(T0 + d * DAY);
const K61 = '6.1.0-18-cloud-amd64';
const CVE = { id: 'CVE-2024-1086', severity: events.Severity.SEVERITY_CRITICAL, cvssScore: '9.8' };
const F = { object: 'vmlinux', name: 'nft_verdict_init', sympos: 0 };
/** The unsealed-tail timeout the ledger runs with here: short, so the test does not wait long. */
const UNSEALED_TIMEOUT_MS = 1_000;

const hostActor = (h: string) => ({ kind: events.ActorKind.ACTOR_KIND_HOST, id: h, origin: h });

function published(patchId: string, module: string, cves = [CVE]): EventDraft {
  return {
    stream: `patch/${patchId}`,
    occurredAt: day(0),
    payload: {
      type: 'PatchPublished',
      data: {
        patchId,
        version: '1',
        buildId: `build-${patchId}`,
        artifacts: [{ kernelRelease: K61, artifactDigest: `sha256:${module}`, vermagic: K61 }],
        cves,
        replace: false,
        severity: events.Severity.SEVERITY_CRITICAL,
        patchName: patchId,
      },
    },
  };
}

/** One host's agent: its own key and chain, every batch sealed. */
class Host {
  readonly chain: ScriptedProducer;
  constructor(readonly id: string) {
    this.chain = new ScriptedProducer(`agent/${id}`);
  }

  facts(): events.HostFacts {
    return {
      hostId: this.id,
      hostname: this.id,
      machineId: `m-${this.id}`,
      kernelRelease: K61,
      kernelVersion: '#1 SMP Debian',
      arch: 'x86_64',
      distro: 'debian 12',
      bootId: 'boot-1',
      labels: {},
      agentVersion: '0.1.0',
      tainted: '0',
      taintFlags: [],
    };
  }

  enroll(): ChainedEvent[] {
    return [
      ...this.chain.start(day(1), `host/${this.id}`),
      ...this.chain.write([
        this.draft(day(1), {
          type: 'HostEnrolled',
          data: { facts: this.facts(), agentPublicKey: this.chain.key.rawPublicKey },
        }),
      ]),
    ];
  }

  draft(at: Date, payload: EventDraft['payload'], stream = `host/${this.id}`): EventDraft {
    return { stream, occurredAt: at, actor: hostActor(this.id), payload };
  }

  /** A PatchApplied draft saying `about` now runs `module` (of patch `patchId`). */
  appliedDraft(at: Date, about: string, patchId: string, module: string, stack: string[]): EventDraft {
    return this.draft(at, {
      type: 'PatchApplied',
      data: {
        hostId: about,
        commandId: '',
        patchId,
        version: '1',
        moduleName: module,
        transitionMs: '1000',
        forced: false,
        replace: false,
        functions: [F],
        stack: stack.map((m, i) => ({
          moduleName: m,
          enabled: true,
          transition: false,
          stackOrder: i + 1,
          replace: false,
          functions: [F],
          objectsPatched: {},
        })),
      },
    });
  }
}

/** What a writer without the producer's key can append: linked to the head, but no valid seal. */
function unsealedAfter(head: ScriptedProducer['head'], draft: EventDraft, seqAhead = 0): ChainedEvent {
  const forger = generateSigningKey();
  // A batch of two is sealed on its second event only: the first is what gets written.
  return appendToChain({ ...head, seq: head.seq + seqAhead }, [draft, draft], forger).events[0]!;
}

async function caughtUp(consumer: LedgerConsumer, topic: string): Promise<void> {
  const end = Date.now() + 90_000;
  for (;;) {
    const { behind } = await replayLag(kafka, topic, consumer.positions);
    if (behind === 0n) return;
    if (Date.now() > end) throw new Error(`the ledger is still ${behind} record(s) behind`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const modules = (s: ledger.HostStack | undefined) => (s?.entries ?? []).map((e) => e.moduleName);

describe.each(['sqlite', 'postgres'] as const)('the ledger on %s, fed forged records', (dialect) => {
  let db: LedgerDatabase;
  let consumer: LedgerConsumer;
  let q: LedgerQueries;
  let dropDb: (() => Promise<void>) | undefined;
  let topic = '';
  let writer: LogWriter;
  const builder = new ScriptedProducer('builder');
  // The gateway that verified each host's certificate at enrolment and bound its agent's key.
  const dispatcher = new ScriptedProducer('dispatcher');
  const web2 = new Host('web-02');
  const web3 = new Host('web-03');
  const evil = new Host('evil-01');

  const pci = async () =>
    (
      await complianceReport(q, {
        scope: undefined,
        minSeverity: 0,
        deadlineDays: 0,
        asOf: toTimestamp(day(40)),
        format: ledger.ReportFormat.REPORT_FORMAT_CSV,
        exemptHostIds: [],
      })
    ).hosts.map((v) => [v.hostId, v.cveId, v.status, v.fixedAt?.seconds ?? '']);
  const findings = async (kind: string, producerId: string) =>
    (await q.integrityFindings()).filter((f) => f.kind === kind && f.producerId === producerId);
  const waitForFinding = async (kind: string, producerId: string) => {
    // Stored by the ledger on its own once the timeout passed; the deadline is only a test guard.
    const guard = Date.now() + 60_000;
    for (;;) {
      const found = await findings(kind, producerId);
      if (found.length > 0) return found;
      if (Date.now() > guard) throw new Error(`no ${kind} finding for ${producerId} was stored`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-forgery', 3);
    writer = await LogWriter.open(kafka, topic);
    await writer.send(builder.start(day(0)));
    await writer.send(builder.write([published('nft-verdict', 'lp_nft_1'), published('tcp-ack', 'lp_tcp_1', [])]));
    await writer.send(dispatcher.start(day(0)));
    for (const h of [web2, web3, evil])
      await writer.send([...agentKeyBound(dispatcher, h.chain, day(1)), ...h.enroll()]);
    // web-02 is fixed (nft), web-03 is not: the PCI rows to keep.
    await writer.send(web2.chain.write([web2.appliedDraft(day(2), 'web-02', 'nft-verdict', 'lp_nft_1', ['lp_nft_1'])]));
    if (dialect === 'postgres') {
      const scratch = await createScratchDatabase('ledger_forgery');
      dropDb = scratch.drop;
      db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    } else {
      const fs = await import('node:fs');
      const os = await import('node:os');
      const path = await import('node:path');
      db = await LedgerDatabase.open({ dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-forgery-')) });
    }
    consumer = new LedgerConsumer({
      kafka,
      db,
      topic,
      serviceKeys: new Map([
        ['builder', [builder.key.rawPublicKey]],
        ['dispatcher', [dispatcher.key.rawPublicKey]],
      ]),
      unsealedTailTimeoutMs: UNSEALED_TIMEOUT_MS,
    });
    await consumer.start();
    await caughtUp(consumer, topic);
    q = new LedgerQueries(db, { onlineWindowMs: 600_000, now: () => T0 + 40 * DAY });
  });

  afterAll(async () => {
    await writer?.close();
    await consumer?.stop();
    await db?.close();
    await dropDb?.();
  });

  it('starts from the genuine history', async () => {
    expect(modules((await q.getHost('web-02')).host?.stack)).toEqual(['lp_nft_1']);
    expect(modules((await q.getHost('web-03')).host?.stack)).toEqual([]);
    expect(await pci()).toEqual([
      ['evil-01', 'CVE-2024-1086', ledger.ComplianceStatus.COMPLIANCE_STATUS_NON_COMPLIANT, ''],
      ['web-02', 'CVE-2024-1086', ledger.ComplianceStatus.COMPLIANCE_STATUS_COMPLIANT, String(day(2).getTime() / 1000)],
      ['web-03', 'CVE-2024-1086', ledger.ComplianceStatus.COMPLIANCE_STATUS_NON_COMPLIANT, ''],
    ]);
  });

  it('keeps every forged shape out of the read models as a stored finding, and projects the genuine events after them', async () => {
    const before = await pci();
    const [web2Head, web3Head] = [web2.chain.head.seq, web3.chain.head.seq];
    // 1. Unsealed at head+1 of web-03's chain: "web-03 applied nft".
    await writer.send([
      unsealedAfter(web3.chain.head, web3.appliedDraft(day(3), 'web-03', 'nft-verdict', 'lp_nft_1', ['lp_nft_1'])),
    ]);
    // 2. Far ahead of web-02's chain: "web-02 applied tcp-ack".
    await writer.send([
      unsealedAfter(
        web2.chain.head,
        web2.appliedDraft(day(3), 'web-02', 'tcp-ack', 'lp_tcp_1', ['lp_nft_1', 'lp_tcp_1']),
        500,
      ),
    ]);
    // 3. A copy of another producer's sealed event (web-02's PatchApplied), appended on web-03's key.
    const sealedOfWeb2 = web2.chain.write([
      web2.appliedDraft(day(3), 'web-02', 'nft-verdict', 'lp_nft_1', ['lp_nft_1']),
    ]);
    await writer.send(sealedOfWeb2);
    await writer.sendRaw('host/web-03', sealedOfWeb2[0]!.envelope);
    // 4. evil-01, sealed with its own vouched key: "web-03 applied nft".
    await writer.send(evil.chain.write([evil.appliedDraft(day(3), 'web-03', 'nft-verdict', 'lp_nft_1', ['lp_nft_1'])]));
    // 5. evil-01, sealed: "nft-verdict is retracted" (an agent may never retract).
    await writer.send(
      evil.chain.write([
        evil.draft(
          day(3),
          { type: 'PatchRetracted', data: { patchId: 'nft-verdict', version: '1', reason: 'forged' } },
          'patch/nft-verdict',
        ),
      ]),
    );

    // The unsealed ones become findings once the timeout passes, stored by the ledger itself.
    expect(await waitForFinding('unsealed', 'agent/web-03')).toEqual([expect.objectContaining({ seq: web3Head + 1 })]);
    expect(await waitForFinding('unsealed', 'agent/web-02')).toEqual([
      expect.objectContaining({ seq: web2Head + 501 }),
    ]);
    expect(await findings('duplicate', 'agent/web-02')).toHaveLength(1);
    const unauthorized = await findings('unauthorized', 'agent/evil-01');
    expect(unauthorized.map((f) => f.detail)).toEqual([
      expect.stringContaining('the agent of evil-01 may speak only about its own host, not "web-03"'),
      expect.stringContaining('an agent may not emit PatchRetracted'),
    ]);

    // Then the genuine events after them: web-03 really applies tcp-ack, evil-01 applies nft on itself.
    await writer.send(web3.chain.write([web3.appliedDraft(day(4), 'web-03', 'tcp-ack', 'lp_tcp_1', ['lp_tcp_1'])]));
    await writer.send(
      evil.chain.write([evil.appliedDraft(day(4), 'evil-01', 'nft-verdict', 'lp_nft_1', ['lp_nft_1'])]),
    );
    await caughtUp(consumer, topic);

    expect(modules((await q.getHost('web-02')).host?.stack)).toEqual(['lp_nft_1']);
    expect(modules((await q.getHost('web-03')).host?.stack)).toEqual(['lp_tcp_1']);
    expect(modules((await q.getHost('evil-01')).host?.stack)).toEqual(['lp_nft_1']);
    const after = await pci();
    expect(after.filter(([h]) => h !== 'evil-01')).toEqual(before.filter(([h]) => h !== 'evil-01'));
    const patches = await q.listPatches({
      pageSize: 0,
      pageToken: '',
      cveId: '',
      kernelRelease: '',
      includeRetracted: true,
    });
    expect(patches.patches.find((p) => p.patchId === 'nft-verdict')?.retracted).toBe(false);
    const web3History = await q.getHostHistory({ hostId: 'web-03', pageSize: 0, pageToken: '' });
    expect(web3History.records.map((r) => r.body?.patchApplied?.patchId).filter(Boolean)).toEqual(['tcp-ack']);
  });
  it("keeps an answer to another host's command out as an unauthorized finding (the command it answers)", async () => {
    // The dispatcher sends web-02 a command, on web-02's stream; the ledger reads it.
    await writer.send(
      dispatcher.write([
        {
          stream: 'host/web-02',
          occurredAt: day(5),
          payload: {
            type: 'HostApplyRequested',
            data: {
              rolloutId: 'r-web02',
              hostId: 'web-02',
              commandId: 'cmd-web02-1',
              patchId: 'tcp-ack',
              version: '1',
              artifactDigest: 'sha256:lp_tcp_1',
              kernelRelease: K61,
              allowForce: false,
              allowDowngrade: false,
              undoStep: 0,
            },
          },
        },
      ]),
    );
    await caughtUp(consumer, topic);
    // evil-01, sealed with its own bound key, about itself, answering web-02's command.
    const answer = evil.appliedDraft(day(5), 'evil-01', 'tcp-ack', 'lp_tcp_1', ['lp_nft_1', 'lp_tcp_1']);
    (answer.payload.data as { commandId: string }).commandId = 'cmd-web02-1';
    await writer.send(evil.chain.write([answer]));
    await caughtUp(consumer, topic);

    const unauthorized = await findings('unauthorized', 'agent/evil-01');
    expect(unauthorized.map((f) => f.detail)).toContainEqual(
      expect.stringContaining('it answers command cmd-web02-1, which was sent to web-02, not to evil-01'),
    );
    expect(modules((await q.getHost('evil-01')).host?.stack)).toEqual(['lp_nft_1']);
    expect(modules((await q.getHost('web-02')).host?.stack)).toEqual(['lp_nft_1']);
  });
});
