#!/usr/bin/env node
// walship restore benchmark: how fast @walship/restore rebuilds a database from its replica
// (s3rver on loopback). See bench/README.md for what every number means.
//
//   cd /work/main && npx tsc -b && node bench/restore.mjs   full run, writes bench/results/restore-<date>.txt
//   node bench/restore.mjs --quick                         128 MiB database, 500 segments; writes restore-<date>-quick.txt
//   node bench/restore.mjs --only segments                 a filtered run (not saved unless --out FILE)
//
// Sections, in run order: size (1: restore of a large database, snapshot-sized, vs a raw parallel
//           download of the same objects), link (1b: the same over a bandwidth-limited link), segments (2: restore to a txid that needs a snapshot plus
//           thousands of small segments, at the last txid and one in the middle), compacted (3: the
//           same replica after runMaintenancePass wrote level-1 objects, restore latest before / after)
// Options: --only size,segments,compacted   --size-mib N (default 1024, --quick 128)   --segments N
//          (default 2500, --quick 500)   --reps N (timed repetitions, default 3, --quick 2)
//          --concurrency N (default 8, restore's default)   --no-save   --out FILE
//          --profile DIR: after the timed runs of (1) and (2), one more restore each under the V8
//          profiler (node:inspector, 200 us sampling; not in the tables), its .cpuprofile written to
//          DIR and summarised in the report. A run with --profile is not saved unless --out is given.
//          --baseline DIR: in (1), also time restore() imported from DIR/index.js (a copy of
//          packages/restore/dist built from another commit, kept inside packages/restore so its
//          imports resolve, e.g. packages/restore/.tmp/base-dist) in every repetition, right after
//          this build's restore: an A/B of two builds in one run. Not saved unless --out is given.
//          --link-mbit N: the bandwidth of section link (1b: section 1's replica read through a
//          bandwidth-limited TCP proxy), in Mbit/s (default 1000).
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, statSync, writeSync, readdirSync } from 'node:fs';
import { tmpdir, cpus, totalmem, release, platform, loadavg } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomFillSync } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { execFileSync } from 'node:child_process';
import { runInNewContext } from 'node:vm';
import { profiled } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

const SECTIONS = ['size', 'link', 'segments', 'compacted'];

function parseArgs(argv) {
  const a = { quick: false, only: null, save: true, out: null, sizeMiB: null, segments: null, reps: null, concurrency: 8, profile: null, baseline: null, linkMbit: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s) : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--quick': a.quick = true; break;
      case '--only': a.only = value().split(',').map((s) => (SECTIONS.includes(s.trim()) ? s.trim() : fail(`unknown section ${s}`))); break;
      case '--size-mib': a.sizeMiB = positive(value()); break;
      case '--segments': a.segments = positive(value()); break;
      case '--reps': a.reps = positive(value()); break;
      case '--concurrency': a.concurrency = positive(value()); break;
      case '--no-save': a.save = false; break;
      case '--profile': a.profile = value(); break;
      case '--baseline': a.baseline = value(); break;
      case '--link-mbit': a.linkMbit = positive(value()); break;
      case '--out': a.out = value(); break;
      case '-h':
      case '--help':
        writeSync(1, readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
        process.exit(0);
      default: fail(`unknown argument ${arg}`);
    }
  }
  return a;
}
function fail(msg) {
  throw new Error(`${msg} (see --help)`);
}
function positive(s) {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) fail(`expected a positive integer, got ${s}`);
  return n;
}

const args = parseArgs(process.argv.slice(2));
const Q = args.quick;
// A run with non-default sizes is not the benchmark: saved only with --out.
const custom = args.linkMbit !== 1000 || args.sizeMiB !== null || args.segments !== null || args.reps !== null || args.concurrency !== 8 || args.profile !== null || args.baseline !== null;

