import { Controller, Inject, Logger } from '@nestjs/common';
import { Observable } from 'rxjs';
import { ledger } from '@rebootless/contracts';
import { complianceReport, undoPlanForHost, verifyLog, vexReport } from '@rebootless/ledger-store';
import { LEDGER_ERRORS } from './grpc-errors';
import { LEDGER_RUNTIME, LedgerRuntime } from './ledger-runtime';

/** Serves rebootless.ledger.v1.LedgerService from the read models: decoding and status mapping only. */
@Controller()
@ledger.LedgerServiceControllerMethods()
export class LedgerController implements ledger.LedgerServiceController {
  private readonly logger = new Logger('LedgerService');

  constructor(@Inject(LEDGER_RUNTIME) private readonly rt: LedgerRuntime) {}

  private async answer<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw LEDGER_ERRORS.toRpcException(error, what, this.logger);
    }
  }

  getHost(request: ledger.GetHostRequest): Promise<ledger.GetHostResponse> {
    return this.answer('GetHost', () => this.rt.queries.getHost(request.hostId, request.verdictDeadlineDays));
  }

  listHosts(request: ledger.ListHostsRequest): Promise<ledger.ListHostsResponse> {
    return this.answer('ListHosts', () => this.rt.queries.listHosts(request));
  }

  countHosts(request: ledger.CountHostsRequest): Promise<ledger.CountHostsResponse> {
    return this.answer('CountHosts', () => this.rt.queries.countHosts(request));
  }

  getHostStackAt(request: ledger.GetHostStackAtRequest): Promise<ledger.GetHostStackAtResponse> {
    return this.answer('GetHostStackAt', () => this.rt.queries.getHostStackAt(request.hostId, request.at));
  }

  getHostHistory(request: ledger.GetHostHistoryRequest): Promise<ledger.GetHostHistoryResponse> {
    return this.answer('GetHostHistory', () => this.rt.queries.getHostHistory(request));
  }

  listPatches(request: ledger.ListPatchesRequest): Promise<ledger.ListPatchesResponse> {
    return this.answer('ListPatches', () => this.rt.queries.listPatches(request));
  }

  getRollout(request: ledger.GetRolloutRequest): Promise<ledger.GetRolloutResponse> {
    return this.answer('GetRollout', () => this.rt.queries.getRollout(request.rolloutId, request.view));
  }

  queryAudit(request: ledger.QueryAuditRequest): Observable<ledger.QueryAuditResponse> {
    return new Observable((subscriber) => {
      let cancelled = false;
      void (async () => {
        try {
          for await (const record of this.rt.queries.queryAudit(request)) {
            if (cancelled) return;
            subscriber.next({ record });
          }
          subscriber.complete();
        } catch (error) {
          subscriber.error(LEDGER_ERRORS.toRpcException(error, 'QueryAudit', this.logger));
        }
      })();
      return () => void (cancelled = true);
    });
  }

  planUndo(request: ledger.PlanUndoRequest): Promise<ledger.PlanUndoResponse> {
    return this.answer('PlanUndo', () =>
      undoPlanForHost(this.rt.queries, request.hostId, request.patchId, this.rt.config.kernelDisableOrders),
    );
  }

  complianceReport(request: ledger.ComplianceReportRequest): Promise<ledger.ComplianceReportResponse> {
    return this.answer('ComplianceReport', () => complianceReport(this.rt.queries, request));
  }

  vexReport(request: ledger.VexReportRequest): Promise<ledger.VexReportResponse> {
    return this.answer('VexReport', () => vexReport(this.rt.queries, request));
  }

  verifyIntegrity(request: ledger.VerifyIntegrityRequest): Promise<ledger.VerifyIntegrityResponse> {
    return this.answer('VerifyIntegrity', () =>
      verifyLog(this.rt.kafka, this.rt.config.eventsTopic, this.rt.serviceKeys, request.producerId, {
        checker: this.rt.readModels,
      }),
    );
  }
}
