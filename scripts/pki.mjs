#!/usr/bin/env node
// The development PKI (DESIGN.md section 7): a CA, a certificate per service, per agent (naming
// its host) and per operator client, and the key that signs operator tokens.
//
//   node scripts/pki.mjs init [--dir DIR] [--json]                 CA, token key, the services' and the CLI's certificates
//   node scripts/pki.mjs issue host|service|user ID [--dir DIR] [--renew] [--json]
//   node scripts/pki.mjs export host|service|user ID [--out PARTY_DIR] [--pub NAME=FILE]... [--dir DIR] [--json]
//   node scripts/pki.mjs token --sub NAME --roles operator,approver,auditor [--ttl 12h] [--audience rebootless|SERVICE,...] [--dir DIR] [--json]
//
// Services refuse tokens minted to live longer than 12 h (REBOOTLESS_TOKEN_MAX_LIFETIME_SECONDS) or
// for another audience.
//
// DIR, the pki tool's own directory, defaults to <repo>/.data/pki (REBOOTLESS_PKI_DIR overrides):
// it alone holds the CA key and the token-signing key. Each party gets its own directory (ADR
// 0013), by default DIR/../identities/<kind>-<id>: its key and certificate, ca.crt, token.pub and
// the public keys it needs (--pub builder.pub=FILE). init and issue lay it out too; point each
// service's REBOOTLESS_PKI_DIR at it. Needs "npm run build" first.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SERVICES = ['builder', 'dispatcher', 'ledger', 'agent', 'console'];
const USAGE = `usage:
  pki init [--dir DIR] [--json]
  pki issue host|service|user ID [--dir DIR] [--renew] [--json]
  pki export host|service|user ID [--out PARTY_DIR] [--pub NAME=FILE]... [--dir DIR] [--json]
  pki token --sub NAME --roles ROLE[,ROLE] [--ttl 12h] [--audience rebootless|SERVICE[,SERVICE]] [--dir DIR] [--json]`;

class UsageError extends Error {}

function parse(argv) {
  const positional = [];
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json' || arg === '--renew') opts[arg.slice(2)] = true;
    else if (['--dir', '--sub', '--roles', '--ttl', '--out', '--pub', '--audience'].includes(arg)) {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`${arg} needs a value`);
      if (arg === '--pub') (opts.pub ??= []).push(value);
      else opts[arg.slice(2)] = value;
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  return { positional, opts };
}

function ttlSeconds(text) {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (!m) throw new UsageError(`--ttl "${text}" is not a duration like 90m, 12h or 30d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

async function main() {
  const { positional, opts } = parse(process.argv.slice(2));
  const trustDist = path.join(ROOT, 'libs/trust/dist/index.js');
  if (!fs.existsSync(trustDist)) throw new UsageError('libs/trust is not built: run "npm run build" first');
  const trust = require(trustDist);
  const dir = path.resolve(opts.dir ?? process.env.REBOOTLESS_PKI_DIR ?? path.join(ROOT, '.data', 'pki'));
  const [command, ...rest] = positional;
  const out = (value, text) => process.stdout.write(opts.json ? `${JSON.stringify(value)}\n` : `${text}\n`);

  const identityOf = (verb) => {
    const [kind, id] = rest;
    if (!kind || !id) throw new UsageError(`${verb} needs a kind (host, service, user) and an id`);
    if (!['host', 'service', 'user'].includes(kind))
      throw new UsageError(`unknown kind "${kind}" (host, service, user)`);
    return { kind, id };
  };
  const exportTo = (identity, outDir, pub = []) => {
    const publicKeys = {};
    for (const spec of pub) {
      const m = /^([a-z0-9][a-z0-9._-]*\.pub)=(.+)$/.exec(spec);
      if (!m) throw new UsageError(`--pub "${spec}" is not NAME.pub=FILE`);
      if (!fs.existsSync(m[2])) throw new UsageError(`--pub ${m[1]}: no file ${m[2]}`);
      publicKeys[m[1]] = fs.readFileSync(m[2]);
    }
    const target = outDir ? path.resolve(outDir) : trust.partyDirectory(dir, `${identity.kind}-${identity.id}`);
    return trust.exportParty(dir, target, [identity], publicKeys);
  };

  if (command === 'init') {
    const createdCa = await trust.ensureCertificateAuthority(dir);
    const issued = [];
    for (const id of SERVICES)
      issued.push({ kind: 'service', id, ...(await trust.issueCertificate(dir, { kind: 'service', id })) });
    issued.push({ kind: 'user', id: 'cli', ...(await trust.issueCertificate(dir, { kind: 'user', id: 'cli' })) });
    for (const c of issued) c.partyDir = exportTo({ kind: c.kind, id: c.id }).dir;
    out(
      { dir, createdCa, certificates: issued },
      [
        `pki: ${createdCa ? 'created' : 'kept'} the CA in ${dir} (its key and the token key stay there)`,
        ...issued.map((c) => `pki: ${c.created ? 'issued' : 'kept'} ${c.kind} ${c.id}: ${c.partyDir}`),
      ].join('\n'),
    );
  } else if (command === 'issue') {
    const { kind, id } = identityOf('issue');
    const cert = await trust.issueCertificate(dir, { kind, id }, { renew: Boolean(opts.renew) });
    const party = exportTo({ kind, id }, opts.out, opts.pub);
    out(
      { kind, id, ...cert, partyDir: party.dir },
      `pki: ${cert.created ? 'issued' : 'kept'} ${kind} ${id}: its directory is ${party.dir}`,
    );
  } else if (command === 'export') {
    const identity = identityOf('export');
    const party = exportTo(identity, opts.out, opts.pub);
    out(
      { ...identity, ...party },
      `pki: ${identity.kind} ${identity.id}: ${party.dir} holds ${party.files.join(', ')}`,
    );
  } else if (command === 'token') {
    if (!opts.sub) throw new UsageError('token needs --sub NAME');
    if (!opts.roles) throw new UsageError('token needs --roles (operator, approver, auditor; comma-separated)');
    const ttl = ttlSeconds(opts.ttl ?? '12h');
    const token = trust.mintToken(trust.readTokenPrivateKey(dir), {
      sub: opts.sub,
      roles: opts.roles.split(','),
      ttlSeconds: ttl,
      audience: (opts.audience ?? 'rebootless').split(','),
    });
    out(
      {
        sub: opts.sub,
        roles: opts.roles.split(','),
        ttlSeconds: ttl,
        audience: (opts.audience ?? 'rebootless').split(','),
        token,
      },
      token,
    );
  } else {
    throw new UsageError(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  }
}

main().catch((error) => {
  process.stderr.write(`pki: ${error.message}\n`);
  process.exit(error instanceof UsageError ? 64 : 1);
});
