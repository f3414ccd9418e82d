#!/usr/bin/env node
// Invoke a Conductor task over the public gRPC API (conductor.v1.ConductorService), wait for
// the execution to finish and print it as one JSON object on stdout.
//
//   node invoke.js [--server HOST:PORT] --task NAME [--payload JSON] [--timeout SECONDS]
//                  [--token TOKEN] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]
//
// The server, token and TLS files default to the environment variables the Python client
// reads: CONDUCTOR_SERVER (else 127.0.0.1:50051, where `conductor dev` listens),
// CONDUCTOR_AUTH_TOKEN, CONDUCTOR_TLS_CA, CONDUCTOR_CLIENT_TLS_CERT, CONDUCTOR_CLIENT_TLS_KEY.
//
// Exit codes: 0 the execution succeeded; 1 it failed, was cancelled or did not finish within
// the timeout; 2 usage error or gRPC error (status code name and details on stderr).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = path.resolve(HERE, '..', '..', 'proto');
const CLIENT_PROTO = path.join(PROTO_ROOT, 'conductor', 'v1', 'client.proto');

const USAGE =
  'usage: node invoke.js [--server HOST:PORT] --task NAME [--payload JSON] [--timeout SECONDS]' +
  ' [--token TOKEN] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]';
const DEFAULT_TIMEOUT_SECONDS = 60;
const DEFAULT_SERVER = '127.0.0.1:50051';
// The gRPC deadline of WaitExecution is this much longer than its timeout_seconds, so the
// coordinator answers with the execution (in whatever state) rather than the call expiring.
const DEADLINE_MARGIN_SECONDS = 5;
const INVOKE_DEADLINE_SECONDS = 30;
const STATE_PREFIX = 'EXECUTION_STATE_';

class UsageError extends Error {}

function parseCommandLine(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        server: { type: 'string' },
        task: { type: 'string' },
        payload: { type: 'string' },
        timeout: { type: 'string' },
        token: { type: 'string' },
        'tls-ca': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(err.message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (!values.task) throw new UsageError('--task is required');

  let payloadJson = '';
  if (values.payload !== undefined) {
    try {
      JSON.parse(values.payload);
    } catch (err) {
      throw new UsageError(`--payload is not valid JSON: ${err.message}`);
    }
    payloadJson = values.payload;
  }

  let timeout = DEFAULT_TIMEOUT_SECONDS;
  if (values.timeout !== undefined) {
    timeout = Number(values.timeout);
    if (values.timeout.trim() === '' || !Number.isFinite(timeout) || timeout < 0) {
      throw new UsageError(`--timeout must be a number of seconds >= 0, got ${JSON.stringify(values.timeout)}`);
    }
  }
  const env = process.env;
  const token = values.token ?? env.CONDUCTOR_AUTH_TOKEN ?? '';
  const tlsCa = values['tls-ca'] ?? env.CONDUCTOR_TLS_CA ?? '';
  const tlsCert = values['tls-cert'] ?? env.CONDUCTOR_CLIENT_TLS_CERT ?? '';
  const tlsKey = values['tls-key'] ?? env.CONDUCTOR_CLIENT_TLS_KEY ?? '';
  if (Boolean(tlsCert) !== Boolean(tlsKey)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  if (tlsCert && !tlsCa) throw new UsageError('--tls-cert needs --tls-ca');
  return {
    server: values.server || process.env.CONDUCTOR_SERVER || DEFAULT_SERVER, task: values.task, payloadJson, timeout, token, tlsCa, tlsCert, tlsKey,
  };
}

function readFile(option, file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${option}: cannot read ${file}: ${err.message}`);
  }
}

// Plaintext, or TLS trusting --tls-ca (with a client certificate when one is given).
function channelCredentials(args) {
  if (!args.tlsCa) return grpc.credentials.createInsecure();
  const ca = readFile('--tls-ca', args.tlsCa);
  if (!args.tlsCert) return grpc.credentials.createSsl(ca);
  return grpc.credentials.createSsl(
    ca, readFile('--tls-key', args.tlsKey), readFile('--tls-cert', args.tlsCert),
  );
}

function loadService() {
  const definition = protoLoader.loadSync(CLIENT_PROTO, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: payload_json, execution_id, ...
    enums: String, // EXECUTION_STATE_SUCCEEDED rather than 3
    longs: String,
    defaults: true, // unset strings are "" and unset messages null
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  return pkg.conductor.v1.ConductorService;
}

function deadline(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

function call(client, method, request, seconds, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline(seconds) }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

function stateName(state) {
  const name = String(state);
  return (name.startsWith(STATE_PREFIX) ? name.slice(STATE_PREFIX.length) : name).toLowerCase();
}

function summarize(execution) {
  const error = execution.error
    ? {
        type: execution.error.type,
        message: execution.error.message,
        traceback: execution.error.traceback || null,
      }
    : null;
  return {
    id: execution.id,
    task: execution.task,
    state: stateName(execution.state),
    attempt: execution.attempt,
    result: execution.result_json ? JSON.parse(execution.result_json) : null,
    error,
  };
}

async function main() {
  let args;
  let credentials;
  try {
    args = parseCommandLine(process.argv.slice(2));
    credentials = channelCredentials(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n${USAGE}\n`);
    return 2;
  }

  const metadata = new grpc.Metadata();
  if (args.token) metadata.set('authorization', `Bearer ${args.token}`);
  const ConductorService = loadService();
  const client = new ConductorService(args.server, credentials);
  try {
    const invoked = await call(
      client,
      'Invoke',
      { task: args.task, payload_json: args.payloadJson },
      INVOKE_DEADLINE_SECONDS,
      metadata,
    );
    const execution = await call(
      client,
      'WaitExecution',
      { execution_id: invoked.execution_id, timeout_seconds: args.timeout },
      args.timeout + DEADLINE_MARGIN_SECONDS,
      metadata,
    );
    const summary = summarize(execution);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    if (summary.state === 'succeeded') return 0;
    if (summary.state === 'pending' || summary.state === 'running') {
      process.stderr.write(
        `execution ${summary.id} still ${summary.state} after ${args.timeout}s\n`,
      );
    } else {
      process.stderr.write(`execution ${summary.id} ${summary.state}\n`);
    }
    return 1;
  } catch (err) {
    if (err && typeof err.code === 'number') {
      const name = grpc.status[err.code] ?? `code ${err.code}`;
      process.stderr.write(`gRPC error: ${name}: ${err.details ?? err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    client.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 2;
  },
);
