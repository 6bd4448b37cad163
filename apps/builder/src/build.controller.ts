import { Controller } from '@nestjs/common';

/**
 * Serves rebootless.builder.v1.BuildService.
 * Its RPCs get handlers here as they are built; until then gRPC answers them UNIMPLEMENTED.
 */
@Controller()
export class BuildController {}
