import { replayLag } from '@rebootless/ledger-store';
import { ConfigError, formatConfigProblem, loadConfig } from '@rebootless/service';
import { ledgerSettings } from './config';
import { LedgerRuntime } from './ledger-runtime';

/**
 * Drops the read models and replays the event log from offset 0 up to its end as of the start,
 * printing progress on stderr; with --json the last stdout line is one JSON summary.
 */
export async function rebuild(args: string[]): Promise<void> {
  const asJson = args.includes('--json');
  const unknown = args.filter((a) => a !== '--json');
  if (unknown.length > 0) {
    process.stderr.write(`ledger rebuild: unknown argument ${unknown[0]}; usage: main.js rebuild [--json]\n`);
    process.exit(64);
  }
  let config;
  try {
    config = loadConfig(ledgerSettings, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      ['ledger: configuration error:', ...error.problems.map((p) => `  ${formatConfigProblem(p)}`)].join('\n') + '\n',
    );
    process.exit(78);
  }
  const say = (line: string) => process.stderr.write(`ledger rebuild: ${line}\n`);
  let runtime: LedgerRuntime | undefined;
  try {
    runtime = await LedgerRuntime.open(config, { rebuild: true });
    say(`dropping the read models in ${runtime.db.description}`);
    await runtime.db.dropReadModels();
    const started = performance.now();
    const { end } = await replayLag(runtime.kafka, config.eventsTopic, new Map());
    say(`replaying ${end} record(s) of ${config.eventsTopic} from offset 0`);
    await runtime.consumer.start();
    let lastSaid = 0;
    for (;;) {
      const { behind } = await replayLag(runtime.kafka, config.eventsTopic, runtime.consumer.positions);
      const done = end - behind;
      if (performance.now() - lastSaid > 2000 || behind === 0n) {
        const secs = (performance.now() - started) / 1000;
        say(`${done}/${end} record(s), ${Math.round(Number(done) / Math.max(secs, 0.001))} records/s`);
        lastSaid = performance.now();
      }
      // Done once caught up with the log as it was when the rebuild began (it may grow meanwhile).
      if (done >= end || behind === 0n) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const gaps = await runtime.consumer.flushGaps();
    const seconds = (performance.now() - started) / 1000;
    const summary = {
      records: Number(end),
      projected: runtime.consumer.stats.projected,
      integrityFindings: runtime.consumer.stats.findings + gaps,
      seconds: Math.round(seconds * 10) / 10,
      recordsPerSecond: Math.round(Number(end) / Math.max(seconds, 0.001)),
      database: runtime.db.description,
    };
    if (asJson) process.stdout.write(JSON.stringify(summary) + '\n');
    else
      process.stdout.write(
        `rebuilt the read models from ${summary.records} record(s) in ${summary.seconds} s ` +
          `(${summary.recordsPerSecond}/s); ${summary.integrityFindings} integrity finding(s)\n`,
      );
    await runtime.close();
    process.exit(0);
  } catch (error) {
    say(`failed: ${error instanceof Error ? error.message : String(error)}`);
    await runtime?.close().catch(() => undefined);
    process.exit(1);
  }
}
