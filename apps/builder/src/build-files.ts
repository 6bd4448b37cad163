// One JSON file per build under <data>/builds, rewritten atomically (temp file, fsync, rename) at
// every change of state, so GetBuild and WatchBuild's replay survive a restart.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BuildRecord, KernelState, Stage } from './build-record';

/** One WatchBuild update as kept: a stage change or a log line, with its time. */
export interface ProgressEntry {
  readonly at: number;
  readonly stageChanged?: { kernelRelease: string; stage: Stage; state: KernelState; diagnostics: string[] };
  readonly logLine?: { kernelRelease: string; stage: Stage; line: string };
}

export interface StoredBuild {
  readonly version: 1;
  readonly record: BuildRecord;
  readonly progress: ProgressEntry[];
}

const BUILD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class BuildFiles {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  save(record: BuildRecord, progress: readonly ProgressEntry[]): void {
    const stored: StoredBuild = { version: 1, record, progress: [...progress] };
    const file = this.fileOf(record.buildId);
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      fs.writeSync(fd, JSON.stringify(stored));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  /** Every build on disk; a file that cannot be read is reported through `onBroken` and skipped. */
  loadAll(onBroken: (file: string, why: string) => void): StoredBuild[] {
    const out: StoredBuild[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.endsWith('.tmp')) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json') || !BUILD_ID.test(name.slice(0, -5))) continue;
      try {
        const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as StoredBuild;
        if (stored.version !== 1 || stored.record?.buildId !== name.slice(0, -5)) throw new Error('unknown format');
        out.push(stored);
      } catch (error) {
        onBroken(file, (error as Error).message);
      }
    }
    return out;
  }

  private fileOf(buildId: string): string {
    if (!BUILD_ID.test(buildId)) throw new Error(`not a build id: ${buildId}`);
    return path.join(this.dir, `${buildId}.json`);
  }
}
