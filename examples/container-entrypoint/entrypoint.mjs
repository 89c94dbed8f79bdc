// Container entrypoint: restore the database from S3 when its file is missing (a new or replaced
// container), then start the app in this same process, so signals reach the app directly.
//
//   WALSHIP_S3_URL=s3://my-bucket/prod/notes DB_PATH=/data/notes.db node entrypoint.mjs ./server.mjs
//
// A replica that does not exist yet (the very first boot) is not an error: the app starts on an
// empty database and its first commit creates the replica. Any other restore error stops the
// container with exit status 1 rather than starting on an empty database beside a replica that
// could not be read. Environment: as the app (WALSHIP_S3_URL, DB_PATH, AWS_*), plus WALSHIP_KEYS
// (id:base64,...) when the replica is encrypted.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { restore } from '@walship/restore';

const app = resolve(process.argv[2] ?? './server.mjs');
const dbPath = process.env.DB_PATH ?? './data/notes.db';
process.env.DB_PATH = dbPath;
if (!process.env.WALSHIP_S3_URL?.startsWith('s3://')) {
  log('error', 'WALSHIP_S3_URL must look like s3://bucket/prefix');
  process.exit(2);
}
const s3Url = new URL(process.env.WALSHIP_S3_URL);
const endpoint = process.env.AWS_ENDPOINT_URL_S3 || undefined;
const region = process.env.AWS_REGION || undefined;
const keys = (process.env.WALSHIP_KEYS || '')
  .split(',')
  .filter((part) => part.includes(':'))
  .map((part) => ({ id: part.slice(0, part.indexOf(':')), key: part.slice(part.indexOf(':') + 1) }));

if (existsSync(dbPath)) {
  log('info', 'database present: no restore', { path: dbPath });
} else {
  try {
    const r = await restore({
      s3: {
        bucket: s3Url.hostname,
        prefix: s3Url.pathname.slice(1).replace(/\/+$/, ''),
        ...(endpoint ? { endpoint } : {}),
        ...(region ? { region } : {}),
      },
      ...(keys.length > 0 ? { keys } : {}),
      path: dbPath,
    });
    log('info', 'restored', { path: r.path, txid: r.txid, generation: r.generation, objects: r.objects, bytes: r.bytes, ms: Math.round(r.durationMs) });
  } catch (e) {
    if (e?.code !== 'ERR_NO_REPLICA') {
      log('error', 'restore failed: not starting', { code: e?.code, message: e?.message });
      process.exit(1);
    }
    log('info', 'no replica yet: starting on a new database', { path: dbPath });
  }
}
await import(pathToFileURL(app).href);

function log(level, msg, fields = {}) {
  process.stdout.write(JSON.stringify({ level, msg, ...fields }) + '\n');
}
