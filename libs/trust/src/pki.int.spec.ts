// Each party holds only its own secrets (ADR 0013): the pki script, as an operator runs it, lays
// out one directory per service and host with its key, its certificate, ca.crt and public keys;
// the CA key and the token-signing key stay in the pki tool's own directory.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { exportParty, issueCertificate, PkiError } from './pki';

const SCRIPT = path.resolve(__dirname, '../../../scripts/pki.mjs');

function pki(...args: string[]): Record<string, unknown> {
  return JSON.parse(execFileSync(process.execPath, [SCRIPT, ...args, '--json'], { encoding: 'utf8' })) as Record<
    string,
    unknown
  >;
}

const mode = (file: string) => fs.statSync(file).mode & 0o777;

describe('the pki lays out one directory per party', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-layout-'));
  const dir = path.join(base, 'pki');
  const identities = path.join(base, 'identities');
  let init: { certificates: { kind: string; id: string; partyDir: string }[] };

  beforeAll(() => {
    init = pki('init', '--dir', dir) as typeof init;
  });
  afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

  it('keeps the CA key and the token key in its own directory, 0600', () => {
    expect(mode(path.join(dir, 'ca.key'))).toBe(0o600);
    expect(mode(path.join(dir, 'token.key'))).toBe(0o600);
  });

  it('gives each service and the CLI its own directory holding its key and certificate, ca.crt and token.pub, and nothing else', () => {
    expect(init.certificates.map((c) => c.partyDir).sort()).toEqual(
      ['service-agent', 'service-builder', 'service-console', 'service-dispatcher', 'service-ledger', 'user-cli'].map(
        (n) => path.join(identities, n),
      ),
    );
    for (const { kind, id, partyDir } of init.certificates) {
      expect(fs.readdirSync(partyDir).sort()).toEqual(
        ['ca.crt', `${kind}-${id}.crt`, `${kind}-${id}.key`, 'token.pub'].sort(),
      );
      expect(mode(partyDir)).toBe(0o700);
      expect(mode(path.join(partyDir, `${kind}-${id}.key`))).toBe(0o600);
      // Not under another name either: no file of the party's holds the CA's or the token's key.
      const secrets = ['ca.key', 'token.key'].map((f) => fs.readFileSync(path.join(dir, f)));
      for (const f of fs.readdirSync(partyDir)) {
        const bytes = fs.readFileSync(path.join(partyDir, f));
        for (const secret of secrets) expect(bytes.includes(secret)).toBe(false);
      }
    }
  });

  it('lays out a host with the builder public key its agent pins', () => {
    const pub = path.join(base, 'builder.pub');
    fs.writeFileSync(pub, 'ab'.repeat(32));
    const issued = pki('issue', 'host', 'web-01', '--dir', dir, '--pub', `builder.pub=${pub}`) as { partyDir: string };
    expect(issued.partyDir).toBe(path.join(identities, 'host-web-01'));
    expect(fs.readdirSync(issued.partyDir).sort()).toEqual([
      'builder.pub',
      'ca.crt',
      'host-web-01.crt',
      'host-web-01.key',
      'token.pub',
    ]);
    expect(mode(path.join(issued.partyDir, 'host-web-01.key'))).toBe(0o600);
  });

  it('refuses to lay a party out inside the pki directory, or to export an authority secret', async () => {
    await issueCertificate(dir, { kind: 'service', id: 'builder' });
    expect(() => exportParty(dir, path.join(dir, 'builder'), [{ kind: 'service', id: 'builder' }])).toThrow(
      /must not be inside the pki directory/,
    );
    expect(() => exportParty(dir, path.join(base, 'x'), [], { 'token.key': 'x' })).toThrow(PkiError);
    expect(() => exportParty(dir, path.join(base, 'x'), [], { 'ca.key': 'x' })).toThrow(PkiError);
  });

  it('says what is wrong with a bad --pub, on stderr with a non-zero exit', () => {
    let failure: { status: number; stderr: string } | undefined;
    try {
      execFileSync(process.execPath, [SCRIPT, 'export', 'service', 'builder', '--dir', dir, '--pub', 'nope'], {
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (error) {
      failure = error as { status: number; stderr: string };
    }
    expect(failure?.status).toBe(64);
    expect(failure?.stderr).toBe('pki: --pub "nope" is not NAME.pub=FILE\n');
  });
});
