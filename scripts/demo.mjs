#!/usr/bin/env node
// The quick-start job for what walship has today: write through the replicating VFS, capture every
// committed transaction, rebuild the database from the captured transactions alone, and prove the
// rebuilt file equal to the source byte for byte. (Shipping to S3 arrives with the shipper package.)
import { mkdtempSync, openSync, writeSync, ftruncateSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../packages/vfs/dist/index.js';

const seconds = Number(process.argv[2] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'walship-demo-'));
const source = join(dir, 'app.db');
const rebuilt = join(dir, 'rebuilt.db');
closeSync(openSync(rebuilt, 'w'));
const rebuiltFd = openSync(rebuilt, 'r+');
let txns = 0;
let pages = 0;
let bytes = 0;

const db = await openDatabase(source, {
  onCommit(txn) {
    // A stand-in for the shipper: apply each transaction to another file as it arrives.
    for (const p of txn.pages) writeSync(rebuiltFd, p.data, 0, p.data.length, (p.pgno - 1) * txn.pageSize);
    ftruncateSync(rebuiltFd, txn.commitSize * txn.pageSize);
    txns++;
    pages += txn.pages.length;
    bytes += txn.pages.length * txn.pageSize;
  },
});
db.exec('CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer TEXT, total REAL, note BLOB)');
const insert = db.prepare('INSERT INTO orders(customer, total, note) VALUES (?, ?, randomblob(?))');
const update = db.prepare('UPDATE orders SET total = total * 1.1 WHERE id = ?');
const started = performance.now();
let last = started;
let committed = 0;
console.log(`walship demo: writing to ${source} for ${seconds}s through the replicating VFS`);
while (performance.now() - started < seconds * 1000) {
  if (committed % 50 === 49) {
    db.transaction(() => {
      for (let i = 0; i < 200; i++) insert.run(`customer-${i}`, i * 1.5, 64);
    })();
  } else if (committed % 7 === 3) {
    update.run(1 + (committed % 100));
  } else {
    insert.run(`customer-${committed}`, committed / 3, 100);
  }
  committed++;
  if (committed % 2000 === 0) {
    db.acknowledge(db.txid); // the demo's "sink" applied everything synchronously
    db.checkpoint();
  }
  const now = performance.now();
  if (now - last > 500) {
    last = now;
    const mb = (bytes / 1048576).toFixed(1);
    process.stdout.write(`\r  txid ${db.txid}  captured ${txns} transactions, ${pages} pages, ${mb} MiB  (${Math.round(committed / ((now - started) / 1000))} commits/s)   `);
  }
}
db.acknowledge(db.txid);
db.checkpoint();
const rows = db.prepare('SELECT count(*) FROM orders').pluck().get();
db.close();
closeSync(rebuiltFd);
process.stdout.write('\n');
const digest = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');
const a = digest(source);
const b = digest(rebuilt);
console.log(`  source   ${a}  (${rows} rows, last txid ${txns})`);
console.log(`  rebuilt  ${b}  (from ${txns} captured transactions only)`);
if (a !== b) {
  console.error('FAIL: the database rebuilt from captured transactions differs from the source');
  process.exit(1);
}
console.log('OK: the rebuilt database is byte-identical to the source.');
rmSync(dir, { recursive: true, force: true });
