import { status } from '@grpc/grpc-js';
import { callError, connectionDetails } from './call-errors';
import { ExitCode, exitCodeForStatus } from './exit-codes';
import type { Endpoint } from './settings';

describe('exit codes', () => {
  it.each([
    [status.OK, ExitCode.Ok],
    [status.UNAVAILABLE, ExitCode.Unreachable],
    [status.DEADLINE_EXCEEDED, ExitCode.Unreachable],
    [status.NOT_FOUND, ExitCode.NotFound],
    [status.UNAUTHENTICATED, ExitCode.Denied],
    [status.PERMISSION_DENIED, ExitCode.Denied],
    [status.INVALID_ARGUMENT, ExitCode.Rejected],
    [status.FAILED_PRECONDITION, ExitCode.Rejected],
    [status.ALREADY_EXISTS, ExitCode.Rejected],
    [status.OUT_OF_RANGE, ExitCode.Rejected],
    [status.RESOURCE_EXHAUSTED, ExitCode.Busy],
    [status.ABORTED, ExitCode.Busy],
    [status.UNIMPLEMENTED, ExitCode.Unimplemented],
    [status.INTERNAL, ExitCode.Internal],
    [status.DATA_LOSS, ExitCode.Internal],
    [status.UNKNOWN, ExitCode.Internal],
  ])('gRPC status %s exits %s', (code, exit) => {
    expect(exitCodeForStatus(code)).toBe(exit);
  });

  it('keeps the documented numbers', () => {
    expect([
      ExitCode.Ok,
      ExitCode.OperationFailed,
      ExitCode.Usage,
      ExitCode.Unreachable,
      ExitCode.NotFound,
      ExitCode.Denied,
      ExitCode.Rejected,
      ExitCode.Busy,
      ExitCode.Unimplemented,
      ExitCode.Internal,
      ExitCode.Interrupted,
    ]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 130]);
  });
});

describe('what a failed call tells the operator', () => {
  const endpoint: Endpoint = {
    service: 'builder',
    address: '127.0.0.1:7451',
    howToChange: '--builder or REBOOTLESS_BUILDER',
  };
  const base = {
    endpoint,
    method: 'BuildService/ListBuilds',
    security: { mode: 'tls', pkiDir: '/pki' } as const,
    hasToken: false,
  };

  it('an unreachable service: the address, the socket error, and the flag and variable to change it', () => {
    const error = callError({
      ...base,
      code: status.UNAVAILABLE,
      details: 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7451. Resolution note: ',
    });
    expect(error.exitCode).toBe(ExitCode.Unreachable);
    expect(error.message).toBe(
      'cannot reach the builder at 127.0.0.1:7451: connect ECONNREFUSED 127.0.0.1:7451. Is it running? Point the CLI at it with --builder or REBOOTLESS_BUILDER; ' +
        'if it runs in plaintext (REBOOTLESS_INSECURE=true) pass --insecure, else check that --pki (/pki) holds the CA it trusts',
    );
  });

  it('no token: how to pass one and how to mint one', () => {
    const error = callError({ ...base, code: status.UNAUTHENTICATED, details: 'needs a bearer token' });
    expect(error.exitCode).toBe(ExitCode.Denied);
    expect(error.message).toMatch(
      /needs an operator token .* --token, REBOOTLESS_TOKEN or REBOOTLESS_TOKEN_FILE; mint one with node scripts\/pki.mjs token/,
    );
  });

  it('a wrong role: the service’s words and the role hint', () => {
    const error = callError({
      ...base,
      hasToken: true,
      code: status.PERMISSION_DENIED,
      details: 'carol holds auditor; /rebootless.builder.v1.BuildService/RetractPatch needs operator',
    });
    expect(error.exitCode).toBe(ExitCode.Denied);
    expect(error.message).toContain('permission denied by the builder at 127.0.0.1:7451: carol holds auditor;');
  });

  it('an unfinished service: says which call it lacks', () => {
    const error = callError({ ...base, code: status.UNIMPLEMENTED, details: '' });
    expect(error.exitCode).toBe(ExitCode.Unimplemented);
    expect(error.message).toBe(
      'the builder at 127.0.0.1:7451 does not implement BuildService/ListBuilds. It is an older or unfinished builder: update it',
    );
  });

  it('strips grpc-js wording from connection errors', () => {
    expect(connectionDetails('Failed to connect')).toBe('Failed to connect');
    expect(connectionDetails('No connection established. Last error: connect ETIMEDOUT 10.0.0.1:1.')).toBe(
      'connect ETIMEDOUT 10.0.0.1:1',
    );
  });
});
