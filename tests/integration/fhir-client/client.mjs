// A real FHIR client library (fhir-kit-client) talking to a FHIR server through fhir-mtls-proxy
// with a client certificate. Used by tests/integration/test_fhir_server.py.
//
//   node client.mjs --base https://127.0.0.1:8443/fhir --ca CA.pem [--cert CHAIN.pem --key KEY.pem]
//                   [--family NAME] [--read-id ID]
//
// Without --cert/--key the client presents no certificate (an anonymous client).
// Steps, in order: capabilities (GET metadata), create a Patient named NAME, read it back (or
// Patient/ID with --read-id when the create did not succeed), search Patient?family=NAME.
// Prints one JSON object on stdout, one key per step:
//   {"ok": true,  "status": 201, "id": "...", "resource": {...}}     (search: "ids": [...])
//   {"ok": false, "status": 403, "outcome": {OperationOutcome}}    (an HTTP error from the server)
//   {"ok": false, "error": "message"}                               (no HTTP answer at all)
//   {"skipped": "why"}
// Exit 0 whenever the JSON was printed (denials are results, not failures); 2 on bad arguments.
//
// fhir-kit-client sends its requests with fetch(): client certificates reach TLS only through an
// undici dispatcher (requestOptions.dispatcher). Node's https.Agent is silently ignored by fetch.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from 'fhir-kit-client';
import { Agent } from 'undici';

const usage =
  'usage: node client.mjs --base URL --ca CA.pem [--cert CHAIN.pem --key KEY.pem] [--family NAME] [--read-id ID]';

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      base: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      family: { type: 'string', default: `Kit${Date.now()}` },
      'read-id': { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  console.error(`client.mjs: ${err.message}\n${usage}`);
  process.exit(2);
}
for (const required of ['base', 'ca']) {
  if (!args[required]) {
    console.error(`client.mjs: --${required} is required\n${usage}`);
    process.exit(2);
  }
}
if (!args.cert !== !args.key) {
  console.error(`client.mjs: --cert and --key go together\n${usage}`);
  process.exit(2);
}

const dispatcher = new Agent({
  connect: {
    ...(args.cert ? { cert: readFileSync(args.cert), key: readFileSync(args.key) } : {}),
    ca: readFileSync(args.ca),
    // The proxy's certificate names localhost, 127.0.0.1 and ::1; verify it (never disable this).
    rejectUnauthorized: true,
  },
});
const client = new Client({ baseUrl: args.base, requestOptions: { dispatcher } });

/** Runs one client call and turns its answer or its error into a JSON-able result. */
async function step(call) {
  try {
    const resource = await call();
    const response = Client.httpFor(resource)?.response;
    return { ok: true, status: response?.status ?? null, resource };
  } catch (err) {
    if (err?.response?.status) {
      return { ok: false, status: err.response.status, outcome: err.response.data };
    }
    const cause = err?.cause ? ` (${err.cause.code ?? ''} ${err.cause.message ?? err.cause})` : '';
    return { ok: false, error: `${err?.message ?? err}${cause}` };
  }
}

const out = {};
out.capabilities = await step(() => client.capabilityStatement());

out.create = await step(() =>
  client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', name: [{ family: args.family, given: ['Kit'] }], birthDate: '1975-06-15' },
  }),
);
if (out.create.ok) out.create.id = out.create.resource.id;

const readId = out.create.ok ? out.create.id : args['read-id'];
out.read = readId
  ? await step(() => client.read({ resourceType: 'Patient', id: readId }))
  : { skipped: 'nothing created and no --read-id' };

out.search = await step(() => client.search({ resourceType: 'Patient', searchParams: { family: args.family } }));
if (out.search.ok) {
  out.search.ids = (out.search.resource.entry ?? []).map((e) => e.resource?.id);
}

process.stdout.write(`${JSON.stringify(out)}\n`);
await dispatcher.close();
