// The node-http example on Deno.serve: a JSON service whose SQLite database walship replicates to S3.
//
//   deno run --node-modules-dir=manual --allow-env --allow-sys=hostname,osRelease \
//     --allow-net --allow-read --allow-write main.ts
//
// (README.md lists the narrow form of each permission.) Environment: as in ../node-http/server.mjs
// (WALSHIP_S3_URL, DB_PATH, PORT, WALSHIP_LEASE_TABLE, AWS_*).
import { openReplicated } from '@walship/shipper';

const s3Url = new URL(required('WALSHIP_S3_URL'));
if (s3Url.protocol !== 's3:' || s3Url.hostname === '' || s3Url.pathname.length < 2) {
  fail(`WALSHIP_S3_URL must look like s3://bucket/prefix (got ${s3Url.href})`);
}
const endpoint = Deno.env.get('AWS_ENDPOINT_URL_S3') || undefined;
const region = Deno.env.get('AWS_REGION') || undefined;
const table = Deno.env.get('WALSHIP_LEASE_TABLE') || undefined;

const dbPath = Deno.env.get('DB_PATH') ?? './data/notes.db';
Deno.mkdirSync(dbPath.replace(/[^/]*$/, '') || '.', { recursive: true });
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

async function handle(req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (req.method === 'POST' && url.pathname === '/notes') {
    const text = await req.text();
    if (text.length > 64 * 1024) return Response.json({ error: 'request body over 64 KiB' }, { status: 413 });
    let input: { body?: unknown };
    try {
      input = JSON.parse(text);
    } catch (e) {
      return Response.json({ error: (e as Error).message }, { status: 400 });
    }
    if (typeof input?.body !== 'string') return Response.json({ error: 'body must be a string' }, { status: 400 });
    const row = insert.get(input.body, new Date().toISOString()) as Record<string, unknown>;
    const { txid } = await db.flush(); // durable in S3 before we answer
    return Response.json({ ...row, txid }, { status: 201 });
  }
  const one = /^\/notes\/(\d+)$/.exec(url.pathname);
  if (req.method === 'GET' && one) {
    const row = byId.get(Number(one[1]));
    return row ? Response.json(row) : Response.json({ error: 'no such note' }, { status: 404 });
  }
  if (req.method === 'GET' && url.pathname === '/notes') return Response.json(recent.all());
  if (req.method === 'GET' && url.pathname === '/status') return Response.json(db.status());
  // Prometheus text format; scrape it from a port your users cannot reach, or put it behind auth.
  if (req.method === 'GET' && url.pathname === '/metrics') return new Response(await db.metrics(), { headers: { 'content-type': 'text/plain; version=0.0.4' } });
  return Response.json({ error: 'not found' }, { status: 404 });
}

const server = Deno.serve(
  {
    hostname: Deno.env.get('HOST') ?? '0.0.0.0',
    port: Number(Deno.env.get('PORT') ?? 8080),
    onListen: ({ port }) => log('info', 'listening', { port }),
  },
  async (req) => {
    try {
      return await handle(req);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      log('error', 'request failed', { code: err.code, message: err.message });
      return Response.json({ error: 'internal error' }, { status: 500 });
    }
  },
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    log('warn', 'second signal: exiting without a clean close', { signal });
    Deno.exit(1);
  }
  stopping = true;
  log('info', 'shutting down', { signal });
  await server.shutdown(); // stop accepting, let open requests finish
  await db.close(); // flush what is committed, checkpoint, release the lease
  log('info', 'closed', { durableTxid: db.status().durableTxid });
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  Deno.addSignalListener(signal, () => {
    shutdown(signal).then(
      () => Deno.exit(0),
      (e) => {
        log('error', 'close failed: rows committed since the last flush may not be in S3', { code: e?.code, message: e?.message });
        Deno.exit(1);
      },
    );
  });
}

function log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ level, msg, ...fields }));
}

function required(name: string): string {
  const v = Deno.env.get(name);
  if (!v) fail(`${name} is required`);
  return v;
}

function fail(message: string): never {
  log('error', message);
  Deno.exit(2);
}
