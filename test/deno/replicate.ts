// Deno 2 replication smoke test for the BUILT @walship/shipper (packages/shipper/dist): writes
// through openReplicated to an s3rver that scripts/test-deno.mjs started on loopback, flushes,
// reopens (the lineage must continue), and leaves the database for the script, which then rebuilds
// it from the bucket in Node and compares bytes.
//
// Permissions (set by scripts/test-deno.mjs for this file only): --allow-net to the s3rver port,
// --allow-env (the AWS SDK reads its configuration from the environment when it loads),
// --allow-sys=hostname,osRelease (the epoch marker names the writer's host; the SDK's user agent names the OS release), read+write on the temp dir, and
// read on sqlite3.wasm and zstd.wasm.
import * as shipper from '../../packages/shipper/dist/index.js';

// Deno infers types from the dist .js files (it does not read the sibling .d.ts), so the shape used
// here is declared.
interface Statement {
  run(...values: unknown[]): unknown;
}
interface Replicated {
  txid: number;
  exec(sql: string): void;
  prepare(sql: string): Statement;
  flush(): Promise<{ txid: number }>;
  status(): { generation: string | null; epoch: number; encoder: { thread: string; failure: { code: string } | null } };
  close(): Promise<void>;
}
const openReplicated = (shipper as unknown as { openReplicated(path: string, options: unknown): Promise<Replicated> }).openReplicated;

const tmp = Deno.env.get('WALSHIP_DENO_TMP')!;
const s3 = JSON.parse(Deno.env.get('WALSHIP_DENO_S3')!) as {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  prefix: string;
};

function options() {
  return {
    lease: false,
    s3: {
      bucket: s3.bucket,
      prefix: s3.prefix,
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
    batchWindowMs: 20,
    logLevel: 'silent' as const,
  };
}

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

Deno.test('openReplicated ships to S3 on Deno, and a reopen continues the lineage', async () => {
  const path = `${tmp}/replicated.db`;
  let db = await openReplicated(path, options());
  assert(db.status().encoder.thread === 'worker' && db.status().encoder.failure === null, `segments are encoded in the worker thread (${JSON.stringify(db.status().encoder)})`);
  db.exec('CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)');
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  for (let i = 0; i < 200; i++) ins.run(`row ${i} `.repeat(1 + (i % 40)));
  const committed = db.txid;
  const { txid } = await db.flush();
  assert(txid >= committed, `flush covers the commits before it (${txid} >= ${committed})`);
  const generation = db.status().generation;
  await db.close();
  db = await openReplicated(path, options());
  assert(db.status().generation === generation, 'same generation after reopen');
  assert(db.status().epoch === 2, `next epoch (${db.status().epoch})`);
  const again = db.prepare("INSERT INTO t(v) VALUES (?)");
  for (let i = 0; i < 50; i++) again.run(`again ${i}`);
  await db.close();
  await Deno.writeTextFile(`${tmp}/replicated.done`, path);
});

Deno.test('an encoder worker that cannot start fails the open with ERR_SHIPPER_WORKER_START_FAILED', async () => {
  const workerUrl = new URL('../../packages/shipper/dist/no-such-worker.js', import.meta.url);
  const failed = await openReplicated(`${tmp}/no-worker.db`, { ...options(), encoder: { workerUrl } }).then(
    () => null,
    (e: unknown) => e as { code?: string },
  );
  assert(failed?.code === 'ERR_SHIPPER_WORKER_START_FAILED', `typed start failure (got ${String(failed)})`);
});
