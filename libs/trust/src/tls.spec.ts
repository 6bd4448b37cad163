import type { PeerCertificate } from 'node:tls';
import { serverIdentityError } from './tls';

const certificate = (uris: string[]): PeerCertificate =>
  ({
    subject: { CN: 'x' },
    subjectaltname: ['DNS:localhost', 'IP Address:127.0.0.1', ...uris.map((u) => `URI:${u}`)].join(', '),
  }) as unknown as PeerCertificate;

describe('serverIdentityError', () => {
  const builder = { kind: 'service', id: 'builder' } as const;

  it('Given the builder certificate, When a client expecting the builder checks it, Then it is accepted', () => {
    expect(
      serverIdentityError('localhost', certificate(['urn:rebootless:service:builder']), [builder]),
    ).toBeUndefined();
  });

  it.each([
    [['urn:rebootless:host:web-01'], 'names host:web-01, not service:builder'],
    [['urn:rebootless:service:ledger'], 'names service:ledger, not service:builder'],
    [[], 'names no certificate identity, not service:builder'],
    [['urn:rebootless:service:builder', 'urn:rebootless:host:web-01'], 'names no certificate identity'],
  ])(
    'Given a certificate naming %j, When a client expecting the builder checks it, Then it is refused',
    (uris, why) => {
      expect(serverIdentityError('localhost', certificate(uris), [builder])?.message).toContain(why);
    },
  );

  it('Given a certificate for another host name, Then the host name check still applies', () => {
    expect(
      serverIdentityError('evil.example', certificate(['urn:rebootless:service:builder']), [builder])?.message,
    ).toMatch(/evil\.example/);
  });
});
