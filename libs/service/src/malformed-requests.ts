// Bytes that do not decode as the method's request message are the caller's mistake, so they
// get INVALID_ARGUMENT naming the message type. grpc-js would answer INTERNAL (it treats every
// deserializer failure as its own), so the deserializers are wrapped to hand a marker instead
// of throwing, and an interceptor turns the marker into the status before any handler runs.
import { Metadata, ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { STATUS_DETAILS_TRAILER, encodeStatusDetails } from '@rebootless/contracts';

const MALFORMED = Symbol('rebootless.malformed-request');

interface Malformed {
  readonly [MALFORMED]: string;
}

interface MethodDefinitionLike {
  requestDeserialize?: (bytes: Buffer) => unknown;
  requestType?: { type?: { name?: string } };
  path?: string;
}

function isMalformed(message: unknown): message is Malformed {
  return typeof message === 'object' && message !== null && MALFORMED in message;
}

/** Wraps every request deserializer of a proto-loader package definition, in place. */
export function guardRequestDeserializers(packageDefinition: Record<string, unknown>): void {
  for (const definition of Object.values(packageDefinition)) {
    if (typeof definition !== 'object' || definition === null || 'format' in definition) continue;
    for (const method of Object.values(definition as Record<string, MethodDefinitionLike>)) {
      const decode = method?.requestDeserialize;
      if (typeof decode !== 'function') continue;
      const typeName = method.requestType?.type?.name ?? 'request';
      method.requestDeserialize = (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (error) {
          const why = error instanceof Error ? error.message : String(error);
          return { [MALFORMED]: `the request is not a valid ${typeName} message (${why})` } satisfies Malformed;
        }
      };
    }
  }
}

export const malformedRequestInterceptor: ServerInterceptor = (descriptor, call) =>
  new ServerInterceptingCall(call, {
    start: (next) => {
      next({
        onReceiveMessage: (message, proceed) => {
          if (isMalformed(message)) {
            call.sendStatus({
              code: status.INVALID_ARGUMENT,
              details: message[MALFORMED],
              metadata: malformedTrailer(descriptor.path, message[MALFORMED]),
            });
            return;
          }
          proceed(message);
        },
      });
    },
  });

/** ErrorInfo MALFORMED_REQUEST from the serving service, and a BadRequest naming no one field: the whole message is at fault. */
function malformedTrailer(method: string, why: string): Metadata {
  const [root = 'rebootless', service = 'unknown'] = (method.split('/')[1] ?? '').split('.');
  const details = encodeStatusDetails(status.INVALID_ARGUMENT, why, {
    errorInfo: { reason: 'MALFORMED_REQUEST', domain: `${root}.${service}`, metadata: { method } },
    badRequest: { fieldViolations: [{ field: '', description: why }] },
  });
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(details));
  return metadata;
}
