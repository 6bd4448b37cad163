// The ledger against the real broker and both real databases: a scripted fleet history, written
// as real signed chains (builder, dispatcher, one chain per agent), replayed into the read models.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { dispatcher, events, ledger, toTimestamp } from '@rebootless/contracts';
import { ChainedEvent, EventDraft, chainHash, encodeEnvelope, generateSigningKey, signHash } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { InvalidArgumentError, NotFoundError } from './errors';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { complianceReport, undoPlanForHost } from './planning';
import { LedgerQueries } from './queries';
import { vexReport } from './vex-report';
import { LogWriter, ScriptedProducer, agentKeyBound, createScratchDatabase } from './scripted-log';

const kafka = testKafka('ledger-history-test');
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const day = (d: number) => new Date(T0 + d * DAY);
const K61 = '6.1.0-18-cloud-amd64';
const K419 = '4.19.0-27-amd64';

const fn = (name: string, object = 'vmlinux') => ({ object, name, sympos: 0 });
const F = {
  nft: fn('nft_verdict_init'),
  ovl: fn('ovl_copy_up', 'overlay'),
  pipapo: fn('nft_pipapo_walk'),
  tcp: fn('tcp_ack'),
  udp: fn('udp_rcv'),
  kmalloc: fn('kmalloc_trace'),
};
const cve = (id: string, severity: events.Severity) => ({ id, severity, cvssScore: '' });
const CRIT = events.Severity.SEVERITY_CRITICAL;
const CVE_NFT = cve('CVE-2024-1086', CRIT);
const CVE_OVL = cve('CVE-2023-0386', events.Severity.SEVERITY_HIGH);
const CVE_PIPAPO = cve('CVE-2024-26581', CRIT);

interface PatchSpec {
  patchId: string;
  version: string;
  module: string;
  functions: events.PatchedFunction[];
  cves: events.Cve[];
  replace?: boolean;
  kernel: string;
}

const P = {
  nft: { patchId: 'nft-verdict', version: '1', module: 'lp_nft_1', functions: [F.nft], cves: [CVE_NFT], kernel: K61 },
  ovl: { patchId: 'ovl-copy-up', version: '1', module: 'lp_ovl_1', functions: [F.ovl], cves: [CVE_OVL], kernel: K61 },
  cum1: {
    patchId: 'cumulative',
    version: '1',
    module: 'lp_cum_1',
    functions: [F.nft, F.ovl, F.pipapo],
    cves: [CVE_NFT, CVE_OVL, CVE_PIPAPO],
    replace: true,
    kernel: K61,
  },
  cum2: {
    patchId: 'cumulative',
    version: '2',
    module: 'lp_cum_2',
    functions: [F.nft, F.ovl, F.pipapo, F.tcp],
    cves: [CVE_NFT, CVE_OVL, CVE_PIPAPO],
    replace: true,
    kernel: K61,
  },
  extra: { patchId: 'tcp-ack', version: '1', module: 'lp_extra_1', functions: [F.tcp], cves: [], kernel: K61 },
  third: { patchId: 'udp-rcv', version: '1', module: 'lp_third_1', functions: [F.tcp, F.udp], cves: [], kernel: K61 },
  hotfix: {
    patchId: 'kmalloc-hotfix',
    version: '1',
    module: 'lp_hotfix_1',
    functions: [F.kmalloc],
    cves: [],
    kernel: K61,
  },
  oldA: { patchId: 'old-nft', version: '1', module: 'lp_olda_1', functions: [F.nft], cves: [CVE_NFT], kernel: K419 },
  oldB: { patchId: 'old-tcp', version: '1', module: 'lp_oldb_1', functions: [F.nft, F.tcp], cves: [], kernel: K419 },
} satisfies Record<string, PatchSpec>;

const alice = { kind: events.ActorKind.ACTOR_KIND_USER, id: 'alice', origin: '10.0.0.5' };
const hostActor = (h: string) => ({ kind: events.ActorKind.ACTOR_KIND_HOST, id: h, origin: h });

function published(p: PatchSpec, at: Date): EventDraft[] {
  const buildId = `build-${p.patchId}-${p.version}`;
  const severity = p.cves.reduce((s, c) => Math.max(s, c.severity), 0);
  return [
    {
      stream: `build/${buildId}`,
      occurredAt: at,
      actor: alice,
      payload: {
        type: 'BuildRequested',
        data: {
          buildId,
          patchId: p.patchId,
          patchName: p.patchId,
          version: p.version,
          description: `fix ${p.patchId}`,
          cves: p.cves,
          replace: p.replace ?? false,
          kernelReleases: [p.kernel],
          sourceKind: 1,
          sourceSha256: 'ab'.repeat(32),
        },
      },
    },
    {
      stream: `build/${buildId}`,
      occurredAt: at,
      payload: {
        type: 'BuildSucceeded',
        data: {
          buildId,
          kernelRelease: p.kernel,
          artifactDigest: `sha256:${p.module}`,
          manifest: {
            patchId: p.patchId,
            version: p.version,
            moduleName: p.module,
            kernelRelease: p.kernel,
            vermagic: `${p.kernel} SMP mod_unload`,
            sha256: 'cd'.repeat(32),
            sizeBytes: '4096',
            functions: p.functions,
            replace: p.replace ?? false,
            cves: p.cves,
            severity,
            toolchain: {},
            builtAt: at.toISOString(),
            description: `fix ${p.patchId}`,
          },
          manifestSignature: Buffer.alloc(64),
          changedFunctions: p.functions,
          durationMs: '1000',
        },
      },
    },
    {
      stream: `patch/${p.patchId}`,
      occurredAt: at,
      actor: alice,
      payload: {
        type: 'PatchPublished',
        data: {
          patchId: p.patchId,
          version: p.version,
          buildId,
          artifacts: [{ kernelRelease: p.kernel, artifactDigest: `sha256:${p.module}`, vermagic: p.kernel }],
          cves: p.cves,
          replace: p.replace ?? false,
          severity,
          patchName: p.patchId,
        },
      },
    },
  ];
}

