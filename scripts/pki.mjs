#!/usr/bin/env node
// The development PKI (DESIGN.md section 7): a CA, a certificate per service, per agent (naming
// its host) and per operator client, and the key that signs operator tokens.
//
//   node scripts/pki.mjs init [--dir DIR] [--json]                 CA, token key, the services' and the CLI's certificates
//   node scripts/pki.mjs issue host|service|user ID [--dir DIR] [--renew] [--json]
//   node scripts/pki.mjs token --sub NAME --roles operator,approver,auditor [--ttl 12h] [--dir DIR] [--json]
//
// DIR defaults to <repo>/.data/pki (REBOOTLESS_PKI_DIR overrides). Needs "npm run build" first.
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
  pki token --sub NAME --roles ROLE[,ROLE] [--ttl 12h] [--dir DIR] [--json]`;

class UsageError extends Error {}

function parse(argv) {
  const positional = [];
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json' || arg === '--renew') opts[arg.slice(2)] = true;
    else if (['--dir', '--sub', '--roles', '--ttl'].includes(arg)) {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`${arg} needs a value`);
      opts[arg.slice(2)] = value;
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

  if (command === 'init') {
    const createdCa = await trust.ensureCertificateAuthority(dir);
    const issued = [];
    for (const id of SERVICES)
      issued.push({ kind: 'service', id, ...(await trust.issueCertificate(dir, { kind: 'service', id })) });
    issued.push({ kind: 'user', id: 'cli', ...(await trust.issueCertificate(dir, { kind: 'user', id: 'cli' })) });
    out(
      { dir, createdCa, certificates: issued },
      [
        `pki: ${createdCa ? 'created' : 'kept'} the CA in ${dir}`,
        ...issued.map((c) => `pki: ${c.created ? 'issued' : 'kept'} ${c.kind} ${c.id}: ${c.cert}`),
      ].join('\n'),
    );
  } else if (command === 'issue') {
    const [kind, id] = rest;
    if (!kind || !id) throw new UsageError('issue needs a kind (host, service, user) and an id');
    if (!['host', 'service', 'user'].includes(kind))
      throw new UsageError(`unknown kind "${kind}" (host, service, user)`);
    const cert = await trust.issueCertificate(dir, { kind, id }, { renew: Boolean(opts.renew) });
    out({ kind, id, ...cert }, `pki: ${cert.created ? 'issued' : 'kept'} ${kind} ${id}: ${cert.cert}`);
  } else if (command === 'token') {
    if (!opts.sub) throw new UsageError('token needs --sub NAME');
    if (!opts.roles) throw new UsageError('token needs --roles (operator, approver, auditor; comma-separated)');
    const ttl = ttlSeconds(opts.ttl ?? '12h');
    const token = trust.mintToken(trust.readTokenPrivateKey(dir), {
      sub: opts.sub,
      roles: opts.roles.split(','),
      ttlSeconds: ttl,
    });
    out({ sub: opts.sub, roles: opts.roles.split(','), ttlSeconds: ttl, token }, token);
  } else {
    throw new UsageError(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  }
}

main().catch((error) => {
  process.stderr.write(`pki: ${error.message}\n`);
  process.exit(error instanceof UsageError ? 64 : 1);
});
