// The lab kernel profile (issue 18): Debian's 7.3 source built by the project with livepatch and
// MODULE_SIG_FORCE, a corpus of diffs built with klp-build against it, and the modules loaded in
// that very kernel under QEMU. Every behaviour is read from the guest's /proc and /sys; every
// refusal of a module is the kernel's own.
// Needs the lab profile's cold build (`npm run kernel:profile`, minutes; .ci/run makes it first).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { analyseDiff } from '@rebootless/diff-analysis';
import {
  buildFromDiff,
  defaultProfileCacheDir,
  KernelProfileCache,
  KlpBuildRefused,
  labProfile,
  makeModuleSigningKey,
  signModule,
  stripModuleSignature,
  type DiffBuildResult,
  type ProfileBuild,
} from '@rebootless/kernel-toolchain';
import type { ProbeState } from './guest-probe';
import type { GuestVm } from './guest-vm';
import { profileKernelImage } from './kernel-image';
import { KernelLab } from './kernel-lab';

jest.setTimeout(90 * 60_000); // a cold profile build alone takes 10-50 minutes on two cores

const CORPUS = path.join(__dirname, '..', '..', 'kernel-toolchain', 'testdata', 'klp-corpus');
interface CorpusCase {
  what: string;
  analysis: string;
  klp: string;
  replace?: boolean;
  proc?: Record<string, string>;
}
const expected = JSON.parse(fs.readFileSync(path.join(CORPUS, 'expected.json'), 'utf8')) as Record<string, CorpusCase>;
const TAINT_LIVEPATCH = 32768;

/** klp-build's outcome of one case, as the corpus states outcomes. */
type Outcome = { outcome: string; module?: DiffBuildResult; evidence?: string };

