#!/usr/bin/env node
// walship instant replica benchmark: openReplica straight from a replica on s3rver (loopback), per
// page size: open + first primary-key lookup (time, GETs), a second lookup, and a full-table scan
// (hydration) against a raw parallel download of the same objects. See bench/README.md.
//
//   cd /work/main && npx tsc -b && node bench/replica.mjs           256 MiB database, page sizes 4096 and 65536
//   node bench/replica.mjs --size-mib 1024 --page-sizes 4096        the issue's size, one page size
// Options: --size-mib N (default 256)   --page-sizes A,B (default 4096,65536)   --cache-mib N
//          (openReplica's cacheBytes, default 64)   --lookups N (random lookups after the first, default 20)
//          --reps N (full scans and raw downloads, alternating, default 3; medians compared)
//          --profile DIR (one more scan per page size under the V8 profiler: DIR/scan-<page size>.cpuprofile)
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { profiled } from './lib.mjs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomFillSync } from 'node:crypto';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const imp = (p) => import(pathToFileURL(join(repo, p)).href);
// The restore package's modules (and through them the AWS SDK and the format's WASM loaders) load
// first, timed: a process that opens a replica pays this once, before openReplica is called.
const tImport = performance.now();
const restoreLib = await imp('packages/restore/dist/index.js');
const importMs = performance.now() - tImport;
const vfs = await imp('packages/vfs/dist/index.js');
const shipper = await imp('packages/shipper/dist/index.js');
const storageLib = await imp('packages/storage/dist/index.js');
const servers = await imp('test/dist/servers/index.js');

function parse(argv) {
  const a = { sizeMiB: 256, pageSizes: [4096, 65536], cacheMiB: 64, lookups: 20, reps: 3, profile: null };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i];
    switch (argv[i]) {
      case '--size-mib': a.sizeMiB = Number(v()); break;
      case '--page-sizes': a.pageSizes = v().split(',').map(Number); break;
      case '--cache-mib': a.cacheMiB = Number(v()); break;
      case '--lookups': a.lookups = Number(v()); break;
      case '--reps': a.reps = Number(v()); break;
      case '--profile': a.profile = v(); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}
const args = parse(process.argv.slice(2));
const log = (...m) => process.stderr.write(`${m.join(' ')}\n`);
const now = () => performance.now();
const MiB = 1024 * 1024;
const f = (n, d = 0) => (n === null ? '-' : n.toFixed(d));

const s3 = await servers.startS3rver();
const dir = mkdtempSync(join(tmpdir(), 'walship-bench-replica-'));
const location = (prefix) => ({
  bucket: s3.bucket,
  prefix,
  endpoint: s3.endpoint,
  region: s3.region,
  forcePathStyle: true,
  credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
});

/** A table of ~1000-byte random blobs written locally until the file reaches the size, then replicated (one generation snapshot). */
async function build(pageSize) {
  const prefix = `bench/replica-${pageSize}-${process.pid}`;
  const file = join(dir, `db-${pageSize}.db`);
  const db = await vfs.openDatabase(file, { pageSize, synchronous: 'OFF', capture: false });
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
  const st = db.prepare('INSERT INTO t(b) VALUES (?)');
  const pool = new Uint8Array(2000 * 1000);
  let rows = 0;
  const t0 = now();
  for (;;) {
    randomFillSync(pool);
    db.exec('BEGIN');
    for (let i = 0; i < 2000; i++) st.run(pool.subarray(i * 1000, i * 1000 + 1000));
    db.exec('COMMIT');
    rows += 2000;
    if (db.pragma('page_count', { simple: true }) * pageSize >= args.sizeMiB * MiB) break;
  }
  db.close();
  const bytes = statSync(file).size;
  log(`[${pageSize}] local file ${(bytes / MiB).toFixed(0)} MiB, ${rows} rows, ${((now() - t0) / 1000).toFixed(1)} s; replicating`);
  const t1 = now();
  const rdb = await shipper.openReplicated(file, { lease: false, logLevel: 'silent', compaction: false, snapshotIntervalMs: 0, s3: location(prefix) });
  await rdb.flush();
  await rdb.close({ timeoutMs: 600_000 });
  log(`[${pageSize}] snapshot shipped in ${((now() - t1) / 1000).toFixed(1)} s`);
  rmSync(file, { force: true });
  return { prefix, rows, bytes };
}

