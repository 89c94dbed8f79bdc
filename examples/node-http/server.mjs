// A JSON service on node:http whose SQLite database walship replicates to S3.
//
//   WALSHIP_S3_URL=s3://my-bucket/prod/notes node server.mjs
//
// Environment: WALSHIP_S3_URL (s3://bucket/prefix, required), DB_PATH (default ./data/notes.db),
// PORT (default 8080; 0 picks a free one), WALSHIP_LEASE_TABLE (a DynamoDB lease table; without it
// one writer per prefix is assumed), and the standard AWS variables (AWS_REGION,
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 for S3-compatible stores, ...).
//
// Routes: POST /notes {"body": "..."} answers once the row is durable in S3; GET /notes/:id;
// GET /notes; GET /status; GET /metrics (Prometheus). SIGTERM or SIGINT: stop accepting, finish open requests, flush and
// close the database (which releases the lease), exit 0.
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { openReplicated } from '@walship/shipper';

const s3Url = new URL(required('WALSHIP_S3_URL'));
if (s3Url.protocol !== 's3:' || s3Url.hostname === '' || s3Url.pathname.length < 2) {
  fail(`WALSHIP_S3_URL must look like s3://bucket/prefix (got ${s3Url.href})`);
}
const endpoint = process.env.AWS_ENDPOINT_URL_S3 || undefined;
const region = process.env.AWS_REGION || undefined;
const table = process.env.WALSHIP_LEASE_TABLE || undefined;

const dbPath = process.env.DB_PATH ?? './data/notes.db';
mkdirSync(dirname(dbPath), { recursive: true });
const db = await openReplicated(dbPath, {
  s3: {
    bucket: s3Url.hostname,
    prefix: s3Url.pathname.slice(1).replace(/\/+$/, ''),
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
  },
  lease: table ? { table } : false,
});
db.exec('CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL)');
const insert = db.prepare('INSERT INTO notes(body, created_at) VALUES (?, ?) RETURNING id, body, created_at');
const byId = db.prepare('SELECT id, body, created_at FROM notes WHERE id = ?');
const recent = db.prepare('SELECT id, body, created_at FROM notes ORDER BY id DESC LIMIT 100');

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'POST' && url.pathname === '/notes') {
    const input = JSON.parse(await readBody(req, 64 * 1024));
    if (typeof input?.body !== 'string') return send(res, 400, { error: 'body must be a string' });
    const row = insert.get(input.body, new Date().toISOString());
    const { txid } = await db.flush(); // durable in S3 before we answer
    return send(res, 201, { ...row, txid });
  }
  const one = /^\/notes\/(\d+)$/.exec(url.pathname);
  if (req.method === 'GET' && one) {
    const row = byId.get(Number(one[1]));
    return row ? send(res, 200, row) : send(res, 404, { error: 'no such note' });
  }
  if (req.method === 'GET' && url.pathname === '/notes') return send(res, 200, recent.all());
  if (req.method === 'GET' && url.pathname === '/status') return send(res, 200, db.status());
  if (req.method === 'GET' && url.pathname === '/metrics') {
    // Prometheus text format; scrape it from a port your users cannot reach, or put it behind auth.
    const text = await db.metrics();
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
    return res.end(text);
  }
  return send(res, 404, { error: 'not found' });
}

const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    const status = e instanceof SyntaxError ? 400 : e?.code === 'ERR_BODY_TOO_LARGE' ? 413 : 500;
    if (status === 500) log('error', 'request failed', { code: e?.code, message: e?.message });
    if (!res.headersSent) send(res, status, { error: status === 500 ? 'internal error' : e.message });
  });
});
server.listen(Number(process.env.PORT ?? 8080), () => log('info', 'listening', { port: server.address().port }));

let stopping = false;
async function shutdown(signal) {
  if (stopping) {
    log('warn', 'second signal: exiting without a clean close', { signal });
    process.exit(1);
  }
  stopping = true;
  log('info', 'shutting down', { signal });
  // Stop accepting, let open requests finish, then flush what is committed and close.
  await new Promise((resolve) => {
    server.close(resolve);
    server.closeIdleConnections();
  });
  await db.close();
  log('info', 'closed', { durableTxid: db.status().durableTxid });
}
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    shutdown(signal).then(
      () => process.exit(0),
      (e) => {
        log('error', 'close failed: rows committed since the last flush may not be in S3', { code: e?.code, message: e?.message });
        process.exit(1);
      },
    );
  });
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        req.destroy();
        reject(Object.assign(new Error(`request body over ${limit} bytes`), { code: 'ERR_BODY_TOO_LARGE' }));
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function log(level, msg, fields = {}) {
  process.stdout.write(JSON.stringify({ level, msg, ...fields }) + '\n');
}

function required(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is required`);
  return v;
}

function fail(message) {
  log('error', message);
  process.exit(2);
}
