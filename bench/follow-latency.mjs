#!/usr/bin/env node
// walship follow latency: how long after a segment arrives in S3 (the writer's flush() resolved)
// `follow` has applied it (onApply fired), on s3rver over loopback. See bench/README.md.
//
//   cd /work/main && npx tsc -b && node bench/follow-latency.mjs        prints a table (not saved)
// Options: --commits N (per configuration, default 30)   --intervals 1000,100 (follow's intervalMs)
//          --active 50,0 (follow's activeIntervalMs; 0: off)   --sizes-mib 1,64 (replica file sizes)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomFillSync } from 'node:crypto';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const imp = (p) => import(pathToFileURL(join(repo, p)).href);
const shipper = await imp('packages/shipper/dist/index.js');
const restoreLib = await imp('packages/restore/dist/index.js');
const servers = await imp('test/dist/servers/index.js');

const opt = { commits: 30, intervals: [1000, 100], actives: [50, 0], sizes: [1, 64] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const list = () => String(argv[++i]).split(',').map(Number);
  if (argv[i] === '--commits') opt.commits = Number(argv[++i]);
  else if (argv[i] === '--intervals') opt.intervals = list();
  else if (argv[i] === '--sizes-mib') opt.sizes = list();
  else if (argv[i] === '--active') opt.actives = list();
  else throw new Error(`unknown argument ${argv[i]}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

const s3 = await servers.startS3rver();
const dir = mkdtempSync(join(tmpdir(), 'walship-follow-lat-'));
const location = (prefix) => ({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
const rows = [];
console.log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
try {
  for (const mib of opt.sizes) {
    for (const intervalMs of opt.intervals) for (const activeIntervalMs of opt.actives) {
      const name = `${mib}-${intervalMs}-${activeIntervalMs}`;
      const prefix = `follow-lat/${name}-${process.pid}`;
      const db = await shipper.openReplicated(join(dir, `w-${name}.db`), { lease: false, logLevel: 'silent', compaction: false, batchWindowMs: 0, snapshotIntervalMs: 0, s3: location(prefix) });
      db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
      const blob = new Uint8Array(4000);
      const insert = db.prepare('INSERT INTO t(b) VALUES (?)');
      for (let written = 0; written < mib * 2 ** 20; written += 500 * blob.length) {
        db.transaction(() => {
          for (let i = 0; i < 500; i++) insert.run(randomFillSync(blob));
        })();
      }
      await db.flush();
      const applied = new Map();
      const follower = await restoreLib.follow({ s3: location(prefix), path: join(dir, `r-${name}.db`), intervalMs, activeIntervalMs, onApply: (e) => applied.set(e.txid, now()) });
      while (follower.status().txid < db.txid) await sleep(5);
      const lat = [];
      for (let c = 0; c < opt.commits; c++) {
        // A commit at a random point of the poll cycle.
        await sleep(Math.random() * intervalMs);
        insert.run(randomFillSync(new Uint8Array(100)));
        await db.flush();
        const arrived = now();
        const txid = db.txid;
        while (follower.status().txid < txid) await sleep(1);
        lat.push((applied.get(follower.status().txid) ?? now()) - arrived);
      }
      await follower.stop();
      await db.close();
      rows.push({ mib, intervalMs, activeIntervalMs, med: pct(lat, 50), p90: pct(lat, 90), max: Math.max(...lat), gets: follower.status().requests?.get });
      console.log(`size ${mib} MiB, intervalMs ${intervalMs}, activeIntervalMs ${activeIntervalMs}: median ${pct(lat, 50).toFixed(0)} ms, p90 ${pct(lat, 90).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms (${opt.commits} commits)`);
    }
  }
} finally {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log('');
console.log('| replica size | intervalMs | activeIntervalMs | median, ms | p90, ms | max, ms | GETs |');
console.log('|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.mib} MiB | ${r.intervalMs} | ${r.activeIntervalMs} | ${r.med.toFixed(0)} | ${r.p90.toFixed(0)} | ${r.max.toFixed(0)} | ${r.gets} |`);
console.log(`load average at end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