/** Every size of the run, full and --quick. */
const P = {
  sizeBytes: (args.sizeMiB ?? (Q ? 128 : 1024)) * 2 ** 20, // (1) database size to build
  blobMin: 1000, // (1) random blob per row, 1000..3000 bytes (several rows per 8 KiB page, no overflow pages)
  blobMax: 3000,
  rowsPerTxn: 5000, // (1) rows per local transaction while building
  tailCommits: 20, // (1) single-row commits through openReplicated after the snapshot (level-0 tail segments)
  segments: args.segments ?? (Q ? 500 : 2500), // (2) single-row commits, each flushed: one segment each
  reps: args.reps ?? (Q ? 2 : 3), // timed repetitions of every measured restore / download
  concurrency: args.concurrency, // restore's `concurrency` and the raw download's parallel requests
  maxPasses: 20, // (3) runMaintenancePass until a pass writes nothing, at most this many
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const PAGE_SIZE = 8192;
const CACHE_KIB = 16384; // as bench/vfs.mjs and bench/shipper.mjs

let gc = () => {};
try {
  setFlagsFromString('--expose-gc');
  gc = runInNewContext('gc');
} catch {
  // Only a little noisier without it.
}
let syncWorks = true;
/** Untimed: collect garbage and write back dirty pages (a restore leaves ~1 GiB of them). */
function quiesce() {
  gc();
  if (!syncWorks) return;
  try {
    execFileSync('sync', { stdio: 'ignore' });
  } catch {
    syncWorks = false;
  }
}

const now = () => performance.now();
/**
 * CPU time the whole machine spent busy (every process: s3rver included), in core-seconds, from
 * /proc/stat; null where there is none. Restore and the raw download share the cores with s3rver.
 */
function machineBusy() {
  try {
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const ticks = f[0] + f[1] + f[2] + f[5] + f[6]; // steal (the host running others) is not ours
    return Number.isFinite(ticks) ? ticks / 100 : null; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}
const busySince = (b0) => {
  const b1 = machineBusy();
  return b0 === null || b1 === null ? null : b1 - b0;
};
const log = (...m) => process.stderr.write(`${m.join(' ')}\n`);
const out = [];
/** A report line: printed at once (so a crash still leaves the sections done) and saved at the end. */
const emit = (line = '') => {
  out.push(line);
  process.stdout.write(`${line}\n`);
};
const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
const fmtS = (ms) => (ms / 1000).toFixed(ms >= 100_000 ? 0 : ms >= 10_000 ? 1 : 2);
const fmtMiB = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const fmtMBs = (bytes, ms) => ((bytes / 1e6) / (ms / 1000)).toFixed(1);
const fmtX = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
/** A timed run's machine CPU: core-seconds and the share of every core over its wall time. */
const busyText = (x) => (x.busy === null ? '-' : `${x.busy.toFixed(1)} (${Math.round((100 * x.busy) / (cpus().length * (x.ms / 1000)))}%)`);
const verdict = (ok) => (ok ? 'met' : 'NOT met');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, t]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up: libraries, s3rver, a temporary directory
// ---------------------------------------------------------------------------------------------

const imp = (p) => import(pathToFileURL(join(repo, p)).href);
const shipper = await imp('packages/shipper/dist/index.js');
const restoreLib = await imp('packages/restore/dist/index.js');
const baselineLib = args.baseline ? await import(pathToFileURL(join(args.baseline, 'index.js')).href) : null;
const storageLib = await imp('packages/storage/dist/index.js');
const vfs = await imp('packages/vfs/dist/index.js');
const servers = await imp('test/dist/servers/index.js');
// Restore reads an object above this size as ranged GETs of this size; the raw download splits the same way.
const { PIECE_SIZE } = await imp('packages/restore/dist/apply.js');

let s3 = null;
/** Section (1b) reads through a bandwidth-limited link: its endpoint while it runs, else null (s3rver's own). */
let via = null;
let dir = null;
let seq = 0;

function s3Location(prefix) {
  return {
    bucket: s3.bucket,
    prefix,
    endpoint: via ?? s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  };
}

/** openReplicated options: no lease (no DynamoDB), silent, no background compaction (section 3 runs it itself). */
function replicatedOptions(prefix, extra = {}) {
  return { lease: false, logLevel: 'silent', compaction: false, s3: s3Location(prefix), ...extra };
}

function newStorage(prefix) {
  const { bucket, endpoint, region, forcePathStyle, credentials } = s3Location(prefix);
  return storageLib.createS3Storage({ bucket, prefix, endpoint, region, forcePathStyle, credentials });
}

/**
 * One timed restore() into a fresh directory (deleted afterwards). Phase times come from onProgress
 * (plan: list + headers; download: fetch, decode, verify and write every object; verify: re-hash
 * the file and PRAGMA integrity_check; rename and the note), requests from onRequest.
 */
async function timedRestore(prefix, target = {}, lib = restoreLib) {
  const rdir = join(dir, `restore-${++seq}`);
  mkdirSync(rdir, { recursive: true });
  const path = join(rdir, 'restored.db');
  const marks = {};
  const req = { get: 0, list: 0, head: 0, getBytes: 0 };
  quiesce();
  const b0 = machineBusy();
  const t0 = now();
  let result;
  let ms;
  let busy;
  try {
    result = await lib.restore({
      s3: s3Location(prefix),
      path,
      concurrency: P.concurrency,
      ...target,
      onProgress: (p) => {
        if (!(p.phase in marks)) marks[p.phase] = now();
      },
      onRequest: (e) => {
        if (e.operation in req) req[e.operation]++;
        if (e.operation === 'get') req.getBytes += e.bytes;
      },
    });
  } finally {
    ms = now() - t0;
    busy = busySince(b0);
    rmSync(rdir, { recursive: true, force: true });
  }
  const at = (k) => marks[k] ?? t0 + ms;
  return {
    ms,
    busy,
    result,
    dbBytes: result.commitSize * result.pageSize,
    phases: {
      plan: at('download') - t0,
      download: at('verify') - at('download'),
      verify: at('rename') - at('verify'),
      rename: at('done') - at('rename'),
      after: t0 + ms - at('done'),
    },
    req,
  };
}

/**
 * The baseline: the plan's objects fetched with `concurrency` GETs in flight, split into ranged
 * GETs of PIECE_SIZE exactly as restore splits them (restore reads one object's pieces one after
 * another; here every piece of every object is in one queue). Bytes are counted and discarded.
 * With `recycle`, each request slot reads into one buffer of its own, reused (GetOptions.into, as
 * restore's snapshot pieces are read): no new buffer per GET, the stricter baseline.
 */
async function rawDownload(prefix, objects, concurrency, recycle = false) {
  const storage = newStorage(prefix);
  const pieces = [];
  for (const o of objects) {
    if (o.size <= PIECE_SIZE) pieces.push({ key: o.key, size: o.size });
    else for (let start = 0; start < o.size; start += PIECE_SIZE) pieces.push({ key: o.key, size: Math.min(o.size, start + PIECE_SIZE) - start, range: { start, end: Math.min(o.size, start + PIECE_SIZE) - 1 } });
  }
  quiesce();
  let next = 0;
  let bytes = 0;
  const b0 = machineBusy();
  const t0 = now();
  const worker = async () => {
    const into = recycle ? new Uint8Array(PIECE_SIZE) : undefined;
    while (next < pieces.length) {
      const p = pieces[next++];
      const b = await storage.get(p.key, { ...(p.range ? { range: p.range } : {}), ...(into ? { into } : {}) });
      if (b === null || b.length !== p.size) throw new Error(`raw download: ${p.key} ${p.range ? `range ${p.range.start}-${p.range.end} ` : ''}gave ${b?.length ?? 'nothing'}, expected ${p.size} bytes`);
      bytes += b.length;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, pieces.length) }, worker));
  } finally {
    storage.destroy?.();
  }
  const ms = now() - t0;
  return { ms, busy: busySince(b0), bytes, requests: pieces.length, concurrency, recycle };
}

async function timedPlan(prefix, target = {}) {
  const t0 = now();
  const p = await restoreLib.plan({ s3: s3Location(prefix), concurrency: P.concurrency, ...target });
  return { ms: now() - t0, plan: p };
}

/** Runs `fn` under the V8 sampling profiler of this process; returns its result and the profile. */

/**
 * Where restore's time goes: the functions that matter, inclusive (samples with the function
 * anywhere on the stack). [label, function name or null for any, file suffix or '' for native, what].
 */
