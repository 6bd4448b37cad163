// Fetches a module by digest from the builder (BuildService.FetchArtifact) and checks it as it
// arrives: the signed manifest before the first byte of the module, the module byte by byte.
// A refusal cancels the stream at once: nothing refused is downloaded in full, let alone kept.
import { status, type Client, type ServiceError } from '@grpc/grpc-js';
import type { PatchManifest } from '@rebootless/artifacts';
import { CommandRefused, ModuleReceipt } from '../verification';
import { openFetchArtifact, type ArtifactSourceKind } from './grpc-clients';

/** The builder could not be asked or did not answer as it should (not a refusal of the artifact). */
export class ArtifactFetchError extends Error {
  override readonly name = 'ArtifactFetchError';

  constructor(
    message: string,
    readonly code?: status,
  ) {
    super(message);
  }
}

export interface FetchedArtifact {
  readonly manifest: PatchManifest;
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly module: Buffer;
}

export function fetchArtifact(input: {
  client: Client;
  /** Which service the client reaches: the builder, or the dispatcher's site cache. */
  from?: ArtifactSourceKind;
  digest: string;
  timeoutMs: number;
  /** Checks the signed manifest (throws CommandRefused); runs before any module byte is taken. */
  checkHeader: (manifestBytes: Buffer, signature: Buffer) => PatchManifest;
}): Promise<FetchedArtifact> {
  return new Promise((resolve, reject) => {
    const call = openFetchArtifact(
      input.client,
      { artifactDigest: input.digest },
      new Date(Date.now() + input.timeoutMs),
      input.from,
    );
    let header: { manifest: PatchManifest; manifestBytes: Buffer; signature: Buffer } | undefined;
    let receipt: ModuleReceipt | undefined;
    const chunks: Buffer[] = [];
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      call.cancel();
      reject(error);
    };
    call.on(
      'data',
      (message: { header?: { manifest: Uint8Array; manifestSignature: Uint8Array }; chunk?: Uint8Array }) => {
        if (settled) return;
        try {
          if (message.header) {
            if (header) throw new ArtifactFetchError('the builder sent a second header');
            const manifestBytes = Buffer.from(message.header.manifest);
            const signature = Buffer.from(message.header.manifestSignature);
            header = { manifest: input.checkHeader(manifestBytes, signature), manifestBytes, signature };
            receipt = new ModuleReceipt(header.manifest);
          } else if (message.chunk) {
            if (!receipt)
              throw new CommandRefused('bad-signature', 'the builder sent module bytes before the signed manifest');
            receipt.add(message.chunk);
            chunks.push(Buffer.from(message.chunk));
          }
        } catch (error) {
          fail(error);
        }
      },
    );
    call.on('error', (error: ServiceError) => {
      if (settled) return;
      settled = true;
      reject(fetchFailure(input.digest, error, input.from));
    });
    call.on('end', () => {
      if (settled) return;
      settled = true;
      try {
        if (!header || !receipt) throw new CommandRefused('bad-signature', 'the builder sent no signed manifest');
        receipt.finish();
        resolve({ ...header, module: Buffer.concat(chunks) });
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** What a failed FetchArtifact means to the agent: a retraction is a refusal, the rest is the builder's trouble. */
export function fetchFailure(
  digest: string,
  error: ServiceError,
  from: ArtifactSourceKind = 'builder',
): CommandRefused | ArtifactFetchError {
  if (error.code === status.FAILED_PRECONDITION && /retracted/i.test(error.details)) {
    return new CommandRefused('retracted', `the ${from} refuses to serve it: ${error.details}`);
  }
  return new ArtifactFetchError(
    `FetchArtifact ${digest} from the ${from}: ${status[error.code]} ${error.details}`,
    error.code,
  );
}
