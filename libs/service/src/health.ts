// The standard grpc.health.v1.Health service, answering for the whole server ("") and for each
// service it hosts by full name, so both `grpc_health_probe` and per-service checks work.
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

export class ServiceHealth {
  readonly implementation = new HealthImplementation();

  /** Full service names, e.g. rebootless.ledger.v1.LedgerService. Everything starts NOT_SERVING. */
  constructor(private readonly services: readonly string[]) {
    this.setAll('NOT_SERVING');
  }

  setAll(status: ServingStatus): void {
    for (const name of ['', ...this.services]) this.implementation.setStatus(name, status);
  }
}
