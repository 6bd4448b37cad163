import { AgentConnections, AgentStream } from './agent-connections';

// docs/adr/0028: when an operator revokes agent keys of a host, the host's stream here is cut
// unless the key its agent named at hello is one still bound (a rebuilt host's new key).

function stream(agentKey?: Buffer): AgentStream & { cut: string[] } {
  const cut: string[] = [];
  return { send: () => undefined, replaced: () => undefined, untrusted: (why) => cut.push(why), agentKey, cut };
}

const oldKey = Buffer.alloc(32, 1);
const newKey = Buffer.alloc(32, 2);
const stillBound = (key: Uint8Array) => Buffer.from(key).equals(newKey);

describe('an agent stream when keys of its host are revoked', () => {
  it('given its hello named the revoked key, then it is cut with the reason', () => {
    const agents = new AgentConnections();
    const s = stream(oldKey);
    agents.attach('web-1', s);
    expect(agents.revoked('web-1', stillBound, 'revoked: disk stolen')).toBe(true);
    expect(s.cut).toEqual(['revoked: disk stolen']);
  });

  it('given its hello named no key, then it is cut: nothing says it is not the revoked one', () => {
    const agents = new AgentConnections();
    const s = stream(Buffer.alloc(0));
    agents.attach('web-1', s);
    expect(agents.revoked('web-1', stillBound, 'revoked')).toBe(true);
    expect(s.cut).toEqual(['revoked']);
  });

  it('given its hello named a key still bound (the rebuilt host), then it stays', () => {
    const agents = new AgentConnections();
    const s = stream(newKey);
    agents.attach('web-1', s);
    expect(agents.revoked('web-1', stillBound, 'revoked')).toBe(false);
    expect(s.cut).toEqual([]);
  });

  it('given another host is revoked, then nothing is cut', () => {
    const agents = new AgentConnections();
    const s = stream(oldKey);
    agents.attach('web-1', s);
    expect(agents.revoked('web-2', stillBound, 'revoked')).toBe(false);
    expect(s.cut).toEqual([]);
  });
});