/** The objects of the latest plan downloaded whole, 8 ranged 8 MiB pieces at a time (restore's raw path). */
async function rawDownload(prefix) {
  const p = await restoreLib.plan({ s3: location(prefix) });
  const storage = storageLib.createS3Storage({ ...location(prefix) });
  const pieces = [];
  for (const o of p.objects) for (let s = 0; s < o.size; s += 8 * MiB) pieces.push({ key: o.key, start: s, end: Math.min(o.size, s + 8 * MiB) - 1 });
  const t0 = now();
  let bytes = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < pieces.length) {
        const r = pieces[next++];
        const got = await storage.get(r.key, { range: { start: r.start, end: r.end } });
        bytes += got.length;
      }
    }),
  );
  const ms = now() - t0;
  storage.destroy();
  return { ms, bytes, objects: p.objects.length };
}

/** One full-table scan on a fresh replica: wall time, GETs and bytes fetched. */
async function scan(options, rows) {
  const db = await restoreLib.openReplica(options);
  try {
    const s0 = db.status();
    const t1 = now();
    const sum = db.prepare('SELECT count(*) AS n, sum(length(b)) AS bytes FROM t').get();
    const ms = now() - t1;
    const s1 = db.status();
    if (sum.n !== rows) throw new Error(`scan counted ${sum.n} rows of ${rows}`);
    return { ms, gets: s1.gets - s0.gets, bytes: s1.bytes - s0.bytes, readWaitMs: s1.readWaitMs - s0.readWaitMs };
  } finally {
    db.close();
  }
}