const live = (...ps: PatchSpec[]): events.LivePatchState[] =>
  ps.map((p, i) => ({
    moduleName: p.module,
    enabled: true,
    transition: false,
    replace: p.replace ?? false,
    stackOrder: i + 1,
    functions: p.functions,
    objectsPatched: {},
  }));

class Agent {
  readonly chain: ScriptedProducer;
  bootId = 'boot-1';

  constructor(
    readonly hostId: string,
    readonly kernel: string,
    readonly labels: Record<string, string> = {},
  ) {
    this.chain = new ScriptedProducer(`agent/${hostId}`);
  }

  facts(): events.HostFacts {
    return {
      hostId: this.hostId,
      hostname: `${this.hostId}.example.net`,
      machineId: `m-${this.hostId}`,
      kernelRelease: this.kernel,
      kernelVersion: '#1 SMP Debian',
      arch: 'x86_64',
      distro: 'debian 12',
      bootId: this.bootId,
      labels: this.labels,
      agentVersion: '0.1.0',
      tainted: '0',
      taintFlags: [],
    };
  }

  private draft(at: Date, payload: EventDraft['payload'], correlationId = ''): EventDraft {
    return { stream: `host/${this.hostId}`, occurredAt: at, actor: hostActor(this.hostId), correlationId, payload };
  }

  enroll(at: Date): ChainedEvent[] {
    return [
      ...this.chain.start(at, `host/${this.hostId}`),
      ...this.chain.write([
        this.draft(at, {
          type: 'HostEnrolled',
          data: { facts: this.facts(), agentPublicKey: this.chain.key.rawPublicKey },
        }),
      ]),
    ];
  }

  applied(
    at: Date,
    p: PatchSpec,
    stack: PatchSpec[],
    opts: { rollout?: string; forced?: boolean; commandId?: string } = {},
  ): ChainedEvent[] {
    return this.chain.write([
      this.draft(
        at,
        {
          type: 'PatchApplied',
          data: {
            hostId: this.hostId,
            commandId: opts.commandId ?? `cmd-${p.module}-${at.getTime()}`,
            patchId: p.patchId,
            version: p.version,
            moduleName: p.module,
            transitionMs: '1200',
            forced: opts.forced ?? false,
            replace: p.replace ?? false,
            functions: p.functions,
            stack: live(...stack),
          },
        },
        opts.rollout,
      ),
    ]);
  }

  reverted(at: Date, p: PatchSpec, stack: PatchSpec[]): ChainedEvent[] {
    return this.chain.write([
      this.draft(at, {
        type: 'PatchReverted',
        data: {
          hostId: this.hostId,
          commandId: `cmd-revert-${p.module}`,
          patchId: p.patchId,
          version: p.version,
          moduleName: p.module,
          transitionMs: '900',
          stack: live(...stack),
        },
      }),
    ]);
  }

  booted(at: Date, bootId: string): ChainedEvent[] {
    const previous = this.bootId;
    this.bootId = bootId;
    return this.chain.write([
      this.draft(at, {
        type: 'HostBooted',
        data: { hostId: this.hostId, bootId, previousBootId: previous, kernelRelease: this.kernel },
      }),
    ]);
  }

  inventory(at: Date, stack: PatchSpec[]): ChainedEvent[] {
    return this.chain.write([
      this.draft(at, { type: 'HostInventoryReported', data: { facts: this.facts(), patches: live(...stack) } }),
    ]);
  }
}

