// `walship demo`: the quick-start job. Starts a local S3 server and DynamoDB on loopback, writes through the
// replicating VFS with live progress, restores a fresh node from the bucket (latest, and one point
// in time), and proves the restored database equal to the source.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openReplicated, type ReplicatedDatabase } from '@walship/shipper';
import { restore } from '@walship/restore';
import { openDatabase } from '@walship/vfs';
import { createLeaseTable } from '@walship/lease';
import { startDynalite, startS3rver } from '@walship/test/servers';

export interface DemoOptions {
  /** How long to write (default 10 s). */
  seconds?: number;
  /** Keep the temp directory (databases) instead of removing it. */
  keep?: boolean;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
}

export interface DemoResult {
  ok: boolean;
  committedTxid: number;
  restoredTxid: number;
  objects: number;
  bytesShipped: number;
  puts: number;
}

const fmtBytes = (n: number): string => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const seconds = options.seconds ?? 10;
  const out = options.out ?? process.stdout;
  const err = options.err ?? process.stderr;
  const say = (line: string): void => void out.write(`${line}\n`);
  const tty = (err as NodeJS.WriteStream).isTTY === true;
  const dir = mkdtempSync(join(tmpdir(), 'walship-demo-'));
  say('walship demo');
  say('  starting a local S3 server (s3rver) and DynamoDB (dynalite) on loopback ...');
  const [server, dynamo] = await Promise.all([startS3rver({ bucket: 'walship-demo' }), startDynalite()]);
  const dc = dynamo.dynamoClientConfig();
  const lease = {
    table: 'walship-leases',
    endpoint: dc.endpoint as string,
    region: dc.region as string,
    credentials: dc.credentials as { accessKeyId: string; secretAccessKey: string },
  };
  let puts = 0;
  let bytesShipped = 0;
  const s3 = {
    bucket: server.bucket,
    prefix: 'demo/orders',
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  };
  try {
    say(`  S3 endpoint ${server.endpoint}, replica s3://${s3.bucket}/${s3.prefix}`);
    await createLeaseTable({ table: lease.table, endpoint: lease.endpoint, region: lease.region, credentials: lease.credentials });
    say(`  DynamoDB endpoint ${lease.endpoint}, lease table ${lease.table}`);
    const source = join(dir, 'app.db');
    const db: ReplicatedDatabase = await openReplicated(source, {
      lease,
      s3,
      batchWindowMs: 200,
      logLevel: 'error',
      onRequest: (e) => {
        if (e.operation === 'put' || e.operation === 'multipart') {
          puts++;
          bytesShipped += e.bytes;
        }
      },
    });
    const held = db.status().lease;
    say(`  writer lease held: epoch ${held.mode === 'dynamodb' ? held.epoch : '-'}`);
    say(`  writing to ${source} for ${seconds}s (batch window 200 ms) ...`);
    db.exec('CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total INTEGER NOT NULL, note TEXT)');
    const insert = db.prepare('INSERT INTO orders(customer, total, note) VALUES (?, ?, ?)');
    const update = db.prepare('UPDATE orders SET total = total + 1 WHERE id = ?');
    const started = performance.now();
    let lastPrint = 0;
    let committed = 0;
    let midTxid = 0;
    let midCount = 0;
    while (performance.now() - started < seconds * 1000) {
      if (committed % 40 === 39) {
        db.transaction(() => {
          for (let i = 0; i < 50; i++) insert.run(`customer-${i}`, i, 'x'.repeat(200));
        })();
      } else if (committed % 5 === 2) {
        update.run(1 + (committed % 100));
      } else {
        insert.run(`customer-${committed}`, committed, `order ${committed}`);
      }
      committed++;
      if (!midTxid && performance.now() - started > (seconds * 1000) / 2) {
        midTxid = db.txid;
        midCount = db.prepare('SELECT count(*) FROM orders').pluck().get() as number;
      }
      if (committed % 20 === 0) await new Promise((r) => setImmediate(r));
      const now = performance.now();
      if (now - lastPrint > 250) {
        lastPrint = now;
        const st = db.status();
        const line = `  txid ${st.committedTxid}  durable ${st.durableTxid}  lag ${st.lagMs} ms  shipped ${fmtBytes(bytesShipped)} in ${puts} PUTs`;
        if (tty) err.write(`\r${line.padEnd(90)}`);
        else if (Math.floor((now - started) / 1000) !== Math.floor((lastPrint - 250 - started) / 1000)) say(line);
      }
    }
    if (tty) err.write('\n');
    const committedTxid = db.txid;
    const rows = db.prepare('SELECT count(*) FROM orders').pluck().get() as number;
    const flushed = await db.flush();
    say(`  committed ${committed} transactions (txid ${committedTxid}, ${rows} orders); flush() -> durable txid ${flushed.txid}`);
    const st = db.status();
    say(`  S3 requests: ${puts} PUTs, ${fmtBytes(bytesShipped)} shipped; projected cost at this rate $${st.requests.projectedMonthlyUsd.toFixed(2)}/month`);
    await db.close();

    say('  restoring a fresh node from the bucket ...');
    const restoredPath = join(dir, 'restored.db');
    const r = await restore({ s3, path: restoredPath });
    say(`  restored txid ${r.txid} from ${r.objects} objects (${fmtBytes(r.bytes)}) in ${r.durationMs.toFixed(0)} ms`);
    const same = readFileSync(restoredPath).equals(readFileSync(source));
    const check = await openDatabase(restoredPath, { capture: false, create: false });
    const integrity = check.pragma('integrity_check', { simple: true });
    const restoredRows = check.prepare('SELECT count(*) FROM orders').pluck().get() as number;
    check.close();
    say(`  restored file byte-identical to the source: ${same ? 'yes' : 'NO'}; integrity_check: ${String(integrity)}; orders: ${restoredRows}`);

    const pitrPath = join(dir, 'pitr.db');
    const p = await restore({ s3, path: pitrPath, txid: midTxid });
    const pitr = await openDatabase(pitrPath, { capture: false, create: false });
    const pitrRows = pitr.prepare('SELECT count(*) FROM orders').pluck().get() as number;
    pitr.close();
    say(`  point in time: restored txid ${p.txid} (mid-run): ${pitrRows} orders, the source had ${midCount} then`);
    const ok = same && integrity === 'ok' && restoredRows === rows && p.txid === midTxid && pitrRows === midCount && r.txid >= committedTxid;
    say(ok ? 'walship demo: OK — the restored node equals the source' : 'walship demo: FAILED — see above');
    return { ok, committedTxid, restoredTxid: r.txid, objects: r.objects, bytesShipped, puts };
  } finally {
    await Promise.all([server.stop(), dynamo.stop()]);
    if (options.keep) say(`  files kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