function median(xs, key) {
  const sorted = [...xs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** One more scan under the V8 profiler (this thread: SQLite, the VFS and the decoder); the profile goes to args.profile. */
async function profileScan(options, rows, pageSize) {
  const { result: r, profile } = await profiled(() => scan(options, rows));
  mkdirSync(args.profile, { recursive: true });
  writeFileSync(join(args.profile, `scan-${pageSize}.cpuprofile`), JSON.stringify(profile));
  log(`[${pageSize}] profiled scan: ${f(r.ms / 1000, 2)} s, of which waiting for GETs ${f(r.readWaitMs / 1000, 2)} s; ${join(args.profile, `scan-${pageSize}.cpuprofile`)}`);
}

const results = [];
for (const pageSize of args.pageSizes) {
  const b = await build(pageSize);
  const options = { s3: location(b.prefix), cacheBytes: args.cacheMiB * MiB };
  // (a) open + first primary-key lookup, then more random lookups on the same replica
  const t0 = now();
  const db = await restoreLib.openReplica(options);
  const opened = db.status();
  const tOpen = now() - t0;
  const lookup = db.prepare('SELECT length(b) AS n FROM t WHERE id = ?');
  const first = lookup.get(1 + Math.floor(Math.random() * b.rows));
  const tFirst = now() - t0;
  const afterFirst = db.status();
  const t = afterFirst.openTimings;
  const breakdown = {
    list: t.listed,
    plan: t.planned - t.listed,
    indexes: t.indexed - t.planned,
    firstPage: t.firstPage - t.indexed,
    sqliteOpen: t.opened - t.firstPage,
    fetchThreadReady: t.fetchThreadReady,
    lookupAfterOpen: tFirst - tOpen,
    lookupWaitingForGets: afterFirst.readWaitMs,
  };
  for (let i = 0; i < args.lookups; i++) lookup.get(1 + Math.floor(Math.random() * b.rows));
  const afterLookups = db.status();
  db.close();
  if (first?.n !== 1000) throw new Error(`lookup returned ${JSON.stringify(first)}`);
  // (b) full scan on a fresh replica vs the raw download of the same objects, args.reps times
  // alternating; the medians are compared (one scan and one download each swung 0.71-0.86 apart).
  const scans = [];
  const raws = [];
  for (let rep = 0; rep < args.reps; rep++) {
    scans.push(await scan(options, b.rows));
    raws.push(await rawDownload(b.prefix));
    log(`[${pageSize}] rep ${rep + 1}: scan ${f(scans.at(-1).ms / 1000, 2)} s, raw ${f(raws.at(-1).ms / 1000, 2)} s`);
  }
  if (args.profile) await profileScan(options, b.rows, pageSize);
  const scanMid = median(scans, (x) => x.ms);
  const raw = median(raws, (x) => x.ms);
  const tScan = scanMid.ms;
  const scanBytes = scanMid.bytes;
  const s1 = { gets: scanMid.gets };
  const s0 = { gets: 0 };
  const r = {
    pageSize,
    dbMiB: b.bytes / MiB,
    rows: b.rows,
    openMs: tOpen,
    openGets: opened.gets,
    firstLookupMs: tFirst,
    firstLookupGets: afterFirst.gets,
    firstLookupBytes: afterFirst.bytes,
    breakdown,
    lookupsGets: afterLookups.gets - afterFirst.gets,
    scanMs: tScan,
    scanGets: s1.gets - s0.gets,
    scanMiBps: scanBytes / MiB / (tScan / 1000),
    rawMs: raw.ms,
    rawMiBps: raw.bytes / MiB / (raw.ms / 1000),
    objects: raw.objects,
    scanSeconds: scans.map((x) => x.ms / 1000),
    rawSeconds: raws.map((x) => x.ms / 1000),
  };
  r.ratio = r.scanMiBps / r.rawMiBps;
  results.push(r);
  log(`[${pageSize}] ${JSON.stringify(r)}`);
}

const out = [
  `walship instant replica bench: ${new Date().toISOString()}, node ${process.version}, ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}, s3rver on loopback, cacheBytes ${args.cacheMiB} MiB, zstd, no encryption`,
  '',
  '| page size | database | objects | open: ms (GETs) | open + first PK lookup: ms | GETs (bytes) to first row | next ' + args.lookups + ' random lookups: GETs | full scan: s, MiB/s of objects | raw download: s, MiB/s | scan / raw |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map(
    (r) =>
      `| ${r.pageSize} | ${f(r.dbMiB)} MiB, ${r.rows} rows | ${r.objects} | ${f(r.openMs)} (${r.openGets}) | ${f(r.firstLookupMs)} | ${r.firstLookupGets} (${f(r.firstLookupBytes / 1024)} KiB) | ${r.lookupsGets} | ${f(r.scanMs / 1000, 2)}, ${f(r.scanMiBps)} (${r.scanGets} GETs) | ${f(r.rawMs / 1000, 2)}, ${f(r.rawMiBps)} | ${f(r.ratio, 2)} |`,
  ),
  '',
  `Open + first lookup, where the time went (ms from openReplica's call; the restore package's modules loaded before it, once per process: ${f(importMs)} ms):`,
  '',
  '| page size | LIST + generation files | plan (headers) | indexes | page 1 chunk | SQLite open | fetch thread ready at | lookup after open | of which waiting for GETs |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map(({ pageSize, breakdown: b }) => `| ${pageSize} | ${f(b.list)} | ${f(b.plan)} | ${f(b.indexes)} | ${f(b.firstPage)} | ${f(b.sqliteOpen)} | ${f(b.fetchThreadReady)} | ${f(b.lookupAfterOpen)} | ${f(b.lookupWaitingForGets)} |`),
];
process.stdout.write(`${out.join('\n')}\n`);
await s3.stop();
rmSync(dir, { recursive: true, force: true });
