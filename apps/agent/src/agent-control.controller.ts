import { Controller } from '@nestjs/common';

/**
 * Serves rebootless.agent.v1.AgentControl, the host-local endpoint of the status command
 * (loopback by default: it is not meant to be reached from other hosts).
 * Its RPCs get handlers here as they are built; until then gRPC answers them UNIMPLEMENTED.
 */
@Controller()
export class AgentControlController {}