const PROFILE_ROWS = [
  ['(idle)', '(idle)', '', 'main thread idle: waiting for s3rver (a child process) or the disk'],
  ['(garbage collector)', '(garbage collector)', '', 'GC'],
  ['AWS SDK', null, /\/(@smithy|@aws-sdk)\//, 'building, signing and parsing S3 requests (any frame in @smithy/* or @aws-sdk/*)'],
  ['scanReplica', 'scanReplica', 'restore/dist/replica.js', 'plan: LIST of the prefix'],
  ['header', 'header', 'restore/dist/replica.js', 'plan: one ranged GET per object for its header'],
  ['writeSnapshot', 'writeSnapshot', 'restore/dist/apply.js', 'snapshot: decode its pieces and write the pages'],
  ['fetchSegment', 'fetchSegment', 'restore/dist/apply.js', 'segments: download and decode each'],
  ['applySegment', 'applySegment', 'restore/dist/restore.js', 'segments: apply and check each transaction'],
  ['readBody', 'readBody', 'storage/dist/s3.js', 'HTTP response bodies into buffers'],
  ['decompress', 'decompress', 'format/dist/codec.js', 'zstd (wasm)'],
  ['writePage', 'writePage', 'restore/dist/apply.js', 'one pwrite per 8 KiB page + its hash'],
  ['writeSync', 'writeSync', 'node:fs', 'pwrite syscalls'],
  ['pageHash', 'pageHash', 'format/dist/checksum.js', 'xxhash64 of a page (rolling checksum), everywhere'],
  ['finish', 'finish', 'restore/dist/apply.js', 'ftruncate + fsync of the new file'],
  ['hashFile', 'hashFile', 'restore/dist/apply.js', 'verify: re-read and re-hash the whole file'],
  ['integrityCheck', 'integrityCheck', 'restore/dist/apply.js', 'verify: PRAGMA integrity_check through the walship VFS (wasm SQLite)'],
];

function emitProfile(profile, label, file) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byNode = new Map();
  profile.samples.forEach((id, i) => byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const where = (n) => (n.callFrame.url || '').replace(/^.*\/packages\//, '').replace(/^.*\/node_modules\//, '');
  const matches = (row, n) => {
    const [, fn, url] = row;
    const u = n.callFrame.url || '';
    if (url instanceof RegExp) return url.test(u);
    return n.callFrame.functionName === fn && (url === '' ? u === '' : where(n).endsWith(url));
  };
  const self = new Map();
  const rows = PROFILE_ROWS.map(() => 0);
  let total = 0;
  for (const [id, ms] of byNode) {
    total += ms;
    const n0 = nodes.get(id);
    const k = `${n0.callFrame.functionName || '(anonymous)'}\t${where(n0)}\t${n0.callFrame.url ? n0.callFrame.lineNumber + 1 : 0}`;
    self.set(k, (self.get(k) ?? 0) + ms);
    const hit = PROFILE_ROWS.map(() => false);
    for (let x = id; x !== undefined; x = parent.get(x)) {
      const n = nodes.get(x);
      PROFILE_ROWS.forEach((row, i) => {
        if (!hit[i] && matches(row, n)) hit[i] = true;
      });
    }
    hit.forEach((h, i) => {
      if (h) rows[i] += ms;
    });
  }
  const pct = (ms) => `${((100 * ms) / total).toFixed(1)}%`;
  emit(`Profile of one more restore (${label}), not timed above: ${fmtInt(total)} ms sampled, ${file}`);
  emit('');
  emit('| inclusive (function and everything it calls) | what | ms | % |');
  emit('|---|---|---:|---:|');
  PROFILE_ROWS.forEach(([name, , url, what], i) => {
    if (rows[i] >= total * 0.005) emit(`| \`${name}\`${typeof url === 'string' && url ? ` (${url})` : ''} | ${what} | ${fmtInt(rows[i])} | ${pct(rows[i])} |`);
  });
  emit('');
  emit('| top self time | where | ms | % |');
  emit('|---|---|---:|---:|');
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
    const [f, w, line] = k.split('\t');
    emit(`| \`${f}\` | ${w ? `${w}:${line}` : '-'} | ${fmtInt(v)} | ${pct(v)} |`);
  }
  emit('');
}

async function profileRestore(prefix, target, name, label) {
  mkdirSync(args.profile, { recursive: true });
  const { result, profile } = await profiled(() => timedRestore(prefix, target));
  const file = join(args.profile, `restore-${name}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  log(`[profile] ${label}: ${fmtS(result.ms)} s under the profiler, ${file}`);
  emitProfile(profile, `${label}: ${fmtS(result.ms)} s under the profiler; ${phaseText(result.phases)}`, file);
}

const phaseText = (ph) => `plan ${fmtS(ph.plan)} + download/apply ${fmtS(ph.download)} + verify ${fmtS(ph.verify)} + rename ${fmtS(ph.rename + ph.after)}`;

// ---------------------------------------------------------------------------------------------
// (1) restore of a large database vs a raw parallel download of the same objects
// ---------------------------------------------------------------------------------------------

/**
 * The database is written locally through @walship/vfs (capture off), then opened with
 * openReplicated: a new generation, whose snapshot streams the whole file. A few single-row commits
 * through the replicated database add level-0 segments after it; close().
 */
async function buildLarge() {
  const prefix = `bench/size-${process.pid}`;
  const file = join(dir, 'large.db');
  const rnd = mulberry32(0x7e57);
  const t0 = now();
  const db = await vfs.openDatabase(file, { pageSize: PAGE_SIZE, synchronous: 'NORMAL', capture: false });
  db.pragma(`cache_size = -${CACHE_KIB}`);
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b BLOB)');
  const st = db.prepare('INSERT INTO t(a, b) VALUES (?, ?)');
  const pool = new Uint8Array(P.rowsPerTxn * P.blobMax);
  let rows = 0;
  let pages = 0;
  while (pages * PAGE_SIZE < P.sizeBytes) {
    randomFillSync(pool); // fresh random bytes for every transaction: nothing repeats, zstd finds little
    db.exec('BEGIN');
    for (let i = 0; i < P.rowsPerTxn; i++) {
      const len = P.blobMin + Math.floor(rnd() * (P.blobMax - P.blobMin + 1));
      st.run(Math.floor(rnd() * 2 ** 31), pool.subarray(i * P.blobMax, i * P.blobMax + len));
    }
    db.exec('COMMIT');
    rows += P.rowsPerTxn;
    pages = db.pragma('page_count', { simple: true });
    if ((rows / P.rowsPerTxn) % 40 === 0) log(`[size] built ${fmtMiB(pages * PAGE_SIZE)}`);
  }
  db.close();
  const localMs = now() - t0;
  log(`[size] local file ${fmtMiB(statSync(file).size)} in ${fmtS(localMs)} s; openReplicated (generation snapshot)`);
  const t1 = now();
  const events = [];
  const rdb = await shipper.openReplicated(file, replicatedOptions(prefix, { snapshotIntervalMs: 0, onRequest: (e) => events.push(e) }));
  await withTimeout(rdb.flush(), 1_800_000, 'snapshot upload');
  const snapMs = now() - t1;
  const metrics = await rdb.metrics();
  const snapshotBytes = metricValue(metrics, 'walship_snapshot_bytes_total');
  const t2 = now();
  const tail = rdb.prepare('INSERT INTO t(a, b) VALUES (?, ?)');
  const small = new Uint8Array(P.blobMin);
  for (let i = 0; i < P.tailCommits; i++) {
    randomFillSync(small);
    tail.run(i, small);
    await rdb.flush();
  }
  await withTimeout(rdb.close({ timeoutMs: 120_000 }), 180_000, 'close');
  const tailMs = now() - t2;
  const fileBytes = statSync(file).size;
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  return { prefix, rows, pages, localMs, snapMs, tailMs, snapshotBytes, fileBytes, puts: events.filter((e) => e.operation === 'put' || e.operation === 'multipart').length };
}

function metricValue(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

async function sectionSize(results) {
  log(`[size] building a ${fmtMiB(P.sizeBytes)} database`);
  const b = await buildLarge();
  const pl = await timedPlan(b.prefix);
  const objects = pl.plan.objects;
  const objectBytes = pl.plan.bytes;
  const snap = objects[0];
  const dbBytes = pl.plan.commitSize * pl.plan.pageSize;
  log(`[size] plan: ${objects.length} objects, ${fmtMiB(objectBytes)} (snapshot ${fmtMiB(snap.size)}), database ${fmtMiB(dbBytes)}`);
  // Untimed warm-up: s3rver's files into the page cache, connections, zstd/xxhash wasm instantiated.
  log('[size] warm-up: raw download + restore (untimed)');
  await rawDownload(b.prefix, objects, P.concurrency);
  await rawDownload(b.prefix, objects, P.concurrency, true);
  await timedRestore(b.prefix);
  if (baselineLib) await timedRestore(b.prefix, {}, baselineLib);
  const raws = [];
  const recycled = [];
  const rests = [];
  const nones = [];
  const seqs = [];
  const bases = [];
  for (let r = 0; r < P.reps; r++) {
    const x = await rawDownload(b.prefix, objects, P.concurrency);
    raws.push(x);
    log(`[size] rep ${r + 1} raw: ${fmtS(x.ms)} s, ${fmtMBs(x.bytes, x.ms)} MB/s`);
    const xr = await rawDownload(b.prefix, objects, P.concurrency, true);
    recycled.push(xr);
    log(`[size] rep ${r + 1} raw into reused buffers: ${fmtS(xr.ms)} s, ${fmtMBs(xr.bytes, xr.ms)} MB/s`);
    const y = await timedRestore(b.prefix);
    rests.push(y);
    log(`[size] rep ${r + 1} restore: ${fmtS(y.ms)} s, ${fmtMBs(y.dbBytes, y.ms)} MB/s (${phaseText(y.phases)})`);
    const n = await timedRestore(b.prefix, { integrityCheck: 'none' });
    nones.push(n);
    log(`[size] rep ${r + 1} restore --integrity-check none: ${fmtS(n.ms)} s (${phaseText(n.phases)})`);
    if (baselineLib) {
      const w = await timedRestore(b.prefix, {}, baselineLib);
      bases.push(w);
      log(`[size] rep ${r + 1} baseline restore: ${fmtS(w.ms)} s, ${fmtMBs(w.dbBytes, w.ms)} MB/s (${phaseText(w.phases)})`);
    }
    // Diagnostic: the same pieces one request at a time (how restore reads the snapshot: PIECE_SIZE ranges in sequence).
    const z = await rawDownload(b.prefix, objects, 1);
    seqs.push(z);
    log(`[size] rep ${r + 1} raw, 1 at a time: ${fmtS(z.ms)} s`);
  }
  const rawMs = median(raws.map((x) => x.ms));
  const recycledMs = median(recycled.map((x) => x.ms));
  const restMs = median(rests.map((x) => x.ms));
  const seqMs = median(seqs.map((x) => x.ms));
  const rawMBs = objectBytes / 1e6 / (rawMs / 1000);
  const restMBs = dbBytes / 1e6 / (restMs / 1000);
  const ratio = restMBs / rawMBs;
  const timeRatio = rawMs / restMs;
  const recycledRatio = recycledMs / restMs;
  const medRest = rests.find((x) => x.ms === restMs) ?? rests[0];
  results.size = { b, objects: objects.length, objectBytes, snapSize: snap.size, dbBytes, rawMs, restMs, seqMs, rawMBs, restMBs, ratio, timeRatio, medRest, planMs: pl.ms, raws, rests, seqs, levels: objects.filter((o) => o.kind === 'segment').length };

  emit(`## (1) restore of a ${fmtMiB(dbBytes)} database vs a raw parallel download of the same objects`);
  emit('');
  emit(`Built: ${fmtInt(b.rows)} rows of (random int, random blob of ${P.blobMin}..${P.blobMax} bytes from crypto.randomFillSync) written locally through @walship/vfs (capture off, ${P.rowsPerTxn} rows per transaction) in ${fmtS(b.localMs)} s; then openReplicated on the file (lease false, snapshotIntervalMs 0, compaction off): a new generation whose snapshot streams the whole file, ${fmtS(b.snapMs)} s until flush() resolved; then ${P.tailCommits} single-row commits, each flushed (level-0 segments after the snapshot), and close(): ${fmtS(b.tailMs)} s. Build total ${fmtS(b.localMs + b.snapMs + b.tailMs)} s.`);
  emit(`Replica: ${objects.length} objects in the latest plan, ${fmtInt(objectBytes)} bytes (${fmtMiB(objectBytes)}): snapshot ${fmtInt(snap.size)} bytes for a ${fmtInt(pl.plan.commitSize)}-page database (${fmtInt(dbBytes)} bytes), **objects / database bytes = ${(objectBytes / dbBytes).toFixed(3)}** (zstd on random blobs: the pages' headers and free space are what compresses). plan() alone: ${fmtS(pl.ms)} s.`);
  emit(`Timed, after an untimed warm-up of each: ${P.reps} repetitions of [raw download, restore(), raw download one request at a time], gc() + sync before each; restore concurrency ${P.concurrency} (its default), raw ${P.concurrency} GETs in flight over ${raws[0].requests} requests (objects above ${fmtMiB(PIECE_SIZE)} as ranged GETs of ${fmtMiB(PIECE_SIZE)}, as restore splits them). The restored file goes to a fresh directory on the same disk (deleted after each run). MB = 10^6 bytes.`);
  emit('');
  const cores = cpus().length;
  emit(`| rep | raw download, s | raw MB/s (object bytes) | machine CPU during raw, core-s (% of ${cores} cores) | raw into reused buffers, s (machine CPU) | restore(), s | restore MB/s (database bytes) | machine CPU during restore, core-s | restore phases, s | raw 1 request at a time, s |`);
  emit('|---|---:|---:|---:|---:|---:|---:|---:|---|---:|');
  for (let r = 0; r < P.reps; r++) {
    const x = raws[r];
    const xr = recycled[r];
    const y = rests[r];
    emit(`| ${r + 1} | ${fmtS(x.ms)} | ${fmtMBs(x.bytes, x.ms)} | ${busyText(x)} | ${fmtS(xr.ms)} (${busyText(xr)}) | ${fmtS(y.ms)} | ${fmtMBs(y.dbBytes, y.ms)} | ${busyText(y)} | ${phaseText(y.phases)} | ${fmtS(seqs[r].ms)} (${fmtMBs(seqs[r].bytes, seqs[r].ms)} MB/s) |`);
  }
  emit(`| median | ${fmtS(rawMs)} | ${rawMBs.toFixed(1)} | | ${fmtS(recycledMs)} | ${fmtS(restMs)} | ${restMBs.toFixed(1)} | | | ${fmtS(seqMs)} (${fmtMBs(objectBytes, seqMs)} MB/s) |`);
  emit('');
  if (raws.every((x) => x.busy !== null) && rests.every((x) => x.busy !== null)) {
    const rawBusy = median(raws.map((x) => x.busy));
    const restBusy = median(rests.map((x) => x.busy));
    const floor = (restBusy / cores) * 1000;
    emit(`Machine CPU (every process, s3rver included; /proc/stat), medians: the raw download kept the ${cores} cores ${Math.round((100 * rawBusy) / (cores * (rawMs / 1000)))}% busy (${rawBusy.toFixed(1)} core-s); a restore used ${restBusy.toFixed(1)} core-s, ${(restBusy / rawBusy).toFixed(2)}x the raw download's. On these cores a restore cannot take less than ${fmtS(floor)} s (its core-seconds / ${cores}) however well it overlaps its work: **${fmtX(rawMs / floor)} of the raw download's time at best** while s3rver shares the machine.`);
    emit('');
  }
  emit(`restore() requests (median run): ${fmtInt(medRest.req.list)} LIST, ${fmtInt(medRest.req.get)} GET (${fmtMiB(medRest.req.getBytes)}); result: txid ${fmtInt(medRest.result.txid)}, ${medRest.result.objects} objects, ${fmtInt(medRest.result.bytes)} bytes downloaded, durationMs ${fmtInt(medRest.result.durationMs)}.`);
  emit('');
  if (bases.length > 0) {
    const baseMs = median(bases.map((x) => x.ms));
    const baseMBs = dbBytes / 1e6 / (baseMs / 1000);
    emit(`Baseline restore() from ${relative(repo, args.baseline)} in the same repetitions (right after this build's): ${bases.map((x) => `${fmtS(x.ms)} s (${phaseText(x.phases)})`).join('; ')}; median ${fmtS(baseMs)} s, ${baseMBs.toFixed(1)} MB/s: **${fmtX(baseMBs / rawMBs)}** of raw (this build: ${fmtX(ratio)}); this build / baseline wall time: ${fmtX(restMs / baseMs)}.`);
    emit('');
  }
  const noneMs = median(nones.map((x) => x.ms));
  const noneBusy = nones.every((x) => x.busy !== null) ? ` using ${median(nones.map((x) => x.busy)).toFixed(1)} core-s` : '';
  emit(`Restore with \`integrityCheck: 'none'\` (no SQLite check; every object, transaction and the read-back size and checksum still verified), right after each default restore: ${nones.map((x) => `${fmtS(x.ms)} s (${phaseText(x.phases)})`).join('; ')}; median ${fmtS(noneMs)} s${noneBusy}, ${fmtMBs(dbBytes, noneMs)} MB/s: **${fmtX(dbBytes / 1e6 / (noneMs / 1000) / rawMBs)}** of raw by the MB/s measure, ${fmtX(rawMs / noneMs)} by time.`);
  emit('');
  results.size.noneMs = noneMs;
  results.size.recycledMs = recycledMs;
  results.size.recycledRatio = recycledRatio;
  emit(`(1) Medians of this run, as the issue measures it (the same objects, raw download time / restore time): **${fmtX(timeRatio)}** against the raw download, **${fmtX(recycledRatio)}** against the raw download into reused buffers (the stricter baseline); target >= 0.8x of both: ${verdict(Math.min(timeRatio, recycledRatio) >= 0.8)}. By MB/s (restore ${restMBs.toFixed(1)} MB/s of database bytes vs raw ${rawMBs.toFixed(1)} MB/s of object bytes; the database is ${(dbBytes / objectBytes).toFixed(2)}x the objects, so this flatters restore): ${fmtX(ratio)}.`);
  emit('');
  if (args.profile) await profileRestore(b.prefix, {}, 'size', `latest of the ${fmtMiB(dbBytes)} database`);
}

/**
 * (1b) Section (1)'s replica read through a link of --link-mbit (a TCP proxy in a child process
 * that lets s3rver's answers through at that rate over all connections: test/src/servers/
 * link-proxy.ts). On loopback the download is bound by the two cores that s3rver, the client and
 * the decoder share; over a link slower than that, by the link, as restores from S3 are.
 */
async function sectionLink(results) {
  const b = results.size?.b ?? (await buildLarge());
  const bytesPerSecond = (args.linkMbit * 1e6) / 8;
  const link = await servers.startLinkProxy({ upstream: s3.endpoint, bytesPerSecond });
  via = link.endpoint;
  try {
    const pl = await timedPlan(b.prefix);
    const objects = pl.plan.objects;
    const objectBytes = pl.plan.bytes;
    const dbBytes = pl.plan.commitSize * pl.plan.pageSize;
    const linkMs = (objectBytes / bytesPerSecond) * 1000;
    log(`[link] ${args.linkMbit} Mbit/s: the plan's ${fmtMiB(objectBytes)} need ${fmtS(linkMs)} s on the link alone; warm-up (untimed)`);
    await rawDownload(b.prefix, objects, P.concurrency);
    await timedRestore(b.prefix);
    const raws = [];
    const rests = [];
    for (let r = 0; r < P.reps; r++) {
      const x = await rawDownload(b.prefix, objects, P.concurrency);
      raws.push(x);
      log(`[link] rep ${r + 1} raw: ${fmtS(x.ms)} s, ${fmtMBs(x.bytes, x.ms)} MB/s`);
      const y = await timedRestore(b.prefix);
      rests.push(y);
      log(`[link] rep ${r + 1} restore: ${fmtS(y.ms)} s (${phaseText(y.phases)})`);
    }
    const rawMs = median(raws.map((x) => x.ms));
    const restMs = median(rests.map((x) => x.ms));
    results.link = { mbit: args.linkMbit, rawMs, restMs, timeRatio: rawMs / restMs, linkMs, objectBytes, dbBytes };
    emit(`## (1b) the same restore over a ${args.linkMbit} Mbit/s link`);
    emit('');
    emit(`Section (1)'s replica (${objects.length} objects, ${fmtInt(objectBytes)} bytes, a ${fmtMiB(dbBytes)} database), read through a TCP proxy in a child process that passes s3rver's answers at ${args.linkMbit} Mbit/s (${fmtMBs(bytesPerSecond, 1000)} MB/s) summed over all connections (test/src/servers/link-proxy.ts): the objects alone need ${fmtS(linkMs)} s on it. The raw download and restore() exactly as in (1), ${P.reps} repetitions after an untimed warm-up of each, gc() + sync before each.`);
    emit('');
    emit(`| rep | raw download, s | raw MB/s | machine CPU during raw, core-s | restore(), s | machine CPU during restore, core-s | restore phases, s | raw s / restore s |`);
    emit('|---|---:|---:|---:|---:|---:|---|---:|');
    for (let r = 0; r < P.reps; r++) {
      const x = raws[r];
      const y = rests[r];
      emit(`| ${r + 1} | ${fmtS(x.ms)} | ${fmtMBs(x.bytes, x.ms)} | ${busyText(x)} | ${fmtS(y.ms)} | ${busyText(y)} | ${phaseText(y.phases)} | ${fmtX(x.ms / y.ms)} |`);
    }
    emit(`| median | ${fmtS(rawMs)} | ${fmtMBs(objectBytes, rawMs)} | | ${fmtS(restMs)} | | | ${fmtX(rawMs / restMs)} |`);
    emit('');
    emit(`(1b) Medians: raw download ${fmtS(rawMs)} s (the link's own floor ${fmtS(linkMs)} s), restore ${fmtS(restMs)} s: **${fmtX(rawMs / restMs)}** of the raw download by time over a ${args.linkMbit} Mbit/s link. The issue's target is (1), on loopback; this is the same measure where the network, not the machine's two cores, is the limit.`);
    emit('');
  } finally {
    via = null;
    await link.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// (2) restore to a txid that needs a snapshot plus many small segments
// ---------------------------------------------------------------------------------------------

/** One snapshot (at generation start), then `n` single-row commits each flushed at once: one segment per commit. */
async function buildSegments(n) {
  const prefix = `bench/segments-${process.pid}`;
  const file = join(dir, 'segments.db');
  const t0 = now();
  const events = [];
  const db = await shipper.openReplicated(file, replicatedOptions(prefix, { batchWindowMs: 0, snapshotIntervalMs: 0, onRequest: (e) => events.push(e) }));
  db.pragma(`cache_size = -${CACHE_KIB}`);
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)');
  await withTimeout(db.flush(), 60_000, 'first flush');
  const st = db.prepare('INSERT INTO t(a, b) VALUES (?, ?)');
  const rnd = mulberry32(0x5e6);
  const txids = [];
  for (let i = 0; i < n; i++) {
    st.run(Math.floor(rnd() * 2 ** 31), `row ${i} ${'x'.repeat(64 + Math.floor(rnd() * 64))}`);
    txids.push(db.txid);
    await withTimeout(db.flush(), 60_000, `flush ${i}`);
    if ((i + 1) % 500 === 0) log(`[segments] ${i + 1} / ${n} commits flushed`);
  }
  const m = await db.metrics();
  await withTimeout(db.close({ timeoutMs: 120_000 }), 180_000, 'close');
  const ms = now() - t0;
  // The file stays (section 3 reopens it to continue the generation); the directory goes at the end.
  return {
    prefix,
    file,
    ms,
    first: txids[0],
    last: txids.at(-1),
    mid: txids[Math.floor(txids.length / 2)],
    segments: metricValue(m, 'walship_segments_uploaded_total'),
    checkpoints: metricValue(m, 'walship_checkpoints_total'),
    snapshots: metricValue(m, 'walship_snapshots_uploaded_total'),
    puts: events.filter((e) => e.operation === 'put' || e.operation === 'multipart').length,
  };
}

async function measureTarget(prefix, label, target) {
  const pl = await timedPlan(prefix, target);
  const runs = [];
  await timedRestore(prefix, target); // untimed warm-up
  for (let r = 0; r < P.reps; r++) {
    const y = await timedRestore(prefix, target);
    runs.push(y);
    log(`[${label}] rep ${r + 1}: ${fmtS(y.ms)} s, ${y.result.objects} objects (${phaseText(y.phases)})`);
  }
  const ms = median(runs.map((x) => x.ms));
  const med = runs.find((x) => x.ms === ms) ?? runs[0];
  const objs = pl.plan.objects;
  return {
    label,
    target,
    plan: pl.plan,
    planMs: pl.ms,
    runs,
    ms,
    med,
    objects: med.result.objects,
    levels: { snapshot: objs.filter((o) => o.kind === 'snapshot').length, l0: objs.filter((o) => o.kind === 'segment' && o.level === 0).length, l1: objs.filter((o) => o.kind === 'segment' && o.level > 0).length },
  };
}

function targetRows(rows) {
  emit('| restore | txid | objects read (snapshot + level 0 + level 1) | bytes | wall time, s (median; all reps) | objects/s | phases of the median run, s | requests (median run) |');
  emit('|---|---:|---|---:|---|---:|---|---|');
  for (const t of rows) {
    emit(
      `| ${t.label} | ${fmtInt(t.med.result.txid)} | ${fmtInt(t.objects)} (${t.levels.snapshot} + ${fmtInt(t.levels.l0)} + ${fmtInt(t.levels.l1)}) | ${fmtMiB(t.med.result.bytes)} | ${fmtS(t.ms)} (${t.runs.map((x) => fmtS(x.ms)).join(', ')}) | ${fmtInt(t.objects / (t.ms / 1000))} | ${phaseText(t.med.phases)} | ${fmtInt(t.med.req.list)} LIST, ${fmtInt(t.med.req.get)} GET |`,
    );
  }
  emit('');
}

async function sectionSegments(results, state) {
  log(`[segments] building: one snapshot, then ${P.segments} single-row commits, each flushed (window 0)`);
  const b = await buildSegments(P.segments);
  state.segmentReplica = b;
  log(`[segments] built in ${fmtS(b.ms)} s: ${b.segments} segments, last txid ${b.last}, mid ${b.mid}`);
  const last = await measureTarget(b.prefix, `txid ${b.last} (last)`, { txid: b.last });
  const mid = await measureTarget(b.prefix, `txid ${b.mid} (middle)`, { txid: b.mid });
  results.segments = { b, last, mid };
  emit(`## (2) restore to a txid after one snapshot and ${fmtInt(P.segments)} small segments`);
  emit('');
  emit(`Built with openReplicated (lease false, batchWindowMs 0, snapshotIntervalMs 0: the only snapshot is the generation's first, of the empty database; compaction off): schema + flush, then ${fmtInt(P.segments)} single-row INSERTs (~100-byte text), each followed by \`await flush()\`: ${fmtInt(b.segments)} segments uploaded (${fmtInt(b.checkpoints)} checkpoints; a checkpoint's marker transaction starts a segment of its own), ${fmtInt(b.snapshots)} snapshot, ${fmtInt(b.puts)} PUTs, in ${fmtS(b.ms)} s (${fmtInt(b.segments / (b.ms / 1000))} segments/s).`);
  emit(`Timed: an untimed warm-up restore, then ${P.reps} restore() runs at each txid (gc() + sync before each), concurrency ${P.concurrency}. plan() alone: ${fmtS(last.planMs)} s (last), ${fmtS(mid.planMs)} s (middle).`);
  emit('');
  targetRows([last, mid]);
  emit(`(2) restore to the last txid: ${fmtInt(last.objects)} objects in ${fmtS(last.ms)} s = ${fmtInt(last.objects / (last.ms / 1000))} objects/s; to the middle: ${fmtInt(mid.objects)} objects in ${fmtS(mid.ms)} s = ${fmtInt(mid.objects / (mid.ms / 1000))} objects/s.`);
  emit('');
  if (args.profile) await profileRestore(b.prefix, { txid: b.last }, 'segments', `txid ${b.last}, ${fmtInt(last.objects)} objects`);
}

// ---------------------------------------------------------------------------------------------
// (3) restore latest when compacted level-1 objects exist
// ---------------------------------------------------------------------------------------------

async function sectionCompacted(results, state) {
  let b = state.segmentReplica;
  if (!b) {
    log(`[compacted] building the replica of section (2): ${P.segments} flushed single-row commits`);
    b = await buildSegments(P.segments);
  }
  // Compaction merges only closed runs (a run closes at a new epoch, a new 10-minute bucket of first
  // commit, a new snapshot interval or 64 MiB of input), never the run still being written. All of
  // section (2)'s segments are one epoch and one bucket: restart the writer once (openReplicated on
  // the same file continues the generation under a new epoch), one flushed commit, close.
  const tr = now();
  const db = await shipper.openReplicated(b.file, replicatedOptions(b.prefix, { batchWindowMs: 0, snapshotIntervalMs: 0 }));
  db.prepare('INSERT INTO t(a, b) VALUES (?, ?)').run(0, 'after the restart');
  await withTimeout(db.flush(), 60_000, 'flush after restart');
  await withTimeout(db.close({ timeoutMs: 120_000 }), 180_000, 'close after restart');
  const restartMs = now() - tr;
  const before = await measureTarget(b.prefix, 'latest, level 0 only', {});
  const storage = newStorage(b.prefix);
  const passes = [];
  const tc = now();
  try {
    for (let i = 0; i < P.maxPasses; i++) {
      const t0 = now();
      const r = await shipper.runMaintenancePass({ storage, prefix: b.prefix, retentionMs: 0, now: Date.now(), logLevel: 'silent' });
      const c = r.compaction ?? { written: [], verified: [], skipped: [], stopped: null };
      passes.push({ ms: now() - t0, written: c.written.length, skipped: c.skipped.length, stopped: c.stopped, errors: r.errors, keys: c.written });
      log(`[compacted] pass ${i + 1}: ${c.written.length} level-1 objects written in ${fmtS(now() - t0)} s${r.errors.length ? `; errors: ${r.errors.join('; ')}` : ''}`);
      if (c.written.length === 0 || r.errors.length) break;
    }
  } finally {
    storage.destroy?.();
  }
  const compactMs = now() - tc;
  const written = passes.flatMap((p) => p.keys);
  const after = await measureTarget(b.prefix, 'latest, after compaction', {});
  // Would the level-1 objects help if level 0 were not preferred? The plan says which it chose.
  results.compacted = { b, before, after, passes, written, compactMs, restartMs };
  emit(`## (3) restore latest when compacted level-1 objects exist`);
  emit('');
  emit(`The replica of section (2) (${fmtInt(b.segments)} level-0 segments after one snapshot), then the writer restarted once (openReplicated on the same file: same generation, new epoch; one flushed single-row commit; close; ${fmtS(restartMs)} s), which closes the compaction run of the first epoch. runMaintenancePass({ storage, prefix, retentionMs: 0, now }) with the default compaction options, repeated until a pass wrote nothing: ${passes.length} pass(es) in ${fmtS(compactMs)} s, ${fmtInt(written.length)} level-1 object(s) written (${written.slice(0, 4).map((k) => k.split('/').slice(-2).join('/')).join(', ')}${written.length > 4 ? ', ...' : ''}); skipped ranges in the last pass: ${passes.at(-1)?.skipped ?? 0}${passes.some((p) => p.errors.length) ? `; errors: ${passes.flatMap((p) => p.errors).join('; ')}` : ''}.`);
  emit(`Timed as in (2): restore() latest (no txid) after the restart and before the passes, and again after them.`);
  emit('');
  targetRows([before, after]);
  const usedL1 = after.levels.l1;
  emit(`(3) latest after compaction: ${fmtInt(after.objects)} objects (${usedL1} level-1) in ${fmtS(after.ms)} s vs ${fmtInt(before.objects)} objects in ${fmtS(before.ms)} s before: ${fmtX(before.ms / after.ms)} as fast.${written.length > 0 && usedL1 === 0 ? ' The plan used none of the level-1 objects: among objects that start at the next txid it prefers level 0 (packages/restore/src/plan.ts, the sort in #chain), and compaction never deletes level 0, so level-1 objects are only used where level 0 is gone (retention).' : ''}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

function summaryTable(results, errors) {
  const rows = [];
  const s = results.size;
  rows.push([
    '1',
    s ? `restore of a ${fmtMiB(s.dbBytes)} database (${s.objects} objects, ${fmtMiB(s.objectBytes)}): restore ${fmtS(s.restMs)} s vs raw parallel download ${fmtS(s.rawMs)} s, into reused buffers ${fmtS(s.recycledMs)} s (by MB/s: ${fmtX(s.ratio)})` : 'restore vs raw download',
    s ? `**${fmtX(s.timeRatio)}**, ${fmtX(s.recycledRatio)} of the reused-buffer download` : errors.size ? 'error' : '-',
    '>= 0.8x of both (by time)',
    s ? verdict(Math.min(s.timeRatio, s.recycledRatio) >= 0.8) : '-',
  ]);
  if (s?.noneMs !== undefined) {
    const noneRatio = s.dbBytes / 1e6 / (s.noneMs / 1000) / s.rawMBs;
    rows.push(['1n', `the same restore with \`integrityCheck: 'none'\` (read-back size and checksum only): ${fmtS(s.noneMs)} s (by MB/s: ${fmtX(noneRatio)})`, `${fmtX(s.rawMs / s.noneMs)}`, '- (not the default)', '-']);
  }
  const l = results.link;
  if (l) {
    rows.push(['1b', `the same restore over a ${l.mbit} Mbit/s link (bandwidth-limited proxy in front of s3rver): restore ${fmtS(l.restMs)} s vs raw download ${fmtS(l.rawMs)} s (link floor ${fmtS(l.linkMs)} s)`, `${fmtX(l.timeRatio)}`, '- (the target is 1, on loopback)', '-']);
  } else if (errors.link) rows.push(['1b', 'restore over a bandwidth-limited link', 'error', '-', '-']);
  const g = results.segments;
  if (g) {
    for (const [k, t] of [['2a', g.last], ['2b', g.mid]]) {
      rows.push([k, `restore to ${t.label}: ${fmtInt(t.objects)} objects (1 snapshot + ${fmtInt(t.levels.l0)} segments)`, `${fmtS(t.ms)} s, ${fmtInt(t.objects / (t.ms / 1000))} objects/s`, '-', '-']);
    }
  } else rows.push(['2', 'restore after many segments', errors.segments ? 'error' : '-', '-', '-']);
  const c = results.compacted;
  if (c) {
    rows.push(['3', `restore latest with ${fmtInt(c.written.length)} level-1 object(s) present: ${fmtInt(c.after.objects)} objects read (${c.after.levels.l1} level-1); before compaction ${fmtInt(c.before.objects)} objects, ${fmtS(c.before.ms)} s`, `${fmtS(c.after.ms)} s`, '-', '-']);
  } else rows.push(['3', 'restore latest with level-1 objects', errors.compacted ? 'error' : '-', '-', '-']);
  emit('## Summary');
  emit('');
  emit('| # | figure | measured | target | |');
  emit('|---|---|---:|---|---|');
  for (const r of rows) emit(`| ${r.join(' | ')} |`);
  emit('');
  for (const [k, e] of Object.entries(errors)) emit(`Section ${k} failed: ${e}`);
}

/** When the dist this process loaded was built: the newest .js under the packages' dist. */
function distBuilt() {
  let newest = 0;
  for (const pkg of ['vfs', 'storage', 'format', 'shipper', 'restore']) {
    const d = join(repo, 'packages', pkg, 'dist');
    try {
      for (const f of readdirSync(d, { recursive: true })) {
        if (String(f).endsWith('.js')) newest = Math.max(newest, statSync(join(d, String(f))).mtimeMs);
      }
    } catch {
      // A package without dist: not built.
    }
  }
  return newest ? new Date(newest).toISOString().replace(/\.\d+Z$/, 'Z') : 'unknown';
}

async function main() {
  const sections = args.only ?? SECTIONS;
  const started = now();
  const date = new Date().toISOString();
  let head = '';
  try {
    head = execFileSync('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', repo, 'status', '--porcelain', '--', 'packages'], { encoding: 'utf8' }).trim();
    if (dirty) head += ' (packages/ has uncommitted changes)';
  } catch {
    head = 'unknown';
  }
  const version = (p) => {
    try {
      return JSON.parse(readFileSync(join(repo, p, 'package.json'), 'utf8')).version;
    } catch {
      return '?';
    }
  };
  emit(`# walship restore benchmark, ${date.slice(0, 10)}`);
  emit('');
  emit(`Command: \`node ${relative(process.cwd(), fileURLToPath(import.meta.url)) || 'bench/restore.mjs'}${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`  `);
  emit(`Date: ${date}  `);
  emit(`Machine: ${cpus()[0]?.model?.trim()} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${platform()} ${release()}; Node ${process.version}; load average (1 min) at start ${loadavg()[0].toFixed(2)}  `);
  emit(`Code: packages/*/dist at HEAD ${head}, newest dist file written ${distBuilt()}; @walship/restore ${version('packages/restore')}; S3: s3rver ${version('test/node_modules/s3rver')} in a child process on 127.0.0.1 (files under ${tmpdir()})  `);
  emit(`Sizes: (1) a database of at least ${fmtMiB(P.sizeBytes)}, (2) ${fmtInt(P.segments)} segments; ${P.reps} timed repetitions each; restore concurrency ${P.concurrency}; page_size ${PAGE_SIZE}${Q ? '  ' : ''}`);
  if (Q) emit('Mode: --quick (128 MiB database, 500 segments, 2 repetitions)');
  emit('');

  dir = mkdtempSync(join(tmpdir(), 'walship-restorebench-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results = {};
  const errors = {};
  const state = {};
  try {
    s3 = await servers.startS3rver({ bucket: 'walship-bench' });
    const table = { size: sectionSize, link: sectionLink, segments: sectionSegments, compacted: sectionCompacted };
    for (const s of sections) {
      try {
        await table[s](results, state);
      } catch (e) {
        errors[s] = `${e?.code ? `${e.code}: ` : ''}${e?.message ?? e}`;
        log(`[${s}] FAILED: ${e?.stack ?? e}`);
        emit(`## ${s}: FAILED`);
        emit('');
        emit(`${errors[s]}`);
        emit('');
      }
      gc();
    }
  } finally {
    await s3?.stop();
    cleanup();
  }
  summaryTable(results, errors);
  emit('');
  emit(`Total ${fmtS(now() - started)} s; load average (1 min) at end ${loadavg()[0].toFixed(2)}`);
  if (args.out || (args.save && !args.only && !custom)) {
    const file = args.out ?? join(here, 'results', `restore-${date.slice(0, 10)}${Q ? '-quick' : ''}.txt`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${out.join('\n')}\n`);
    log(`wrote ${relative(process.cwd(), file)}`);
  }
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
});
