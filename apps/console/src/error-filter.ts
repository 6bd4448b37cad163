// One error mapping at the edge: ApiError as the documented shape (JSON under /api, a page
// elsewhere; a page's missing session sends the browser to sign in); anything unexpected is
// logged with its context and answered with a sentence, never a stack trace.
import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ApiError, type ErrorCode } from './api-error';
import { errorPage } from './html';

const HTTP_CODE: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
};

@Catch()
export class ConsoleErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('console');

  catch(exception: unknown, host: ArgumentsHost): void {
    const req = host.switchToHttp().getRequest<Request>();
    const res = host.switchToHttp().getResponse<Response>();
    const error = this.toApiError(exception, req);
    if (res.headersSent) {
      res.end();
      return;
    }
    if (req.path.startsWith('/api/')) {
      res.status(error.status).json(error.body);
    } else if (error.code === 'UNAUTHENTICATED' && req.method === 'GET') {
      res.redirect(303, `/signin?next=${encodeURIComponent(req.originalUrl)}`);
    } else {
      res
        .status(error.status)
        .type('html')
        .send(errorPage(error.status, error.message, undefined).text);
    }
  }

  private toApiError(exception: unknown, req: Request): ApiError {
    if (exception instanceof ApiError) return exception;
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Body parser refusals (malformed JSON) and Nest's own 404 for unknown routes.
      const code = HTTP_CODE[status] ?? (status < 500 ? 'BAD_REQUEST' : 'INTERNAL');
      const message =
        status === 404
          ? `no such route: ${req.method} ${req.path}`
          : status < 500
            ? 'the request is malformed'
            : 'internal error';
      return new ApiError(code, message);
    }
    this.logger.error(`${req.method} ${req.path}: ${(exception as Error)?.stack ?? String(exception)}`);
    return new ApiError('INTERNAL', 'internal error (logged by the console)');
  }
}
