import { Module } from '@nestjs/common';
import { AgentGatewayController } from './agent-gateway.controller';
import { RolloutController } from './rollout.controller';

@Module({ controllers: [RolloutController, AgentGatewayController] })
export class AppModule {}
