// The one mapping from a service's errors to gRPC statuses (STYLE.md: one error mapping at each
// edge). Each service hands it its table; every refusal carries google.rpc details in the
// grpc-status-details-bin trailer beside the message: an ErrorInfo with a stable reason, a
// BadRequest naming the fields for INVALID_ARGUMENT, a PreconditionFailure for
// FAILED_PRECONDITION. Unknown errors are logged with their stack and answered INTERNAL
// without details of the failure (ADR 0015).
import { Metadata, status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { STATUS_DETAILS_TRAILER, encodeStatusDetails, rpc, type StatusDetails } from '@rebootless/contracts';

export interface ErrorLog {
  error(message: string, stack?: string): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ErrorClass<E extends Error = Error> = abstract new (...args: any[]) => E;

export interface ErrorRule<E extends Error = Error> {
  readonly type: ErrorClass<E>;
  readonly code: status;
  /** ErrorInfo.reason: UPPER_SNAKE_CASE and stable, what clients branch on. */
  readonly reason: string;
  /** BadRequest's violations when the error names no `field` or `problems` of its own. */
  readonly fields?: (error: E) => rpc.BadRequest_FieldViolation[];
  /** PreconditionFailure.subject (e.g. `patch/<id>`). */
  readonly subject?: (error: E) => string;
  /** ErrorInfo.metadata: facts of this failure a client may use. */
  readonly metadata?: (error: E) => Record<string, string>;
  /** A refusal an operator must hear about too (stored data found corrupt). */
  readonly logged?: boolean;
}

/** One row of a service's table, typed by the error class so its accessors see its fields. */
export function rule<E extends Error>(rule: ErrorRule<E>): ErrorRule {
  return rule as unknown as ErrorRule;
}

export class RpcErrorMapping {
  /** @param service the ErrorInfo domain is `rebootless.<service>`, and INTERNAL says where it was logged */
  constructor(
    readonly service: string,
    private readonly rules: readonly ErrorRule[],
  ) {}

  get domain(): string {
    return `rebootless.${this.service}`;
  }

  statusOf(error: unknown): status | undefined {
    return this.ruleOf(error)?.code;
  }

  toRpcException(error: unknown, what: string, log: ErrorLog): RpcException {
    if (error instanceof RpcException) return error;
    const found = this.ruleOf(error);
    if (found === undefined || !(error instanceof Error)) {
      log.error(
        `${what} failed: ${error instanceof Error ? error.message : String(error)}`,
        error instanceof Error ? error.stack : undefined,
      );
      return this.exception(status.INTERNAL, `${what} failed on the ${this.service} (logged there)`, {
        errorInfo: { reason: 'INTERNAL', domain: this.domain, metadata: {} },
      });
    }
    if (found.logged) log.error(`${what} refused: ${error.message}`);
    return this.exception(found.code, error.message, this.detailsOf(found, error));
  }

  /**
   * A refusal decided where it is found, with no error class (a stream's message): the same
   * details a row gives. `field` names the request field for INVALID_ARGUMENT.
   */
  refusal(code: status, reason: string, message: string, field = ''): RpcException {
    const errorInfo = { reason, domain: this.domain, metadata: {} };
    const why = field && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
    if (code === status.INVALID_ARGUMENT) {
      return this.exception(code, message, {
        errorInfo,
        badRequest: { fieldViolations: [{ field, description: why }] },
      });
    }
    if (code === status.FAILED_PRECONDITION) {
      return this.exception(code, message, {
        errorInfo,
        preconditionFailure: { violations: [{ type: reason, subject: '', description: message }] },
      });
    }
    return this.exception(code, message, { errorInfo });
  }

  private ruleOf(error: unknown): ErrorRule | undefined {
    return this.rules.find((r) => error instanceof r.type);
  }

  private detailsOf(found: ErrorRule, error: Error): StatusDetails {
    const errorInfo = { reason: found.reason, domain: this.domain, metadata: found.metadata?.(error) ?? {} };
    if (found.code === status.INVALID_ARGUMENT) {
      return { errorInfo, badRequest: { fieldViolations: found.fields?.(error) ?? fieldViolationsOf(error) } };
    }
    if (found.code === status.FAILED_PRECONDITION) {
      const violation = { type: found.reason, subject: found.subject?.(error) ?? '', description: error.message };
      return { errorInfo, preconditionFailure: { violations: [violation] } };
    }
    return { errorInfo };
  }

  private exception(code: status, message: string, details: StatusDetails): RpcException {
    const metadata = new Metadata();
    metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(encodeStatusDetails(code, message, details)));
    return new RpcException({ code, message, metadata });
  }
}

/**
 * The services' input errors name their field as `field` (with the message `field: why`) or
 * list `problems` of `{ field, why }`; anything else is one violation without a field.
 */
function fieldViolationsOf(error: Error): rpc.BadRequest_FieldViolation[] {
  const { field, problems } = error as { field?: unknown; problems?: unknown };
  if (Array.isArray(problems)) {
    return problems.map((p: { field: string; why: string }) => ({ field: p.field, description: p.why }));
  }
  if (typeof field === 'string') {
    const prefix = `${field}: `;
    const why = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    return [{ field, description: why }];
  }
  return [{ field: '', description: error.message }];
}
