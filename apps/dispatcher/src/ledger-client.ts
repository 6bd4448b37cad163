// The dispatcher's client of the ledger: undo plans come from the ledger's view of each stack.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { grpcServices, protoLoaderOptions, type ledger } from '@rebootless/contracts';
import { DependencyUnavailableError } from './dispatcher-errors';

type PlanUndo = (
  request: ledger.PlanUndoRequest,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: ledger.PlanUndoResponse) => void,
) => void;

export class LedgerClient {
  private readonly client: grpc.Client & { planUndo: PlanUndo };

  constructor(
    readonly address: string,
    credentials: grpc.ChannelCredentials,
  ) {
    const definition = protoLoader.loadSync(grpcServices.ledger.protoPath, protoLoaderOptions);
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      rebootless: { ledger: { v1: { LedgerService: grpc.ServiceClientConstructor } } };
    };
    this.client = new pkg.rebootless.ledger.v1.LedgerService(address, credentials) as unknown as grpc.Client & {
      planUndo: PlanUndo;
    };
  }

  planUndo(request: ledger.PlanUndoRequest, timeoutMs = 10_000): Promise<ledger.PlanUndoResponse> {
    return new Promise((resolve, reject) => {
      this.client.planUndo(request, { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (!error) return resolve(response!);
        if (error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED) {
          return reject(
            new DependencyUnavailableError(
              `the ledger at ${this.address} (DISPATCHER_LEDGER_ADDRESS) is not reachable: ${error.details || error.message}`,
            ),
          );
        }
        reject(error);
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
