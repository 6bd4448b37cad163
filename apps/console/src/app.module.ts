import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ApiController } from './api.controller';
import { CONSOLE_OPTIONS, type ConsoleOptions } from './console-options';
import { ConsoleErrorFilter } from './error-filter';
import { PagesController } from './pages.controller';

@Module({})
export class ConsoleModule {
  static with(options: ConsoleOptions): DynamicModule {
    return {
      module: ConsoleModule,
      controllers: [ApiController, PagesController],
      providers: [
        { provide: CONSOLE_OPTIONS, useValue: options },
        { provide: APP_FILTER, useClass: ConsoleErrorFilter },
      ],
    };
  }
}
