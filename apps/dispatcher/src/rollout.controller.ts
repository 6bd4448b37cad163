import { Controller } from '@nestjs/common';

/**
 * Serves rebootless.dispatcher.v1.RolloutService.
 * Its RPCs get handlers here as they are built; until then gRPC answers them UNIMPLEMENTED.
 */
@Controller()
export class RolloutController {}
