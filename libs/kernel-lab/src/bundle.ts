// Guest programs are bundled into one JavaScript file each (esbuild), so the initramfs carries the
// program and never a node_modules tree. Workspace imports (@rebootless/<lib>) resolve to the libs'
// TypeScript sources, as Jest maps them, so a bundle always reflects the checkout, built or not.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KernelLabError } from './errors';

/** The monorepo root: libs/kernel-lab/{src,dist} → ../../.. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface GuestBundle {
  /** File name inside the guest's /guest directory, e.g. "probe.js". */
  name: string;
  code: Buffer;
}

/**
 * Optional peers NestJS requires lazily inside try/catch (and native addons, which cannot be
 * inlined): left as runtime requires, they are simply absent in the guest, as in any bundled Nest app.
 */
export const BUNDLE_EXTERNALS = [
  'class-validator',
  'class-transformer',
  '@nestjs/websockets',
  '@nestjs/websockets/*',
  '@nestjs/platform-express',
  '@fastify/*',
  'mqtt',
  'nats',
  'ioredis',
  'amqplib',
  'amqp-connection-manager',
  'better-sqlite3',
  'pg-native',
];

/** This lib's own guest programs (always bundled from their TypeScript source in the checkout). */
export function guestProgramEntry(program: 'probe' | 'sysfs-port' | 'agent-command'): string {
  const entry = path.join(REPO_ROOT, 'libs', 'kernel-lab', 'src', 'guest', `${program}.ts`);
  if (!fs.existsSync(entry)) throw new KernelLabError('bundle', `guest program ${program} not found at ${entry}`);
  return entry;
}

/** Bundles `entry` (TypeScript or JavaScript) for the guest's Node, named `name` there. */
export async function bundleGuestProgram(entry: string, name: string): Promise<GuestBundle> {
  // Loaded lazily: esbuild is a dev tool the rest of this lib does not need.
  const esbuild = await import('esbuild');
  const libsDir = path.join(REPO_ROOT, 'libs');
  try {
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      logLevel: 'silent',
      legalComments: 'none',
      external: BUNDLE_EXTERNALS,
      // Deterministic output: the initramfs is cached by content.
      sourcemap: false,
      plugins: [
        {
          name: 'rebootless-workspace',
          setup(build) {
            build.onResolve({ filter: /^@rebootless\/[a-z-]+$/ }, (args) => {
              const lib = args.path.slice('@rebootless/'.length);
              const index = path.join(libsDir, lib, 'src', 'index.ts');
              if (!fs.existsSync(index)) return { errors: [{ text: `no workspace lib ${args.path} (${index})` }] };
              return { path: index };
            });
          },
        },
      ],
    });
    const out = result.outputFiles[0];
    if (!out) throw new KernelLabError('bundle', `esbuild produced nothing for ${entry}`);
    return { name, code: Buffer.from(out.contents) };
  } catch (error) {
    if (error instanceof KernelLabError) throw error;
    const failure = error as { errors?: { text: string; location?: { file: string; line: number } | null }[] };
    const lines = (failure.errors ?? []).map(
      (e) => `${e.location ? `${e.location.file}:${e.location.line}: ` : ''}${e.text}`,
    );
    throw new KernelLabError(
      'bundle',
      `bundling ${path.relative(REPO_ROOT, entry)} failed: ${lines[0] ?? String(error)}`,
      lines,
    );
  }
}

/**
 * grpc-health-check loads its .proto from `${__dirname}/../../proto` when it is required; bundled
 * into /guest/<program>.js that is /proto, so the file goes there (the agent daemon serves health).
 */
export function grpcHealthCheckAsset(): { path: string; data: Buffer } {
  const file = path.join(
    path.dirname(require.resolve('grpc-health-check/package.json')),
    'proto',
    'health',
    'v1',
    'health.proto',
  );
  return { path: 'proto/health/v1/health.proto', data: fs.readFileSync(file) };
}

/**
 * The repository's .proto files at /proto: bundled, libs/contracts' protoRoot (three levels above
 * its source file) resolves to /proto from /guest, and the agent's AgentControl server loads its
 * service definition from there at start.
 */
export function contractProtoAssets(): { path: string; data: Buffer }[] {
  const out: { path: string; data: Buffer }[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.proto'))
        out.push({ path: path.relative(REPO_ROOT, full), data: fs.readFileSync(full) });
    }
  };
  walk(path.join(REPO_ROOT, 'proto'));
  return out;
}
