// The projection routes every event type to its read models (a type left out does not compile);
// an event of a type no read model knows is skipped where it can be seen: a finding, no rows.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { LedgerDatabase } from './database';
import { LedgerProjection, writeStaged } from './projection';
import { LedgerQueries } from './queries';

describe('the projection, as a router over event types', () => {
  let db: LedgerDatabase;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-router-'));
    db = await LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
  });
  afterAll(() => db?.close());

  it('given an event of a type it does not know, records a not-projected finding and writes no audit row', async () => {
    const projection = new LedgerProjection(db, 'router');
    await projection.load();
    const body: events.EventBody = {
      eventId: 'future-1',
      type: 'HostTeleported',
      stream: 'host/web-1',
      occurredAt: { seconds: '1767225600', nanos: 0 },
      correlationId: '',
      causationId: '',
      producer: { producerId: 'agent/web-1', epoch: 1, seq: '7', prevHash: new Uint8Array(0) },
    };
    projection.apply({
      partition: 2,
      offset: '41',
      envelope: Buffer.from(events.EventBody.encode(body).finish()),
      body,
    });
    expect(projection.skipped).toBe(1);
    const staged = projection.take(2, 42n);
    await db.transaction((q) => writeStaged(q, staged));

    const findings = await new LedgerQueries(db).integrityFindings();
    expect(findings).toEqual([
      {
        partition: 2,
        offset: '41',
        kind: 'not-projected',
        producerId: 'agent/web-1',
        epoch: 1,
        seq: 7,
        detail: 'no read model knows event type "HostTeleported": not projected',
      },
    ]);
    expect(await db.query('SELECT * FROM audit_log')).toEqual([]);
    expect(await db.query('SELECT * FROM hosts')).toEqual([]);
  });
});
