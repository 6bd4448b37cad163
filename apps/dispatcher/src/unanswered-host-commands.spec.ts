import { toTimestamp } from '@rebootless/contracts';
import { UnansweredHostCommands, type UnansweredHostCommand } from './unanswered-host-commands';

const T0 = Date.parse('2026-12-07T12:00:00Z');

function command(commandId: string, hostId: string, expiresInMs: number | undefined): UnansweredHostCommand {
  return {
    hostId,
    byPeer: true,
    clearQuarantine: {
      commandId,
      patchId: 'cve-2026-0001',
      version: '1',
      reason: 'checked',
      ...(expiresInMs === undefined ? {} : { expiresAt: toTimestamp(new Date(T0 + expiresInMs)) }),
    },
  };
}

describe('UnansweredHostCommands', () => {
  it("gives a host's commands in the order written, until each is answered", () => {
    const book = new UnansweredHostCommands();
    book.add(command('c1', 'h1', 60_000), T0);
    book.add(command('c2', 'h1', 60_000), T0);
    book.add(command('c3', 'h2', 60_000), T0);
    expect(book.of('h1', T0).map((c) => c.clearQuarantine.commandId)).toEqual(['c1', 'c2']);
    book.settle('c1');
    book.settle('unknown');
    expect(book.of('h1', T0).map((c) => c.clearQuarantine.commandId)).toEqual(['c2']);
    expect(book.of('h2', T0).map((c) => c.clearQuarantine.commandId)).toEqual(['c3']);
    book.settle('c2');
    book.settle('c3');
    expect(book.of('h1', T0)).toEqual([]);
    expect(book.size).toBe(0);
  });

  it('lets expired commands go (the agent would refuse them), and keeps none without an expiry', () => {
    const book = new UnansweredHostCommands();
    book.add(command('soon', 'h1', 1_000), T0);
    book.add(command('later', 'h1', 300_000), T0);
    book.add(command('never-said', 'h1', undefined), T0);
    book.add(command('gone', 'h2', 1_000), T0);
    expect(book.of('h1', T0 + 999).map((c) => c.clearQuarantine.commandId)).toEqual(['soon', 'later']);
    expect(book.of('h1', T0 + 1_000).map((c) => c.clearQuarantine.commandId)).toEqual(['later']);
    // A host that never comes back leaves nothing behind.
    expect(book.size).toBe(1);
    book.add(command('late', 'h3', 1_000), T0 + 5_000);
    expect(book.size).toBe(1);
  });
});
