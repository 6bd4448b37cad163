// One place that turns a gRPC failure into what the operator reads and the exit code scripts
// see. Pure, so each case is a unit test.
import { status } from '@grpc/grpc-js';
import { CliError } from './errors';
import { exitCodeForStatus } from './exit-codes';
import type { Endpoint, Security } from './settings';

export interface FailedCall {
  readonly endpoint: Endpoint;
  /** "BuildService/SubmitBuild". */
  readonly method: string;
  readonly code: number;
  readonly details: string;
  readonly security: Security;
  readonly hasToken: boolean;
  readonly timeoutSeconds?: number;
}

const MINT = 'node scripts/pki.mjs token --sub NAME --roles operator|approver|auditor';

/** grpc-js wraps the socket error in words of its own; keep the part that says what happened. */
export function connectionDetails(details: string): string {
  return details
    .replace(/\s*Resolution note:.*$/s, '')
    .replace(/^No connection established\. Last error: (Error: )?/, '')
    .replace(/\.$/, '');
}

export function callError(call: FailedCall): CliError {
  const { endpoint, method, code } = call;
  const details = code === status.UNAVAILABLE ? connectionDetails(call.details) : call.details;
  const where = `the ${endpoint.service} at ${endpoint.address}`;
  const exit = exitCodeForStatus(code);
  const said = details ? `: ${details}` : '';
  switch (code) {
    case status.UNAVAILABLE: {
      const transport =
        call.security.mode === 'tls'
          ? `; if it runs in plaintext (REBOOTLESS_INSECURE=true) pass --insecure, else check that --pki (${call.security.pkiDir}) holds the CA it trusts`
          : '; if it runs with TLS, pass --pki DIR instead of --insecure';
      return new CliError(
        `cannot reach ${where}${said}. Is it running? Point the CLI at it with ${endpoint.howToChange}${transport}`,
        exit,
      );
    }
    case status.DEADLINE_EXCEEDED:
      return new CliError(
        `${where} did not answer ${method} within ${call.timeoutSeconds ?? '?'}s${said}. Is it overloaded or is ${endpoint.howToChange} pointing at the wrong port?`,
        exit,
      );
    case status.UNAUTHENTICATED:
      return new CliError(
        call.hasToken
          ? `${where} refused your token for ${method}${said}. Mint a fresh one: ${MINT}, and pass it with --token or REBOOTLESS_TOKEN`
          : `${where} needs an operator token for ${method}${said}. Pass one with --token, REBOOTLESS_TOKEN or REBOOTLESS_TOKEN_FILE; mint one with ${MINT}`,
        exit,
      );
    case status.PERMISSION_DENIED:
      return new CliError(
        `permission denied by ${where}${said}. Use a token that carries the role the call needs: ${MINT}`,
        exit,
      );
    case status.NOT_FOUND:
      return new CliError(`not found${said}`, exit);
    case status.INVALID_ARGUMENT:
      return new CliError(`${where} refused ${method}${said}`, exit);
    case status.FAILED_PRECONDITION:
      return new CliError(`${where} cannot do ${method} now${said}`, exit);
    case status.ALREADY_EXISTS:
      return new CliError(`already exists${said}`, exit);
    case status.RESOURCE_EXHAUSTED:
    case status.ABORTED:
      return new CliError(`${where} is busy${said}. Try again later`, exit);
    case status.UNIMPLEMENTED:
      return new CliError(
        `${where} does not implement ${method}${said}. It is an older or unfinished ${endpoint.service}: update it`,
        exit,
      );
    default:
      return new CliError(`${where} failed ${method} with ${status[code] ?? code}${said}`, exit);
  }
}