/** Writes the whole scripted history; returns the keys the ledger must vouch for. */
async function writeHistory(writer: LogWriter) {
  const builder = new ScriptedProducer('builder');
  const dispatcher = new ScriptedProducer('dispatcher');
  const web1 = new Agent('web-1', K61, { role: 'web', dc: 'fra' });
  const web2 = new Agent('web-2', K419, { role: 'db' });
  const web3 = new Agent('web-3', K61, { role: 'web' });
  // A label key JSON paths would misread: the filter must take it as a key, nothing else.
  const web4 = new Agent('web-4', K61, { role: 'batch', 'rack."$[0]': 'b 7' });
  const web9 = new Agent('web-9', K61);

  await writer.send(builder.start(day(0)));
  for (const p of [P.nft, P.ovl, P.extra, P.third, P.hotfix, P.oldA, P.oldB])
    await writer.send(builder.write(published(p, day(0))));
  await writer.send(dispatcher.start(day(1)));
  // Each agent's key is bound by the gateway that verified its host's certificate.
  for (const a of [web1, web2, web3, web4, web9]) await writer.send(agentKeyBound(dispatcher, a.chain, day(1)));
  for (const a of [web1, web2, web3, web4]) await writer.send(a.enroll(day(1)));
  await writer.send(
    dispatcher.write([
      {
        stream: 'rollout/r-nft',
        occurredAt: day(1.01),
        actor: alice,
        correlationId: 'r-nft',
        payload: {
          type: 'RolloutCreated',
          data: {
            rolloutId: 'r-nft',
            patchId: P.nft.patchId,
            version: P.nft.version,
            selector: { kernelReleases: [K61], labels: { role: 'web' }, hostIds: [] },
            // As the dispatcher plans it: a host that never answers is waited for a week.
            strategy: {
              ...events.RolloutStrategy.decode(new Uint8Array(0)),
              applyTimeoutSeconds: 600,
              offlineDeadlineSeconds: 7 * 86_400,
            },
            waves: [{ index: 0, name: 'canary', hostIds: ['web-1', 'web-3'] }],
            skippedHostIds: [],
            undo: false,
            reason: '',
            allowForce: false,
            allowDowngrade: false,
            undoModules: {},
            undoPlans: {},
          },
        },
      },
      {
        stream: 'rollout/r-nft',
        occurredAt: day(1.02),
        actor: alice,
        correlationId: 'r-nft',
        payload: { type: 'WaveStarted', data: { rolloutId: 'r-nft', waveIndex: 0, hostIds: ['web-1', 'web-3'] } },
      },
      {
        stream: 'host/web-1',
        occurredAt: day(1.03),
        correlationId: 'r-nft',
        payload: {
          type: 'HostApplyRequested',
          data: {
            rolloutId: 'r-nft',
            hostId: 'web-1',
            commandId: 'cmd-1',
            patchId: P.nft.patchId,
            version: '1',
            artifactDigest: 'sha256:lp_nft_1',
            kernelRelease: K61,
            allowForce: false,
            allowDowngrade: false,
            undoStep: 0,
          },
        },
      },
    ]),
  );
  await writer.send(web1.applied(day(2), P.nft, [P.nft], { rollout: 'r-nft', commandId: 'cmd-1' }));
  await writer.send(web2.applied(day(2), P.oldA, [P.oldA]));
  await writer.send(web1.applied(day(3), P.ovl, [P.nft, P.ovl]));
  await writer.send(web2.applied(day(3), P.oldB, [P.oldA, P.oldB]));
  await writer.send(web4.applied(day(3), P.extra, [P.extra]));
  await writer.send(web4.applied(day(3.1), P.third, [P.extra, P.third]));
  await writer.send(web4.applied(day(4), P.hotfix, [P.extra, P.third, P.hotfix], { forced: true }));
  await writer.send(builder.write(published(P.cum1, day(5))));
  await writer.send(web1.applied(day(6), P.cum1, [P.cum1]));
  await writer.send(web1.applied(day(7), P.extra, [P.cum1, P.extra]));
  await writer.send(web1.applied(day(7.2), P.third, [P.cum1, P.extra, P.third]));
  await writer.send(web1.reverted(day(8), P.extra, [P.cum1, P.third]));
  await writer.send(builder.write(published(P.cum2, day(9))));
  await writer.send(web1.applied(day(10), P.cum2, [P.cum2]));
  await writer.send(web1.booted(day(12), 'boot-2'));
  await writer.send(web1.applied(day(13), P.cum2, [P.cum2]));

  // Bad input on web-9's chain, after a sound start: each must become a finding, and the
  // sound event after them must still be projected.
  await writer.send(web9.enroll(day(1)));
  const forger = generateSigningKey();
  const headBefore = web9.chain.head;
  const badSignature = new ScriptedProducer('agent/web-9', { key: forger });
  badSignature.head = headBefore;
  const forged = badSignature.write([
    {
      stream: 'host/web-9',
      occurredAt: day(2),
      payload: {
        type: 'PatchApplied',
        data: {
          hostId: 'web-9',
          commandId: 'x',
          patchId: 'forged',
          version: '1',
          moduleName: 'lp_forged',
          transitionMs: '1',
          forced: false,
          replace: false,
          functions: [F.tcp],
          stack: live({ ...P.extra, module: 'lp_forged' }),
        },
      },
    },
  ]);
  await writer.send(forged);
  // A broken link: the right key, but prev_hash is not the previous event's hash.
  web9.chain.head = { ...badSignature.head, hash: Buffer.alloc(32, 7) };
  const broken = web9.inventory(day(2.5), [{ ...P.extra, module: 'lp_broken' }]);
  await writer.send(broken);
  // An unknown type, correctly chained and sealed.
  const prev = web9.chain.head;
  const body = events.EventBody.encode({
    eventId: '019c0000-0000-7000-8000-000000000001',
    type: 'PatchTeleported',
    stream: 'host/web-9',
    occurredAt: toTimestamp(day(2.6)),
    actor: hostActor('web-9'),
    correlationId: '',
    causationId: '',
    producer: { producerId: 'agent/web-9', epoch: prev.epoch, seq: String(prev.seq + 1), prevHash: prev.hash },
    hostInventoryReported: { facts: web9.facts(), patches: live({ ...P.extra, module: 'lp_teleported' }) },
  }).finish();
  const hash = chainHash(prev.hash, body);
  await writer.sendRaw('host/web-9', encodeEnvelope(body, hash, signHash(web9.chain.key, hash)));
  web9.chain.head = { ...prev, seq: prev.seq + 1, hash };
  await writer.sendRaw('host/web-9', Buffer.from('not an envelope at all'));
  const sound = web9.inventory(day(3), []);
  await writer.send(sound);

  return {
    serviceKeys: new Map<string, Uint8Array[]>([
      ['builder', [builder.key.rawPublicKey]],
      ['dispatcher', [dispatcher.key.rawPublicKey]],
    ]),
    soundWeb9EventId: sound[0]!.eventId,
  };
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
const at = (d: number) => toTimestamp(day(d));

describe.each(['sqlite', 'postgres'] as const)('the ledger on %s, replaying a scripted fleet history', (dialect) => {
  let db: LedgerDatabase;
  let consumer: LedgerConsumer;
  let q: LedgerQueries;
  let dropDb: (() => Promise<void>) | undefined;
  let soundWeb9EventId = '';

  beforeAll(async () => {
    const topic = await freshEventsTopic('ledger', 3);
    const writer = await LogWriter.open(kafka, topic);
    const history = await writeHistory(writer);
    await writer.close();
    soundWeb9EventId = history.soundWeb9EventId;
    if (dialect === 'postgres') {
      const scratch = await createScratchDatabase();
      dropDb = scratch.drop;
      db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    } else {
      const dir = (await import('node:fs')).mkdtempSync(
        (await import('node:path')).join((await import('node:os')).tmpdir(), 'ledger-'),
      );
      db = await LedgerDatabase.open({ dataDir: dir });
    }
    consumer = new LedgerConsumer({ kafka, db, topic, serviceKeys: history.serviceKeys });
    await consumer.start();
    await caughtUp(consumer, topic);
    await consumer.flushGaps();
    // "now" is day 40 of the scripted history, so the 30-day deadlines have passed.
    q = new LedgerQueries(db, { onlineWindowMs: 600_000, now: () => T0 + 40 * DAY });
  });

  afterAll(async () => {
    await consumer?.stop();
    await db?.close();
    await dropDb?.();
  });

  it('shows each host the way uptrack-show / kpatch list would, with the code each function runs', async () => {
    const { host } = await q.getHost('web-1');
    expect(host?.facts).toMatchObject({ hostname: 'web-1.example.net', kernelRelease: K61, bootId: 'boot-2' });
    expect(modules(host?.stack)).toEqual(['lp_cum_2']);
    expect(host?.stack?.entries[0]).toMatchObject({
      position: 1,
      patch: { patchId: 'cumulative', version: '2' },
      state: ledger.StackEntryState.STACK_ENTRY_STATE_ENABLED,
      replace: true,
      forced: false,
      cveIds: ['CVE-2024-1086', 'CVE-2023-0386', 'CVE-2024-26581'],
    });
    expect(host?.stack?.effectiveKernel).toBe(`${K61} + cumulative 2 (replace)`);
    expect(host?.stack?.functions.map((f) => [f.function?.name, f.runs?.moduleName])).toEqual([
      ['ovl_copy_up', 'lp_cum_2'],
      ['nft_pipapo_walk', 'lp_cum_2'],
      ['nft_verdict_init', 'lp_cum_2'],
      ['tcp_ack', 'lp_cum_2'],
    ]);
    expect(host?.rebootRequired).toBe(false);

    const web4 = (await q.getHost('web-4')).host;
    expect(modules(web4?.stack)).toEqual(['lp_extra_1', 'lp_third_1', 'lp_hotfix_1']);
    expect(web4?.rebootRequired).toBe(true);
    expect(web4?.stack?.functions.find((f) => f.function?.name === 'tcp_ack')?.runs?.moduleName).toBe('lp_third_1');
  });

  it('gives the stack at any past instant, with the event it rests on', async () => {
    const stackAt = async (d: number) => (await q.getHostStackAt('web-1', at(d))).stack;
    expect(modules(await stackAt(1.5))).toEqual([]);
    expect(modules(await stackAt(2.5))).toEqual(['lp_nft_1']);
    expect(modules(await stackAt(3.5))).toEqual(['lp_nft_1', 'lp_ovl_1']);
    expect(modules(await stackAt(6.5))).toEqual(['lp_cum_1']);
    expect(modules(await stackAt(7.5))).toEqual(['lp_cum_1', 'lp_extra_1', 'lp_third_1']);
    const afterDisable = await stackAt(8.5);
    expect(modules(afterDisable)).toEqual(['lp_cum_1', 'lp_third_1']);
    expect(afterDisable?.functions.map((f) => [f.function?.name, f.runs?.moduleName])).toEqual([
      ['ovl_copy_up', 'lp_cum_1'],
      ['nft_pipapo_walk', 'lp_cum_1'],
      ['nft_verdict_init', 'lp_cum_1'],
      ['tcp_ack', 'lp_third_1'],
      ['udp_rcv', 'lp_third_1'],
    ]);
    expect(modules(await stackAt(10.5))).toEqual(['lp_cum_2']);
    expect(modules(await stackAt(12.5))).toEqual([]);
    expect(modules(await stackAt(13.5))).toEqual(['lp_cum_2']);

    const { asOf } = await q.getHostStackAt('web-1', at(8.5));
    expect(asOf?.body?.type).toBe('PatchReverted');
    expect(asOf?.summary).toBe('reverted tcp-ack 1 on web-1');
    // Who applied it: the operator who created the rollout.
    const first = (await q.getHostStackAt('web-1', at(2.5))).stack?.entries[0];
    expect(first).toMatchObject({ rolloutId: 'r-nft', appliedBy: { id: 'alice' } });
  });

  it('keeps every entry as an interval with why it ended', async () => {
    const rows = await db.query<{ module_name: string; removal_reason: string | null }>(
      "SELECT module_name, removal_reason FROM stack_intervals WHERE host_id = 'web-1' ORDER BY stack_seq",
    );
    expect(rows.map((r) => [r.module_name, r.removal_reason])).toEqual([
      ['lp_nft_1', 'replaced'],
      ['lp_ovl_1', 'replaced'],
      ['lp_cum_1', 'replaced'],
      ['lp_extra_1', 'reverted'],
      ['lp_third_1', 'replaced'],
      ['lp_cum_2', 'rebooted'],
      ['lp_cum_2', null],
    ]);
  });

  it('plans undos by the kernel rules', async () => {
    // A cumulative (replace) patch: load the previous cumulative again, a downgrade.
    const cumulative = await undoPlanForHost(q, 'web-1', 'cumulative');
    expect(cumulative.disableOrder).toBe(ledger.DisableOrder.DISABLE_ORDER_ANY);
    expect(cumulative.steps.map((s) => [s.kind, s.moduleName, s.downgrade])).toEqual([
      [ledger.UndoStepKind.UNDO_STEP_KIND_APPLY, 'lp_cum_1', true],
      [ledger.UndoStepKind.UNDO_STEP_KIND_REVERT, 'lp_cum_2', false],
    ]);
    expect(cumulative.functions.map((f) => [f.function?.name, f.runsNow?.moduleName, f.runsAfter?.moduleName])).toEqual(
      [
        ['ovl_copy_up', 'lp_cum_2', 'lp_cum_1'],
        ['nft_pipapo_walk', 'lp_cum_2', 'lp_cum_1'],
        ['nft_verdict_init', 'lp_cum_2', 'lp_cum_1'],
        ['tcp_ack', 'lp_cum_2', ''],
      ],
    );

    // 5.1+: a middle patch goes on its own; its functions fall back to the next older patch.
    const middle = await undoPlanForHost(q, 'web-4', 'udp-rcv');
    expect(middle.steps.map((s) => [s.kind, s.moduleName])).toEqual([
      [ledger.UndoStepKind.UNDO_STEP_KIND_REVERT, 'lp_third_1'],
    ]);
    expect(middle.functions.map((f) => [f.function?.name, f.runsNow?.moduleName, f.runsAfter?.moduleName])).toEqual([
      ['tcp_ack', 'lp_third_1', 'lp_extra_1'],
      ['udp_rcv', 'lp_third_1', ''],
    ]);

    // Before 5.1: the patches above go first, and come back after.
    const old = await undoPlanForHost(q, 'web-2', 'old-nft');
    expect(old.disableOrder).toBe(ledger.DisableOrder.DISABLE_ORDER_TOP_ONLY);
    expect(old.steps.map((s) => [s.kind, s.moduleName])).toEqual([
      [ledger.UndoStepKind.UNDO_STEP_KIND_REVERT, 'lp_oldb_1'],
      [ledger.UndoStepKind.UNDO_STEP_KIND_REVERT, 'lp_olda_1'],
      [ledger.UndoStepKind.UNDO_STEP_KIND_APPLY, 'lp_oldb_1'],
    ]);

    // Forced: cannot be removed; a reboot is the plan.
    const forced = await undoPlanForHost(q, 'web-4', 'kmalloc-hotfix');
    expect(forced.rebootRequired).toBe(true);
    expect(forced.steps.map((s) => s.kind)).toContain(ledger.UndoStepKind.UNDO_STEP_KIND_REBOOT);
    expect(
      forced.steps.some((s) => s.kind === ledger.UndoStepKind.UNDO_STEP_KIND_REVERT && s.moduleName === 'lp_hotfix_1'),
    ).toBe(false);

    await expect(undoPlanForHost(q, 'web-3', 'cumulative')).rejects.toThrow(
      new NotFoundError('patch cumulative is not on the patch stack of host web-3'),
    );
    await expect(undoPlanForHost(q, 'nope', 'cumulative')).rejects.toThrow(NotFoundError);
  });

  it('reports PCI-DSS 6.3.3 compliance per host and CVE, with the evidence', async () => {
    const report = await complianceReport(q, {
      scope: undefined,
      minSeverity: 0,
      deadlineDays: 0,
      asOf: at(40),
      format: ledger.ReportFormat.REPORT_FORMAT_CSV,
      exemptHostIds: [],
    });
    const verdict = (h: string, c: string) => report.hosts.find((v) => v.hostId === h && v.cveId === c);
    const S = ledger.ComplianceStatus;
    expect(report.hosts.map((v) => [v.hostId, v.cveId, v.status])).toEqual([
      ['web-1', 'CVE-2024-1086', S.COMPLIANCE_STATUS_COMPLIANT],
      ['web-1', 'CVE-2024-26581', S.COMPLIANCE_STATUS_COMPLIANT],
      ['web-2', 'CVE-2024-1086', S.COMPLIANCE_STATUS_COMPLIANT],
      ['web-3', 'CVE-2024-1086', S.COMPLIANCE_STATUS_NON_COMPLIANT],
      ['web-3', 'CVE-2024-26581', S.COMPLIANCE_STATUS_NON_COMPLIANT],
      ['web-4', 'CVE-2024-1086', S.COMPLIANCE_STATUS_NON_COMPLIANT],
      ['web-4', 'CVE-2024-26581', S.COMPLIANCE_STATUS_NON_COMPLIANT],
      ['web-9', 'CVE-2024-1086', S.COMPLIANCE_STATUS_NON_COMPLIANT],
      ['web-9', 'CVE-2024-26581', S.COMPLIANCE_STATUS_NON_COMPLIANT],
    ]);
    // web-1 was exposed from enrollment (day 1) to the first fix (day 2), and again from the
    // reboot (day 12) to the re-apply (day 13): both well inside 30 days. The verdict rests on
    // the latest exposure.
    const web1 = verdict('web-1', 'CVE-2024-1086')!;
    expect(web1.exposedSince).toEqual(at(12));
    expect(web1.fixedAt).toEqual(at(13));
    expect(web1.fixedBy).toEqual({ patchId: 'cumulative', version: '2' });
    expect(web1.evidenceEventIds.length).toBeGreaterThanOrEqual(2);
    expect(report.hostsInScope).toBe(5);
    expect(report.hostsCompliant).toBe(2);
    expect(report.integrityFindings).toBeGreaterThanOrEqual(4);
    expect(report.rendered.split('\n')[0]).toMatch(
      /^host,cve,severity,status,exposed_since,deadline,fixed_at,fixed_by,/,
    );
    expect(report.rendered).toContain('web-3,CVE-2024-1086,critical,non-compliant,2026-01-02T00:00:00.000Z');

    // Within the deadline, the unpatched hosts are not late yet; an exempted host says so.
    const early = await complianceReport(q, {
      scope: undefined,
      minSeverity: 0,
      deadlineDays: 30,
      asOf: at(20),
      format: ledger.ReportFormat.REPORT_FORMAT_TABLE,
      exemptHostIds: ['web-4'],
    });
    expect(early.hosts.find((v) => v.hostId === 'web-3' && v.cveId === 'CVE-2024-1086')?.status).toBe(
      S.COMPLIANCE_STATUS_COMPLIANT,
    );
    expect(early.hosts.find((v) => v.hostId === 'web-4')?.status).toBe(S.COMPLIANCE_STATUS_EXEMPT);
    expect(early.rendered).toMatch(/^PCI-DSS v4.0 6.3.3 as of 2026-01-21T00:00:00.000Z: .*5 of 5 host\(s\) compliant/);
  });

  it('lists hosts by kernel, label, patch carried and CVE exposure', async () => {
    const ids = async (req: Partial<ledger.ListHostsRequest>) =>
      (
        await q.listHosts({
          pageSize: 0,
          pageToken: '',
          kernelRelease: '',
          labels: {},
          carriesPatchId: '',
          exposedToCveId: '',
          ...req,
        })
      ).hosts.map((h) => h.facts?.hostId);
    expect(await ids({ kernelRelease: K419 })).toEqual(['web-2']);
    expect(await ids({ labels: { role: 'web' } })).toEqual(['web-1', 'web-3']);
    expect(await ids({ labels: { role: 'web', dc: 'fra' } })).toEqual(['web-1']);
    expect(await ids({ labels: { role: 'we' } })).toEqual([]);
    expect(await ids({ labels: { 'rack."$[0]': 'b 7' } })).toEqual(['web-4']);
    expect(await ids({ labels: { rack: 'b 7' } })).toEqual([]);
    expect(await ids({ carriesPatchId: 'cumulative' })).toEqual(['web-1']);
    expect(await ids({ exposedToCveId: 'CVE-2024-1086' })).toEqual(['web-3', 'web-4', 'web-9']);
    const page = await q.listHosts({
      pageSize: 2,
      pageToken: '',
      kernelRelease: '',
      labels: {},
      carriesPatchId: '',
      exposedToCveId: '',
    });
    expect(page.hosts).toHaveLength(2);
    expect(page.nextPageToken).not.toBe('');
    // Page after page (each starting where the last ended) gives the whole list, whatever filter.
    const paged = async (req: Partial<ledger.ListHostsRequest>) => {
      const out: (string | undefined)[] = [];
      let pageToken = '';
      do {
        const next = await q.listHosts({
          pageSize: 1,
          kernelRelease: '',
          labels: {},
          carriesPatchId: '',
          exposedToCveId: '',
          ...req,
          pageToken,
        });
        expect(next.hosts.length).toBeLessThanOrEqual(1);
        out.push(...next.hosts.map((h) => h.facts?.hostId));
        pageToken = next.nextPageToken;
      } while (pageToken);
      return out;
    };
    for (const req of [
      {},
      { labels: { role: 'web' } },
      { exposedToCveId: 'CVE-2024-1086' },
      { carriesPatchId: 'cumulative' },
    ])
      expect(await paged(req)).toEqual(await ids(req));
    // CountHosts counts what ListHosts lists, for every filter alone and together.
    const count = async (req: Partial<ledger.CountHostsRequest>) =>
      (await q.countHosts({ kernelRelease: '', labels: {}, carriesPatchId: '', exposedToCveId: '', ...req })).hosts;
    for (const req of [
      {},
      { kernelRelease: K419 },
      { labels: { role: 'web' } },
      { labels: { role: 'web', nope: 'x' } },
      { labels: { 'rack."$[0]': 'b 7' } },
      { exposedToCveId: 'CVE-2024-1086' },
      { carriesPatchId: 'cumulative' },
      { carriesPatchId: 'cumulative', labels: { role: 'web' } },
      { carriesPatchId: 'no-such-patch' },
      { exposedToCveId: 'CVE-2024-1086', labels: { role: 'web' } },
    ])
      expect({ req, hosts: await count(req) }).toEqual({ req, hosts: (await ids(req)).length });
    expect(await count({})).toBe(5);
    await expect(
      q.listHosts({
        pageSize: 1,
        pageToken: 'Mg',
        kernelRelease: '',
        labels: {},
        carriesPatchId: '',
        exposedToCveId: '',
      }),
    ).rejects.toThrow(/page_token/);
  });

  it('gives each host its verdict and the patches an upgrade would bring it', async () => {
    const V = ledger.HostVerdict;
    const { hosts } = await q.listHosts({
      pageSize: 0,
      pageToken: '',
      kernelRelease: '',
      labels: {},
      carriesPatchId: '',
      exposedToCveId: '',
      verdictDeadlineDays: 0,
    });
    // Day 40: nobody was heard from for weeks, and 30-day deadlines have passed.
    expect(Object.fromEntries(hosts.map((h) => [h.facts?.hostId, h.verdict]))).toEqual({
      'web-1': V.HOST_VERDICT_OFFLINE,
      'web-2': V.HOST_VERDICT_OFFLINE,
      'web-3': V.HOST_VERDICT_EXPOSED_PAST_DEADLINE,
      'web-4': V.HOST_VERDICT_EXPOSED_PAST_DEADLINE,
      'web-9': V.HOST_VERDICT_EXPOSED_PAST_DEADLINE,
    });
    const web1 = hosts.find((h) => h.facts?.hostId === 'web-1')!;
    // cumulative 2 carries every older patch for its kernel.
    expect(web1.missingPatches).toEqual([]);
    const web3 = hosts.find((h) => h.facts?.hostId === 'web-3')!;
    // Everything older is disabled by cumulative 2's atomic replace: it alone is worth loading.
    expect(web3.missingPatches.map((m) => `${m.patchId} ${m.version}`)).toEqual(['cumulative 2']);
    const web2 = hosts.find((h) => h.facts?.hostId === 'web-2')!;
    expect(web2.missingPatches).toEqual([]);
    // Given 60 days, web-4 is not late yet: its forced hotfix (a reboot) is the worst that is left
    // after being offline.
    const web4 = (await q.getHost('web-4', 60)).host!;
    expect(web4.verdict).toBe(V.HOST_VERDICT_OFFLINE);
    expect(web4.verdictReasons).toEqual([
      'the agent has not been heard from within the online window',
      'forced transitions leave only a reboot to remove lp_hotfix_1',
      `published for ${K61} and not live: cumulative 2`,
    ]);
  });

  it('writes OpenVEX per host that a scanner can read: fixed by live patches, affected while exposed', async () => {
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, strictTypes: false });
    addFormats(ajv);
    const schemaFile = path.join(__dirname, '..', '..', 'ledger-model', 'test-data', 'openvex-v0.2.0.schema.json');
    const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, 'utf8')) as object);
    const report = await vexReport(q, { hostIds: [], labels: { role: 'web' }, asOf: at(40) });
    expect(report.documents.map((d) => [d.hostId, d.fixed, d.affected])).toEqual([
      ['web-1', 3, 0],
      ['web-3', 0, 3],
    ]);
    const statuses = (hostId: string) => {
      const doc = JSON.parse(report.documents.find((d) => d.hostId === hostId)!.openvexJson);
      expect(validate(doc) ? [] : validate.errors).toEqual([]);
      return doc.statements.map(
        (s: { vulnerability: { name: string }; status: string }) => `${s.vulnerability.name} ${s.status}`,
      );
    };
    expect(statuses('web-1')).toEqual(['CVE-2023-0386 fixed', 'CVE-2024-1086 fixed', 'CVE-2024-26581 fixed']);
    expect(statuses('web-3')).toEqual(['CVE-2023-0386 affected', 'CVE-2024-1086 affected', 'CVE-2024-26581 affected']);
    // Before web-1's first patch (day 2) it was exposed to both CVEs whose fixes were published on day 0.
    const early = await vexReport(q, { hostIds: ['web-1'], labels: {}, asOf: at(1.5) });
    expect(JSON.parse(early.documents[0]!.openvexJson).statements.map((s: { status: string }) => s.status)).toEqual([
      'affected',
      'affected',
    ]);
    // The evidence names the very events the ledger holds for web-1.
    const fixed = JSON.parse(report.documents[0]!.openvexJson).statements[1].status_notes as string;
    const ids = fixed.slice(fixed.indexOf('evidence events: ') + 'evidence events: '.length).split(', ');
    const history = await q.getHostHistory({ hostId: 'web-1', pageSize: 0, pageToken: '' });
    expect(history.records.map((r) => r.body?.eventId)).toContain(ids[ids.length - 1]);
    await expect(vexReport(q, { hostIds: ['web-404'], labels: {}, asOf: undefined })).rejects.toThrow(NotFoundError);
    await expect(vexReport(q, { hostIds: [], labels: {}, asOf: undefined })).rejects.toThrow(InvalidArgumentError);
  });

  it('tells each rollout and each patch as the log does', async () => {
    const { rollout, timeline } = await q.getRollout('r-nft');
    expect(rollout?.state).toBe(2 /* RUNNING */);
    expect(rollout?.createdBy?.id).toBe('alice');
    expect(rollout?.waves[0]?.hosts.map((h) => [h.hostId, h.state])).toEqual([
      ['web-1', 3 /* SUCCEEDED */],
      ['web-3', 1 /* PENDING */],
    ]);
    expect(timeline.map((r) => r.body?.type)).toEqual([
      'RolloutCreated',
      'WaveStarted',
      'HostApplyRequested',
      'PatchApplied',
    ]);
    // The summary: the same hosts counted, none listed, and only the rollout's own events.
    const summary = await q.getRollout('r-nft', dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY);
    expect(summary.rollout?.waves.map((w) => [w.hosts, w.hostCounts])).toEqual([
      [
        [],
        [
          { state: 1 /* PENDING */, hosts: 1 },
          { state: 3 /* SUCCEEDED */, hosts: 1 },
        ],
      ],
    ]);
    expect(summary.rollout?.waves.map((w) => w.hostCounts)).toEqual(rollout?.waves.map((w) => w.hostCounts));
    expect(summary.rollout?.skippedHosts).toBe(rollout?.skippedHosts);
    expect(summary.timeline.map((r) => r.body?.type)).toEqual(['RolloutCreated', 'WaveStarted']);
    await expect(q.getRollout('r-nft', 7 as dispatcher.RolloutView)).rejects.toThrow(
      /^view: 7 is not a RolloutView \(ROLLOUT_VIEW_FULL or ROLLOUT_VIEW_SUMMARY\)$/,
    );

    const { patches } = await q.listPatches({
      pageSize: 0,
      pageToken: '',
      cveId: 'CVE-2024-26581',
      kernelRelease: '',
      includeRetracted: false,
    });
    expect(patches.map((p) => [p.patchId, p.version, p.hostsCarrying])).toEqual([
      ['cumulative', '1', 0],
      ['cumulative', '2', 1],
    ]);
  });

  it('records broken chains, bad signatures, unknown types and garbage as findings, and keeps consuming', async () => {
    const findings = await q.integrityFindings();
    const kinds = findings.filter((f) => f.producerId === 'agent/web-9' || f.kind === 'undecodable').map((f) => f.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['bad-signature', 'broken-link', 'unknown-event-type', 'undecodable']),
    );
    // None of the rejected records reached the stack; the sound event after them did.
    const { host } = await q.getHost('web-9');
    expect(modules(host?.stack)).toEqual([]);
    const history = await q.getHostHistory({ hostId: 'web-9', pageSize: 0, pageToken: '' });
    expect(history.records.map((r) => r.body?.eventId)).toContain(soundWeb9EventId);
    expect(history.records.map((r) => r.body?.type)).not.toContain('PatchApplied');
  });

  it('answers NOT_FOUND for an unknown host and INVALID_ARGUMENT naming a malformed instant', async () => {
    await expect(q.getHost('no-such-host')).rejects.toThrow(NotFoundError);
    await expect(q.getHostStackAt('web-1', at(0.5))).rejects.toThrow(/not enrolled yet/);
    await expect(q.getHostStackAt('web-1', { seconds: '1700000000', nanos: -5 })).rejects.toThrow(
      new InvalidArgumentError('at', 'nanos -5 is outside 0 to 999999999'),
    );
    await expect(q.getHostStackAt('web-1', undefined)).rejects.toThrow(/^at: is required/);
  });
});
