// The built console as systemd runs it (deploy/systemd/rebootless-console.service): with
// LOG_FORMAT=json every line it writes is one JSON record in the services' shape, TLS material
// that is missing is a setting to fix (exit 78, which the unit does not restart), not a crash,
// and with tracing on it exports its spans like every service. No backend is needed to start
// it. Build first (`npm run build`).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT_CONFIG } from '@rebootless/service';
import { OtlpReceiver, builtEntry, freePort, startNode, type RunningProcess } from '@rebootless/testing';

// Bounds on waiting for a real process; they measure nothing.
jest.setTimeout(60_000);

const main = builtEntry('apps/console/dist/main.js');
const started: RunningProcess[] = [];

afterAll(async () => {
  for (const p of started) {
    if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await p.exited();
  }
});

describe('the console process', () => {
  it('with LOG_FORMAT=json writes one JSON record a line, the ready line among them', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const consoleProcess = startNode(main, {
      REBOOTLESS_INSECURE: 'true',
      CONSOLE_HTTP_ADDRESS: address,
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'debug',
    });
    started.push(consoleProcess);
    await consoleProcess.waitFor('console ready on');
    consoleProcess.child.kill('SIGTERM');
    expect(await consoleProcess.exited()).toEqual({ code: 0, signal: null });
    const lines = consoleProcess.output().split('\n').filter(Boolean);
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.every((r) => r['service'] === 'console' && typeof r['level'] === 'string')).toBe(true);
    expect(records.find((r) => String(r['msg']).startsWith('console ready on'))).toMatchObject({
      level: 'info',
      msg: `console ready on http://${address} (INSECURE: plaintext HTTP and gRPC, REBOOTLESS_INSECURE=true) (sign-in off: no token public key)`,
    });
    // Nest's own lines have the same shape.
    expect(records.some((r) => r['context'] === 'NestFactory')).toBe(true);
  });

  it('with tracing on exports its spans as service console, and the last ones before it stops', async () => {
    const receiver = await OtlpReceiver.start();
    try {
      const address = `127.0.0.1:${await freePort()}`;
      const consoleProcess = startNode(main, {
        REBOOTLESS_INSECURE: 'true',
        CONSOLE_HTTP_ADDRESS: address,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        // Longer than the test: the spans can only arrive through the flush at shutdown.
        OTEL_BSP_SCHEDULE_DELAY: '600000',
      });
      started.push(consoleProcess);
      await consoleProcess.waitFor('console ready on');
      const answer = await fetch(`http://${address}/api/v1/openapi.json`);
      expect(answer.status).toBe(200);
      consoleProcess.child.kill('SIGTERM');
      await consoleProcess.exited();
      const spans = await receiver.waitFor((all) => all.some((s) => s.service === 'console'), 10_000);
      expect(spans.filter((s) => s.service === 'console').map((s) => s.name)).toContainEqual(
        expect.stringMatching(/openapi/i),
      );
      expect(receiver.rejected).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it('without its certificate in the pki directory exits 78 (a setting to fix) naming what is missing', async () => {
    const pki = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-console-pki-'));
    try {
      const consoleProcess = startNode(main, {
        REBOOTLESS_PKI_DIR: pki,
        CONSOLE_HTTP_ADDRESS: `127.0.0.1:${await freePort()}`,
      });
      started.push(consoleProcess);
      expect((await consoleProcess.exited()).code).toBe(EXIT_CONFIG);
      expect(consoleProcess.output()).toMatch(
        new RegExp(`^console: .*${pki.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`, 'm'),
      );
    } finally {
      fs.rmSync(pki, { recursive: true, force: true });
    }
  });
});
