import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The version in the package.json beside a service's dist/ (or src/), as the CLI reads its own. */
export function packageVersion(script: string): string {
  const file = join(dirname(script), '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

export function versionText(program: string, version: string, json: boolean): string {
  return json ? `${JSON.stringify({ program, version })}\n` : `${program} ${version}\n`;
}

/**
 * `<service> --version [--json]`: writes the version and says so, before any setting is read,
 * so that it answers on a host where nothing is configured yet.
 */
export function answerVersion(program: string, argv: readonly string[] = process.argv): boolean {
  const args = argv.slice(2);
  if (!args.includes('--version')) return false;
  const script = argv[1];
  if (script === undefined) return false;
  process.stdout.write(versionText(program, packageVersion(script), args.includes('--json')));
  return true;
}
