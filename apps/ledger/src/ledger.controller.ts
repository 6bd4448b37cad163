import { Controller } from '@nestjs/common';

/**
 * Serves rebootless.ledger.v1.LedgerService.
 * Its RPCs get handlers here as they are built; until then gRPC answers them UNIMPLEMENTED.
 */
@Controller()
export class LedgerController {}
