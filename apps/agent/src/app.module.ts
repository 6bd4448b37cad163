import { Module } from '@nestjs/common';
import { AgentControlController } from './agent-control.controller';

@Module({ controllers: [AgentControlController] })
export class AppModule {}