describe('the lab kernel profile: diffs built with klp-build, loaded in the kernel they were built for', () => {
  let profile: ProfileBuild;
  const outcomes = new Map<string, Outcome>();
  let lab: KernelLab;
  let vm: GuestVm;
  let work: string;
  const timings: Record<string, number> = {};

  const state = () => vm.probe.state();
  const settled = (what: string, done: (s: ProbeState) => boolean = () => true) =>
    vm.probe.waitFor((s) => s.livepatch.every((p) => p.transition === '0') && done(s), what, 120_000);
  const proc = async (file: string) => (await vm.probe.readKernelFile(file)).content ?? '';
  const load = async (id: string) => {
    const module = outcomes.get(id)?.module;
    if (!module) throw new Error(`${id} did not build: ${outcomes.get(id)?.outcome}`);
    await vm.probe.putModule(module.moduleName, module.module);
    return vm.probe.insmod(module.moduleName);
  };
  const unload = async (id: string) => {
    const name = outcomes.get(id)!.module!.moduleName;
    await vm.probe.writeEnabled(name, 0);
    await settled(`${name} to be disabled`, (s) => !s.livepatch.some((p) => p.name === name && p.enabled === '1'));
    for (let attempt = 0; attempt < 50; attempt++) {
      if ((await vm.probe.rmmod(name)).code === 0) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`rmmod ${name} kept failing`);
  };

  beforeAll(async () => {
    const started = Date.now();
    profile = await new KernelProfileCache({
      cacheDir: defaultProfileCacheDir(),
      onProgress: (line) => process.stdout.write(`${line}\n`),
    }).ensure(labProfile());
    timings['profile'] = Date.now() - started;
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'rbl-lab-profile-'));
    for (const [id, c] of Object.entries(expected)) {
      const diff = fs.readFileSync(path.join(CORPUS, `${id}.patch`), 'utf8');
      const at = Date.now();
      try {
        const module = await buildFromDiff(profile, diff, {
          replace: c.replace ?? false,
          moduleName: `rbl_${id.slice(0, 2)}`,
          workRoot: work,
        });
        outcomes.set(id, { outcome: 'builds', module });
      } catch (error) {
        if (!(error instanceof KlpBuildRefused)) throw error;
        outcomes.set(id, { outcome: `refused:${error.refusal}`, evidence: error.evidence });
      }
      timings[`klp ${id}`] = Date.now() - at;
    }
    lab = await KernelLab.prepare({ kernel: profileKernelImage(profile) });
    const booted = Date.now();
    vm = await lab.boot({ memoryMb: 768 });
    timings['boot'] = Date.now() - booted;
  });

  afterAll(async () => {
    await vm?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    process.stdout.write(
      `lab profile ${profile?.release} (${profile?.fromCache ? 'cached' : 'built now'}): ${Object.entries(timings)
        .map(([k, v]) => `${k} ${v} ms`)
        .join(', ')}\n`,
    );
  });

  it.each(Object.entries(expected))('%s: the analyser and klp-build say what the corpus expects', (id, c) => {
    const report = analyseDiff(fs.readFileSync(path.join(CORPUS, `${id}.patch`), 'utf8'));
    const refusal = report.findings.find((f) => f.severity === 'refuse');
    expect(refusal ? `refused:${refusal.rule}` : 'ok').toBe(c.analysis);
    const got = outcomes.get(id)!;
    expect(got).toMatchObject({ outcome: c.klp });
    // The analyser and klp-build agree: what one refuses, the other refuses too, each naming why.
    expect(c.analysis === 'ok').toBe(got.outcome === 'builds');
    if (got.outcome !== 'builds') expect(got.evidence).toMatch(/\S/);
  });

  it('boots the profile’s own kernel, which refuses unsigned modules', async () => {
    const s = await state();
    expect(s.release).toBe('7.3.4-rebootless-lab');
    expect(s.tainted).toBe(0);
    expect(s.livepatch).toEqual([]);
    expect((await proc('/sys/module/module/parameters/sig_enforce')).trim()).toBe('Y');
  });

  it('the kernel itself refuses the module unsigned, with one byte changed, or signed by another key', async () => {
    const good = outcomes.get('01-function-body')!.module!;
    const tampered = Buffer.from(good.module);
    tampered[Math.floor(tampered.length / 3)]! ^= 0x01;
    const other = await makeModuleSigningKey(path.join(work, 'other-key'), 'not the builder');
    const foreign = path.join(work, 'foreign.ko');
    fs.writeFileSync(foreign, stripModuleSignature(good.module));
    await signModule({ tree: profile.tree, signingKey: other.key, signingCert: other.cert }, foreign);
    for (const [label, bytes] of [
      ['unsigned', stripModuleSignature(good.module)],
      ['tampered', tampered],
      ['another key', fs.readFileSync(foreign)],
    ] as const) {
      await vm.probe.putModule(good.moduleName, bytes);
      const insmod = await vm.probe.insmod(good.moduleName);
      // The kernel's own words: ENOKEY (no trusted key signed it) or EKEYREJECTED/EBADMSG (it does not verify).
      expect({ label, refused: insmod.code !== 0, why: `${insmod.stdout}${insmod.stderr}` }).toMatchObject({
        label,
        refused: true,
        why: expect.stringMatching(/Required key not available|Key was rejected by service|Bad message/),
      });
    }
    const s = await state();
    expect(s.livepatch).toEqual([]);
    expect(s.tainted & TAINT_LIVEPATCH).toBe(0);
    expect(await proc('/proc/cmdline')).not.toContain('rebootless');
  });

  it('a body change goes live, and disabling it brings the original back', async () => {
    const before = await proc('/proc/cmdline');
    expect(await load('01-function-body')).toMatchObject({ code: 0 });
    await settled('01 to finish its transition');
    expect(await proc('/proc/cmdline')).toBe(`rebootless-livepatched ${before}`);
    await unload('01-function-body');
    expect(await proc('/proc/cmdline')).toBe(before);
  });

  it('patches stack without replace, and a cumulative patch replaces them all', async () => {
    const cmdline = await proc('/proc/cmdline');
    const version = await proc('/proc/version');
    expect(await load('01-function-body')).toMatchObject({ code: 0 });
    expect(await load('12-stacked-second')).toMatchObject({ code: 0 });
    await settled('01 and 12 to finish');
    expect(await proc('/proc/cmdline')).toBe(`rebootless-livepatched ${cmdline}`);
    expect(await proc('/proc/version')).toBe(`${version}rebootless: stacked\n`);

    expect(await load('05-cumulative-replace')).toMatchObject({ code: 0 });
    const s = await settled('05 to replace them', (st) => st.livepatch.filter((p) => p.enabled === '1').length === 1);
    expect(s.livepatch.filter((p) => p.enabled === '1').map((p) => p.name)).toEqual([
      outcomes.get('05-cumulative-replace')!.module!.moduleName,
    ]);
    expect(await proc('/proc/cmdline')).toBe(`rebootless-cumulative ${cmdline}`);
    expect(await proc('/proc/version')).toBe(`${version}rebootless: cumulative\n`);
    await unload('05-cumulative-replace');
    for (const id of ['01-function-body', '12-stacked-second'])
      await vm.probe.rmmod(outcomes.get(id)!.module!.moduleName);
    expect(await proc('/proc/cmdline')).toBe(cmdline);
  });

  it('a static function, a new function, and a function of a module not loaded yet all load', async () => {
    const cmdline = await proc('/proc/cmdline');
    const version = await proc('/proc/version');
    for (const id of ['02-static-function', '03-new-function', '04-module-function']) {
      expect({ id, insmod: await load(id) }).toMatchObject({ id, insmod: { code: 0 } });
      await settled(`${id} to finish`);
      for (const [file, text] of Object.entries(expected[id]!.proc ?? {})) expect(await proc(file)).toContain(text);
      await unload(id);
    }
    expect(await proc('/proc/cmdline')).toBe(cmdline);
    expect(await proc('/proc/version')).toBe(version);
  });
});
