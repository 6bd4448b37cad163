// The shared mapping's rules that no service's happy refusals reach: unknown errors, errors an
// operator must hear about, and errors already mapped.
import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { STATUS_DETAILS_TRAILER, decodeStatusDetails } from '@rebootless/contracts';
import { RpcErrorMapping, rule } from './rpc-errors';

class Corrupt extends Error {}
class BadField extends Error {
  constructor(readonly field: string) {
    super(`${field}: must not be empty`);
  }
}

const mapping = new RpcErrorMapping('testsvc', [
  rule({ type: BadField, code: status.INVALID_ARGUMENT, reason: 'BAD_FIELD' }),
  rule({ type: Corrupt, code: status.DATA_LOSS, reason: 'CORRUPT', logged: true }),
]);

function logged() {
  const lines: string[] = [];
  return { lines, log: { error: (message: string) => lines.push(message) } };
}

function bodyOf(e: RpcException) {
  const body = e.getError() as { code: number; message: string; metadata: import('@grpc/grpc-js').Metadata };
  const [trailer] = body.metadata.get(STATUS_DETAILS_TRAILER);
  return { code: body.code, message: body.message, details: decodeStatusDetails(trailer as Buffer) };
}

describe('RpcErrorMapping', () => {
  it('given an error no rule knows, answers INTERNAL without its message, and logs it with the call', () => {
    const { lines, log } = logged();
    const body = bodyOf(mapping.toRpcException(new Error('password=hunter2 in /etc/x'), 'GetThing', log));
    expect(body.code).toBe(status.INTERNAL);
    expect(body.message).toBe('GetThing failed on the testsvc (logged there)');
    expect(body.details.errorInfo).toEqual({ reason: 'INTERNAL', domain: 'rebootless.testsvc', metadata: {} });
    expect(lines).toEqual(['GetThing failed: password=hunter2 in /etc/x']);
  });

  it('given a thrown non-Error, answers INTERNAL and logs what was thrown', () => {
    const { lines, log } = logged();
    expect(bodyOf(mapping.toRpcException('boom', 'GetThing', log)).code).toBe(status.INTERNAL);
    expect(lines).toEqual(['GetThing failed: boom']);
  });

  it('given a rule marked logged, answers its code and tells the operator too', () => {
    const { lines, log } = logged();
    expect(bodyOf(mapping.toRpcException(new Corrupt('digest mismatch'), 'Fetch', log)).code).toBe(status.DATA_LOSS);
    expect(lines).toEqual(['Fetch refused: digest mismatch']);
  });

  it('given an input error naming its field, the violation carries the field and only the why', () => {
    const { lines, log } = logged();
    const body = bodyOf(mapping.toRpcException(new BadField('host_id'), 'GetHost', log));
    expect(body.details.badRequest).toEqual({
      fieldViolations: [{ field: 'host_id', description: 'must not be empty' }],
    });
    expect(lines).toEqual([]);
  });

  it('given a refusal made in place, it carries the same details a row would give', () => {
    const invalid = bodyOf(mapping.refusal(status.INVALID_ARGUMENT, 'INVALID_FIELD', 'hello: not yours', 'hello'));
    expect(invalid.details.badRequest).toEqual({ fieldViolations: [{ field: 'hello', description: 'not yours' }] });
    const early = bodyOf(mapping.refusal(status.FAILED_PRECONDITION, 'HELLO_FIRST', 'say hello first'));
    expect(early.details).toEqual({
      code: status.FAILED_PRECONDITION,
      message: 'say hello first',
      errorInfo: { reason: 'HELLO_FIRST', domain: 'rebootless.testsvc', metadata: {} },
      preconditionFailure: { violations: [{ type: 'HELLO_FIRST', subject: '', description: 'say hello first' }] },
    });
  });

  it('given an RpcException already, passes it through untouched', () => {
    const already = new RpcException({ code: status.ABORTED, message: 'as it was' });
    expect(mapping.toRpcException(already, 'X', logged().log)).toBe(already);
    expect(mapping.statusOf(new BadField('x'))).toBe(status.INVALID_ARGUMENT);
    expect(mapping.statusOf(new Error('x'))).toBeUndefined();
  });
});
