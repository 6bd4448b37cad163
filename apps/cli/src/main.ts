#!/usr/bin/env node
// The rebootless command. Wiring only: the process's streams, environment and signals.
// First, before anything loads grpc-js: tracing patches it as it loads.
import { startTelemetry } from '@rebootless/telemetry';
startTelemetry('cli');
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCli } from './cli';

void runCli({
  argv: process.argv.slice(2),
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  now: () => new Date(),
  readFile: (file) => fs.readFileSync(file),
  exists: (file) => fs.existsSync(file),
  // apps/cli/dist → the repository's .data/pki, as scripts/pki.mjs and npm start use it.
  defaultPkiDir: path.resolve(__dirname, '..', '..', '..', '.data', 'pki'),
  onInterrupt: (handler) => {
    process.on('SIGINT', handler);
    return () => process.off('SIGINT', handler);
  },
}).then((code) => {
  // Let stdout drain (a pipe may be slow) before the exit code is set.
  process.exitCode = code;
});
