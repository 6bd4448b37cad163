// The web console: pages and an HTTP/JSON API over HTTPS with the stack's certificates, acting
// on the ledger, dispatcher and builder as the signed-in person. Wiring only.
// First, before anything loads grpc-js or NestJS: tracing patches them as they load, so what a
// person does in the console is a trace through the services it calls (`npm start -- --tracing`).
import { shutdownTelemetry, startTelemetry } from '@rebootless/telemetry';
startTelemetry('console');
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { NextFunction, Request, Response } from 'express';
import {
  ConfigError,
  answerVersion,
  createServiceLogger,
  formatHostPort,
  loadConfig,
  EXIT_CONFIG,
} from '@rebootless/service';
import { PkiError, TOKEN_PUBLIC_KEY, loadTlsMaterial, readTokenPublicKey } from '@rebootless/trust';
import { ConsoleModule } from './app.module';
import { Backends } from './backends';
import { consoleSettings, SERVICE_NAME, type ConsoleConfig } from './config';
import { ConsoleData } from './console-data';
import { SessionStore } from './sessions';

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  // No inline script, no framing, no sniffing: the pages load one script of their own.
  res.setHeader(
    'Content-Security-Policy',
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  );
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
  next();
}

async function main(): Promise<void> {
  if (answerVersion('rebootless-console')) process.exit(0);
  let config: ConsoleConfig;
  try {
    config = loadConfig(consoleSettings, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${SERVICE_NAME}: ${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
  const tls = config.transport.mode === 'tls';
  const keyFile =
    config.tokenPublicKey ??
    (config.transport.mode === 'tls' ? path.join(config.transport.pkiDir, TOKEN_PUBLIC_KEY) : undefined);
  const tokenKey = keyFile && fs.existsSync(keyFile) ? readTokenPublicKey(keyFile) : undefined;
  const backends = new Backends(config.transport, {
    ledger: config.ledgerAddress,
    dispatcher: config.dispatcherAddress,
    builder: config.builderAddress,
  });
  const data = new ConsoleData(backends, config.deadlineDays, config.pageSize);
  const httpsOptions =
    config.transport.mode === 'tls'
      ? (() => {
          const material = loadTlsMaterial(config.transport.pkiDir, { kind: 'service', id: 'console' });
          return { key: material.key, cert: material.cert };
        })()
      : undefined;
  const adapter = new ExpressAdapter();
  adapter.getInstance().disable('x-powered-by');
  const app = await NestFactory.create(
    ConsoleModule.with({ data, sessions: new SessionStore(tokenKey), secure: tls }),
    adapter,
    {
      logger: createServiceLogger(SERVICE_NAME, { level: config.logLevel, format: config.logFormat }),
      ...(httpsOptions ? { httpsOptions } : {}),
    },
  );
  app.use(securityHeaders);
  // No enableShutdownHooks: stop() below closes the app (which runs its shutdown hooks), flushes
  // the last spans and exits 0; Nest's hook would end the process by the signal before the flush.
  await app.listen(config.listen.port, config.listen.host);
  const url = `${tls ? 'https' : 'http'}://${formatHostPort(config.listen)}`;
  // Stopping is wired before the ready line: a supervisor may stop it as soon as it reads it.
  const stop = () => {
    backends.close();
    // process.exit skips the exporter's own flush at exit: the last spans go first.
    void app
      .close()
      .then(() => shutdownTelemetry())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Written whatever LOG_LEVEL says, in the LOG_FORMAT shape: supervisors and operators rely on it.
  createServiceLogger(SERVICE_NAME, { level: 'info', format: config.logFormat }).log(
    `${SERVICE_NAME} ready on ${url}${tls ? '' : ' (INSECURE: plaintext HTTP and gRPC, REBOOTLESS_INSECURE=true)'}${tokenKey ? '' : ' (sign-in off: no token public key)'}`,
  );
}

main().catch((error: Error) => {
  process.stderr.write(`${SERVICE_NAME}: ${error.message}\n`);
  // Missing or unreadable TLS material is a setting to fix, not a crash to restart (exit 78).
  process.exit(error instanceof PkiError ? EXIT_CONFIG : 1);
});
