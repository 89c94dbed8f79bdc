#!/usr/bin/env node
// walship shipper benchmark: what replication to S3 (s3rver on loopback) costs and how it behaves.
// See bench/README.md for what every number means.
//
//   cd /work/main && npx tsc -b && node bench/shipper.mjs    full run (~15 min), writes bench/results/shipper-<date>.txt
//   node bench/shipper.mjs --quick                          shorter phases, 60 s outage (~3 min), writes shipper-<date>-quick.txt
//   node bench/shipper.mjs --only lag,bytes                 a filtered run (not saved unless --out FILE)
//
// Sections, in run order: outage (5: RSS while S3 is down, then time to catch up), commits (1: commits/s
//           replication on vs off), lag (2: commit-to-durable p50/p99, window 1 s and 0), bytes (3: segment
//           bytes per WAL byte), puts (4: PUTs per minute loaded and idle)
// Options: --only outage,commits,lag,bytes,puts   --outage-seconds N (default 600, --quick 60)   --outage-control (S3 stays up: what the same load grows by anyway)
//          --outage-warm N (first N rows with S3 up, flushed and checkpointed: SQLite's page cache is full when the outage starts, as in a running application)   --no-save   --out FILE
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, statSync, writeSync, readdirSync } from 'node:fs';
import { tmpdir, cpus, totalmem, release, platform, loadavg } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { PAGE_SIZE, CACHE_KIB, SCHEMA, gc, quiesce, now, log, yieldLoop, fmtInt, fmtMs, fmtMiB, fmtX, verdict, inserter, paced, metric, percentile, withTimeout, fileSize, isPut, ok } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

// The outage runs first: its RSS baseline is then the process's own, not memory that earlier
// sections freed and the allocator reuses (run last in a --quick run, heapUsed + external grew by
// 38 MiB while RSS grew by 10.5 MiB).
const SECTIONS = ['outage', 'commits', 'lag', 'bytes', 'puts'];

function parseArgs(argv) {
  const a = { quick: false, only: null, save: true, out: null, outageSeconds: null, outageControl: false, outageWarm: 0 };
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
      case '--outage-seconds': a.outageSeconds = positive(value()); break;
      case '--outage-control': a.outageControl = true; break;
      case '--outage-warm': a.outageWarm = positive(value()); break;
      case '--no-save': a.save = false; break;
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

/** Every size and duration of the run, full and --quick. */
const P = {
  yieldEvery: 100, // unpaced loops: await setImmediate every 100 commits so uploads can progress
  commitsRunMs: Q ? 3000 : 10_000, // (1) each of the 4 interleaved runs
  commitsWarm: 500, // (1) untimed commits before each run (then flush, for "on")
  offCheckpointEvery: 1000, // (1) "off": application checkpoint every 1000 commits
  lagRate: 200, // (2) paced commits per second
  lagWarmMs: 1000, // (2) paced commits before the measured ones (same pace, not recorded)
  lagMs: Q ? 5000 : 10_000, // (2) measured commits
  pollMs: 1, // (2) status().durableTxid polled on setInterval(1)
  bytesCommits: 10_000, // (3) per run
  bytesPacedRate: 1000, // (3) the paced variant: 10k commits at 1,000/s
  putsRate: 1000, // (4) loaded: paced commits per second
  putsLoadMs: Q ? 10_000 : 30_000, // (4)
  putsIdleMs: Q ? 10_000 : 30_000, // (4) after flush
  outageRate: 1000, // (5) paced commits per second while S3 is down
  outageMs: (args.outageSeconds ?? (Q ? 60 : 600)) * 1000, // (5)
  outageWalLimit: 16 * 2 ** 30, // (5) 10 min at 1k commits/s is ~4.9 GB of WAL: above the 4 GiB suggested
  catchupTimeoutMs: Q ? 300_000 : 900_000, // (5) give up waiting for durable after this
  rssBaselineS: 10, // (5) the first 10 one-second samples are the baseline
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const out = [];
/** A report line: printed at once (so a crash still leaves the sections done) and saved at the end. */
const emit = (line = '') => {
  out.push(line);
  process.stdout.write(`${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Set-up: libraries, s3rver, a temporary directory
// ---------------------------------------------------------------------------------------------

const shipper = await import(pathToFileURL(join(repo, 'packages/shipper/dist/index.js')).href);
const vfs = await import(pathToFileURL(join(repo, 'packages/vfs/dist/index.js')).href);
const servers = await import(pathToFileURL(join(repo, 'test/dist/servers/index.js')).href);
const sqlite3 = await vfs.loadSqlite();
const wasmBytes = () => sqlite3.wasm.memory.buffer.byteLength;

let s3 = null;
let runSeq = 0;
let dir = null;

/** openReplicated options against `endpoint` (s3rver, or the fault proxy in front of it). */
function s3Options(prefix, extra = {}, endpoint = s3.endpoint) {
  return {
    s3: {
      bucket: s3.bucket,
      prefix,
      endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
    // No writer lease (no DynamoDB here): replication alone is measured. Builds before the lease
    // option existed ignore it.
    lease: false,
    logLevel: 'silent',
    ...extra,
  };
}

/** A fresh file and prefix; schema and a flush before anything is measured. */
async function openFresh(name, extra = {}, endpoint) {
  const id = `${name}-${++runSeq}`;
  const file = join(dir, `${id}.db`);
  const events = [];
  const db = await shipper.openReplicated(
    file,
    s3Options(`bench/${id}-${process.pid}`, { ...extra, onRequest: (e) => events.push({ t: now(), op: e.operation, status: e.status, key: e.key, bytes: e.bytes, ms: e.durationMs }) }, endpoint),
  );
  db.pragma(`cache_size = -${CACHE_KIB}`);
  db.exec(SCHEMA);
  await withTimeout(db.flush(), 60_000, `${id}: first flush`);
  return { db, file, events, id };
}

async function closeAndRemove(h, timeoutMs = 120_000) {
  let error = null;
  try {
    await withTimeout(h.db.close({ timeoutMs }), timeoutMs + 10_000, `${h.id}: close`);
  } catch (e) {
    error = e;
  }
  for (const f of [h.file, `${h.file}-wal`, `${h.file}-shm`]) rmSync(f, { force: true });
  if (error) throw error;
}

// ---------------------------------------------------------------------------------------------
// (1) commits/s, replication on vs off
// ---------------------------------------------------------------------------------------------

async function commitsRun(kind) {
  let h;
  if (kind === 'off') {
    const id = `commits-off-${++runSeq}`;
    const file = join(dir, `${id}.db`);
    const db = await vfs.openDatabase(file, { pageSize: PAGE_SIZE, synchronous: 'NORMAL' });
    db.pragma(`cache_size = -${CACHE_KIB}`);
    db.exec(SCHEMA);
    h = { db, file, id, events: [] };
  } else {
    h = await openFresh('commits-on');
  }
  const { db } = h;
  const insert = inserter(db);
  let n = 0;
  let checkpoints = 0;
  const one = kind === 'off'
    ? () => {
        insert();
        if (++n % P.offCheckpointEvery === 0 && db.checkpoint().checkpointed) checkpoints++;
      }
    : () => {
        insert();
        n++;
      };
  for (let i = 0; i < P.commitsWarm; i++) one();
  if (kind === 'on') await withTimeout(db.flush(), 60_000, 'warm-up flush');
  quiesce();
  const m0 = kind === 'on' ? await db.metrics() : '';
  const puts0 = h.events.filter(isPut).length;
  const n0 = n;
  const cp0 = checkpoints;
  const t0 = now();
  let ms;
  for (;;) {
    for (let j = 0; j < P.yieldEvery; j++) one();
    await yieldLoop();
    ms = now() - t0;
    if (ms >= P.commitsRunMs) break;
  }
  const commits = n - n0;
  const r = { kind, commits, ms, rate: (commits * 1000) / ms, walBytes: fileSize(`${h.file}-wal`), checkpoints: checkpoints - cp0 };
  if (kind === 'on') {
    const st = db.status();
    r.behind = st.committedTxid - st.durableTxid;
    r.lagMs = st.lagMs;
    const m1 = await db.metrics();
    r.segments = metric(m1, 'walship_segments_uploaded_total') - metric(m0, 'walship_segments_uploaded_total');
    r.checkpoints = metric(m1, 'walship_checkpoints_total') - metric(m0, 'walship_checkpoints_total');
    r.puts = h.events.filter(isPut).length - puts0;
    const tf = now();
    await withTimeout(db.flush(), 120_000, 'flush after the timed run');
    r.flushMs = now() - tf;
    await closeAndRemove(h);
  } else {
    db.close();
    for (const f of [h.file, `${h.file}-wal`]) rmSync(f, { force: true });
  }
  return r;
}

async function sectionCommits(results) {
  const order = ['off', 'on', 'off', 'on'];
  const runs = [];
  for (const kind of order) {
    log(`[commits] ${kind} ${P.commitsRunMs / 1000} s`);
    const r = await commitsRun(kind);
    runs.push(r);
    log(`[commits] ${kind}: ${fmtInt(r.rate)} commits/s, WAL at end ${fmtMiB(r.walBytes)}`);
    gc();
  }
  const sum = (k) => runs.filter((r) => r.kind === k).reduce((s, r) => ({ commits: s.commits + r.commits, ms: s.ms + r.ms }), { commits: 0, ms: 0 });
  const off = sum('off');
  const on = sum('on');
  const ratio = (on.commits / on.ms) / (off.commits / off.ms);
  const pairs = [runs[1].rate / runs[0].rate, runs[3].rate / runs[2].rate];
  results.commits = { runs, ratio, pairs, offRate: (off.commits * 1000) / off.ms, onRate: (on.commits * 1000) / on.ms };
  emit(`## (1) commits/s, replication on vs off`);
  emit('');
  emit(`Single-row INSERT (~100 bytes) per transaction, unpaced, await setImmediate every ${P.yieldEvery} commits; ${P.commitsWarm} untimed warm-up commits; ${P.commitsRunMs / 1000} s per run, interleaved off, on, off, on.`);
  emit(`off = @walship/vfs openDatabase, capture on, no sink, db.checkpoint() every ${P.offCheckpointEvery} commits (inside the timed loop); on = openReplicated, default 1 s window, default checkpointBytes (4 MiB), s3rver.`);
  emit('');
  emit('| run | commits | s | commits/s | -wal file at end | checkpoints in run | not durable at end | segments / PUTs in run | flush() after |');
  emit('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  runs.forEach((r, i) =>
    emit(
      `| ${i + 1} ${r.kind} | ${fmtInt(r.commits)} | ${(r.ms / 1000).toFixed(1)} | ${fmtInt(r.rate)} | ${fmtMiB(r.walBytes)} | ${fmtInt(r.checkpoints)} | ${r.kind === 'on' ? `${fmtInt(r.behind)} txns (oldest ${fmtInt(r.lagMs)} ms)` : '-'} | ${r.kind === 'on' ? `${fmtInt(r.segments)} / ${fmtInt(r.puts)}` : '-'} | ${r.kind === 'on' ? `${fmtInt(r.flushMs)} ms` : '-'} |`,
    ),
  );
  emit('');
  emit(`(1) on / off: ${fmtX(ratio)} (total commits over total time; per pair ${pairs.map(fmtX).join(', ')}); target >= 0.95x: ${verdict(ratio >= 0.95)}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// (2) replication lag
// ---------------------------------------------------------------------------------------------

async function lagRun(windowMs) {
  const h = await openFresh(`lag-w${windowMs}`, { batchWindowMs: windowMs });
  const { db } = h;
  const insert = inserter(db);
  const rec = [];
  const lags = [];
  let ptr = 0;
  let polls = 0;
  const poll = () => {
    polls++;
    const d = db.status().durableTxid;
    const t = now();
    while (ptr < rec.length && rec[ptr].txid <= d) {
      lags.push(t - rec[ptr].t);
      ptr++;
    }
  };
  const timer = setInterval(poll, P.pollMs);
  const m0 = await db.metrics();
  const tRec = now() + P.lagWarmMs;
  const warmCommits = Math.round((P.lagWarmMs * P.lagRate) / 1000);
  const run = await paced(db, insert, P.lagRate, P.lagWarmMs + P.lagMs, (txid, t, i) => {
    if (i >= warmCommits) rec.push({ txid, t });
  });
  const deadline = now() + windowMs + 30_000;
  while (ptr < rec.length && now() < deadline) await sleep(5);
  clearInterval(timer);
  const m1 = await db.metrics();
  const putMs = h.events.filter((e) => e.t >= tRec && isPut(e) && ok(e)).map((e) => e.ms).sort((a, b) => a - b);
  const d = (name, match) => metric(m1, name, match) - metric(m0, name, match);
  const histo = (le) => d('walship_replication_lag_seconds_bucket', `le="${le}"`) / d('walship_replication_lag_seconds_count');
  const sorted = [...lags].sort((a, b) => a - b);
  const r = {
    windowMs,
    commits: rec.length,
    resolved: lags.length,
    rate: (run.commits * 1000) / run.ms,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
    segments: d('walship_segments_uploaded_total'),
    checkpoints: d('walship_checkpoints_total'),
    histLe50ms: histo('0.05'),
    histLe1100ms: histo('1.1'),
    polls,
    putP50: percentile(putMs, 0.5),
    putP99: percentile(putMs, 0.99),
  };
  await closeAndRemove(h);
  return r;
}

async function sectionLag(results) {
  const runs = [];
  for (const w of [1000, 0]) {
    log(`[lag] window ${w} ms, ${P.lagRate} commits/s for ${(P.lagWarmMs + P.lagMs) / 1000} s`);
    const r = await lagRun(w);
    runs.push(r);
    log(`[lag] window ${w} ms: p50 ${fmtMs(r.p50)} ms, p99 ${fmtMs(r.p99)} ms`);
  }
  results.lag = runs;
  emit(`## (2) replication lag, commit to durable`);
  emit('');
  emit(`${P.lagRate} commits/s paced (timer; each commit due at t0 + i/${P.lagRate} s) for ${P.lagWarmMs / 1000} s unrecorded, then ${P.lagMs / 1000} s recorded: performance.now() and db.txid after each commit.`);
  emit(`status().durableTxid polled on setInterval(${P.pollMs} ms) (and after the writes stop, until every recorded txid is durable); a transaction's lag = time of the first poll that sees durableTxid >= its txid minus its commit time (resolution ~1 ms plus event-loop delay).`);
  emit(`Cross-check: the shipper's own histogram walship_replication_lag_seconds over the same stretch (share of transactions in buckets le 0.05 and le 1.1). Segments and checkpoints: counted over the whole paced stretch; PUT request: onRequest durationMs of the successful PUTs in the recorded stretch (the HTTP request alone: no encoding, no WAL fdatasync).`);
  emit('');
  emit('| window | recorded commits | commits/s achieved | p50 ms | p90 ms | p99 ms | max ms | segments | checkpoints | histogram <= 50 ms | histogram <= 1.1 s | PUT request p50 / p99 ms |');
  emit('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    emit(
      `| ${r.windowMs} ms | ${fmtInt(r.commits)}${r.resolved < r.commits ? ` (${fmtInt(r.commits - r.resolved)} never durable)` : ''} | ${fmtInt(r.rate)} | ${fmtMs(r.p50)} | ${fmtMs(r.p90)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ${fmtInt(r.segments)} | ${fmtInt(r.checkpoints)} | ${(100 * r.histLe50ms).toFixed(1)}% | ${(100 * r.histLe1100ms).toFixed(1)}% | ${fmtMs(r.putP50)} / ${fmtMs(r.putP99)} |`,
    );
  }
  emit('');
  const [w1, w0] = runs;
  emit(`(2) window 1 s: p50 ${fmtMs(w1.p50)} ms, p99 ${fmtMs(w1.p99)} ms; target p99 <= 1100 ms: ${verdict(w1.p99 <= 1100)}. window 0: p50 ${fmtMs(w0.p50)} ms, p99 ${fmtMs(w0.p99)} ms; target p99 <= 50 ms: ${verdict(w0.p99 <= 50)}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// (3) shipped bytes per WAL byte
// ---------------------------------------------------------------------------------------------

async function bytesRun(windowMs, mode) {
  const h = await openFresh(`bytes-w${windowMs}-${mode}`, { batchWindowMs: windowMs });
  const { db } = h;
  const insert = inserter(db);
  const t0 = now();
  if (mode === 'unpaced') {
    for (let i = 0; i < P.bytesCommits; ) {
      for (let j = 0; j < P.yieldEvery && i < P.bytesCommits; j++, i++) insert();
      await yieldLoop();
    }
  } else {
    await paced(db, insert, P.bytesPacedRate, (P.bytesCommits * 1000) / P.bytesPacedRate);
  }
  const writeMs = now() - t0;
  await withTimeout(db.flush(), 120_000, 'flush');
  const m = await db.metrics();
  const r = {
    windowMs,
    mode,
    writeMs,
    segmentBytes: metric(m, 'walship_segment_bytes_total'),
    walShipped: metric(m, 'walship_wal_bytes_shipped_total'),
    snapshotBytes: metric(m, 'walship_snapshot_bytes_total'),
    snapshots: metric(m, 'walship_snapshots_uploaded_total'),
    segments: metric(m, 'walship_segments_uploaded_total'),
    txns: metric(m, 'walship_transactions_durable_total'),
    checkpoints: metric(m, 'walship_checkpoints_total'),
  };
  r.ratio = r.segmentBytes / r.walShipped;
  await closeAndRemove(h);
  return r;
}

async function sectionBytes(results) {
  const runs = [];
  for (const w of [1000, 0]) {
    for (const mode of ['unpaced', 'paced']) {
      log(`[bytes] window ${w} ms, ${fmtInt(P.bytesCommits)} commits ${mode}`);
      const r = await bytesRun(w, mode);
      runs.push(r);
      log(`[bytes] window ${w} ms ${mode}: ${r.ratio.toFixed(4)} (${fmtInt(r.segments)} segments)`);
    }
  }
  results.bytes = runs;
  emit(`## (3) shipped bytes per WAL byte`);
  emit('');
  emit(`${fmtInt(P.bytesCommits)} single-row INSERT commits into a fresh database and prefix, then flush(); whole-run metrics (the CREATE TABLE and checkpoint-marker transactions are included, ~0.1%).`);
  emit(`unpaced = as fast as possible, await setImmediate every ${P.yieldEvery} commits; paced = ${fmtInt(P.bytesPacedRate)} commits/s (${(P.bytesCommits / P.bytesPacedRate).toFixed(0)} s). ratio = walship_segment_bytes_total / walship_wal_bytes_shipped_total (zstd default); snapshot bytes (the generation's first snapshot, taken at open) are not in either.`);
  emit('');
  emit('| window | writes | write s | WAL bytes shipped | segment bytes | ratio | segments | txns / segment | snapshot bytes (count) | checkpoints |');
  emit('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    emit(
      `| ${r.windowMs} ms | ${r.mode} | ${(r.writeMs / 1000).toFixed(1)} | ${fmtInt(r.walShipped)} (${fmtMiB(r.walShipped)}) | ${fmtInt(r.segmentBytes)} | ${r.ratio.toFixed(4)} | ${fmtInt(r.segments)} | ${(r.txns / r.segments).toFixed(0)} | ${fmtInt(r.snapshotBytes)} (${fmtInt(r.snapshots)}) | ${fmtInt(r.checkpoints)} |`,
    );
  }
  emit('');
  const d = runs.filter((r) => r.windowMs === 1000);
  emit(`(3) default window: unpaced ${d[0].ratio.toFixed(4)}, paced ${d[1].ratio.toFixed(4)}; target <= 0.03: ${d.map((r) => `${r.mode} ${verdict(r.ratio <= 0.03)}`).join(', ')}. window 0: unpaced ${runs[2].ratio.toFixed(4)}, paced ${runs[3].ratio.toFixed(4)}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// (4) PUTs per minute, loaded and idle
// ---------------------------------------------------------------------------------------------

async function sectionPuts(results) {
  log(`[puts] ${P.putsRate} commits/s for ${P.putsLoadMs / 1000} s, then ${P.putsIdleMs / 1000} s idle`);
  const h = await openFresh('puts');
  const { db, events } = h;
  const insert = inserter(db);
  const t0 = now();
  const run = await paced(db, insert, P.putsRate, P.putsLoadMs);
  const t1 = now();
  const loaded = events.filter((e) => e.t >= t0 && e.t < t1 && isPut(e));
  const tf = now();
  await withTimeout(db.flush(), 60_000, 'flush');
  const flushMs = now() - tf;
  const i0 = now();
  const committedAtIdle = db.txid;
  const stIdle = db.status();
  await sleep(P.putsIdleMs);
  const i1 = now();
  const idleAll = events.filter((e) => e.t >= i0 && e.t < i1);
  const idle = idleAll.filter(isPut);
  const r = {
    loadMs: t1 - t0,
    commits: run.commits,
    loadedPuts: loaded.length,
    loadedOk: loaded.filter(ok).length,
    loadedPerMin: (loaded.length * 60_000) / (t1 - t0),
    idleMs: i1 - i0,
    idlePuts: idle.length,
    idlePerMin: (idle.length * 60_000) / (i1 - i0),
    idleOther: idleAll.length - idle.length,
    idleDetail: idle.map((e) => `+${fmtInt(e.t - i0)} ms ${e.op} ${e.key?.replace(/^.*?bench\/[^/]+\//, '') ?? ''} (${e.status})`),
    commitsDuringIdle: db.txid - committedAtIdle,
    notDurableAtIdle: stIdle.committedTxid - stIdle.durableTxid,
    txidAtIdle: stIdle.committedTxid,
    loadedPutMs: percentile(loaded.filter(ok).map((e) => e.ms).sort((a, b) => a - b), 0.5),
    flushMs,
  };
  await closeAndRemove(h);
  results.puts = r;
  log(`[puts] loaded ${r.loadedPerMin.toFixed(0)}/min, idle ${r.idlePerMin.toFixed(1)}/min`);
  emit(`## (4) PUTs per minute, loaded and idle`);
  emit('');
  emit(`onRequest events with operation 'put' or 'multipart' (every attempt; none failed here unless said), default 1 s window. Loaded: ${fmtInt(P.putsRate)} commits/s paced for ${(r.loadMs / 1000).toFixed(1)} s; idle: ${(r.idleMs / 1000).toFixed(1)} s right after flush() resolved (flush took ${fmtInt(flushMs)} ms), no application writes. Both scaled to a minute.`);
  emit('');
  emit('| stretch | measured s | commits | PUTs | PUTs/min |');
  emit('|---|---:|---:|---:|---:|');
  emit(`| loaded | ${(r.loadMs / 1000).toFixed(1)} | ${fmtInt(r.commits)} | ${fmtInt(r.loadedPuts)}${r.loadedOk !== r.loadedPuts ? ` (${r.loadedPuts - r.loadedOk} failed)` : ''} | ${r.loadedPerMin.toFixed(1)} |`);
  emit(`| idle after flush | ${(r.idleMs / 1000).toFixed(1)} | ${fmtInt(r.commitsDuringIdle)} | ${fmtInt(r.idlePuts)} | ${r.idlePerMin.toFixed(1)} |`);
  emit('');
  emit(`Loaded: median PUT request ${fmtMs(r.loadedPutMs)} ms; ${(r.commits / Math.max(1, r.loadedPuts)).toFixed(1)} commits per PUT.`);
  emit(`When flush() resolved: committed txid ${fmtInt(r.txidAtIdle)}, ${fmtInt(r.notDurableAtIdle)} transaction(s) not yet durable${r.notDurableAtIdle > 0 ? " (committed by the shipper itself, a checkpoint's marker, between the upload that resolved flush() and the benchmark's continuation)" : ''}.`);
  if (r.idleDetail.length) emit(`PUTs in the idle stretch (offset from flush() resolving, key under the prefix, status): ${r.idleDetail.join('; ')}`);
  emit(`Other requests in the idle stretch: ${r.idleOther}`);
  emit('');
  emit(`(4) loaded ${r.loadedPerMin.toFixed(1)} PUTs/min (a 1 s window alone would give ~60); idle ${r.idlePerMin.toFixed(1)} PUTs/min, target 0: ${verdict(r.idlePuts === 0)}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// (5) RSS during an S3 outage, then catch-up
// ---------------------------------------------------------------------------------------------

async function sectionOutage(results) {
  const proxy = await servers.startFaultProxy({ target: s3.endpoint });
  let h;
  const samples = [];
  try {
    h = await openFresh('outage', { walLimitBytes: P.outageWalLimit }, proxy.endpoint);
    const { db, events } = h;
    const insert = inserter(db);
    if (args.outageWarm > 0) {
      // --outage-warm: a table bigger than SQLite's page cache before the outage, so the cache is
      // full when it starts (as in an application that has been running) and does not grow during it.
      for (let i = 0; i < args.outageWarm; ) {
        db.exec('BEGIN');
        for (let j = 0; j < 10_000 && i < args.outageWarm; j++, i++) insert();
        db.exec('COMMIT');
        await yieldLoop();
      }
      await db.flush();
      db.checkpoint();
      log(`[outage] warmed: ${fmtInt(args.outageWarm)} rows, SQLite wasm memory ${fmtMiB(wasmBytes())}`);
    }
    gc();
    // --outage-control: the same load and samples with S3 up (what SQLite and the allocator grow by anyway).
    if (!args.outageControl) proxy.setDown(true);
    log(`[outage] S3 ${args.outageControl ? 'up (control run)' : 'down'}; ${P.outageRate} commits/s for ${P.outageMs / 1000} s`);
    const t0 = now();
    const sample = () => {
      const m = process.memoryUsage();
      samples.push({ t: now() - t0, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, wasm: wasmBytes() });
      const s = samples.length;
      if (s % 60 === 0) log(`[outage] ${s} s: RSS ${fmtMiB(m.rss)}, heap ${fmtMiB(m.heapUsed)}, txid ${db.txid}, WAL ${fmtMiB(fileSize(`${h.file}-wal`))}`);
    };
    const timer = setInterval(sample, 1000);
    let writeError = null;
    let run = { commits: 0, ms: 0, maxBehind: 0 };
    try {
      run = await paced(db, insert, P.outageRate, P.outageMs);
    } catch (e) {
      writeError = e;
    }
    clearInterval(timer);
    const tEnd = now();
    gc();
    const afterGc = process.memoryUsage();
    const stDown = db.status();
    const walAtEnd = fileSize(`${h.file}-wal`);
    const failedDuring = events.filter((e) => e.t >= t0 && e.t < tEnd && !ok(e)).length;
    const base = samples.slice(0, P.rssBaselineS);
    const avg = (arr, k) => arr.reduce((s, x) => s + x[k], 0) / arr.length;
    const last = samples.at(-1);
    const r = {
      ms: run.ms,
      commits: run.commits,
      rate: (run.commits * 1000) / run.ms,
      maxBehind: run.maxBehind,
      writeError: writeError ? `${writeError.code ?? ''} ${writeError.message}`.trim() : null,
      baseRss: avg(base, 'rss'),
      baseHeap: avg(base, 'heapUsed'),
      baseExternal: avg(base, 'external'),
      baseWasm: avg(base, 'wasm'),
      endWasm: last.wasm,
      rss10: samples[P.rssBaselineS - 1]?.rss ?? NaN,
      endRss: last.rss,
      endHeap: last.heapUsed,
      endExternal: last.external,
      peakRss: Math.max(...samples.map((s) => s.rss)),
      gcRss: afterGc.rss,
      gcHeap: afterGc.heapUsed,
      gcExternal: afterGc.external,
      pending: stDown.pendingTransactions,
      pendingWal: stDown.pendingWalBytes,
      walAtEnd,
      walLimitReached: stDown.walLimitReached,
      failedDuring,
      lastError: stDown.lastError?.message ?? null,
      curve: samples.filter((_, i) => (i + 1) % Math.max(1, Math.round(samples.length / 10)) === 0).map((s) => `${Math.round(s.t / 1000)} s ${(s.rss / 2 ** 20).toFixed(0)}`),
    };
    r.growth = r.endRss - r.baseRss;
    // After the first minute (JIT, SQLite's page cache and the allocators settle): the slope per
    // waiting transaction, RSS and its parts.
    const at60 = samples.find((x) => x.t >= 60_000);
    if (at60 && last.t > at60.t + 30_000) {
      const txns = (r.rate * (last.t - at60.t)) / 1000;
      r.slope = { from: at60.t, txns, rss: (last.rss - at60.rss) / txns, external: (last.external - at60.external) / txns, wasm: (last.wasm - at60.wasm) / txns, heap: (last.heapUsed - at60.heapUsed) / txns };
    }
    // Back up: how long until everything committed during the outage is durable.
    const target = db.txid;
    proxy.setDown(false);
    const u0 = now();
    log(`[outage] S3 up again; waiting for durable to reach ${target}`);
    let catchupRss = 0;
    let lastLog = u0;
    while (db.status().durableTxid < target && now() - u0 < P.catchupTimeoutMs) {
      catchupRss = Math.max(catchupRss, process.memoryUsage().rss);
      if (now() - lastLog > 30_000) {
        lastLog = now();
        const st = db.status();
        log(`[outage] catch-up ${((now() - u0) / 1000).toFixed(0)} s: durable ${st.durableTxid} / ${target}, RSS ${fmtMiB(process.memoryUsage().rss)}`);
      }
      await sleep(100);
    }
    const st = db.status();
    r.caughtUp = st.durableTxid >= target;
    r.catchupMs = now() - u0;
    r.durableAtGiveUp = st.durableTxid;
    r.target = target;
    r.catchupPeakRss = catchupRss;
    const firstOk = events.find((e) => e.t >= u0 && isPut(e) && ok(e));
    r.firstOkPutMs = firstOk ? firstOk.t - u0 : NaN;
    r.catchupPuts = events.filter((e) => e.t >= u0 && isPut(e)).length;
    r.lastErrorAfter = st.lastError?.message ?? null;
    r.state = st.state;
    results.outage = r;
    log(`[outage] RSS growth ${fmtMiB(r.growth)}; catch-up ${r.caughtUp ? `${(r.catchupMs / 1000).toFixed(1)} s` : 'not done'}`);
  } finally {
    if (h) {
      try {
        await closeAndRemove(h, 600_000);
      } catch (e) {
        if (results.outage) results.outage.closeError = e.message;
      }
    }
    await proxy.stop();
  }
  const r = results.outage;
  const MiB32 = 32 * 2 ** 20;
  emit(`## (5) RSS during an S3 outage, then catch-up${args.outageControl ? ' (CONTROL RUN: --outage-control, S3 stays up)' : ''}`);
  emit('');
  if (args.outageControl) emit('Control run: everything below as for the outage, but the proxy is never set down, so transactions become durable and checkpoints run; "pending" and "catch-up" then describe the end of a normal run.\n');
  emit(`Fault proxy in front of s3rver; openReplicated through it (default window, walLimitBytes ${fmtInt(P.outageWalLimit / 2 ** 30)} GiB so the limit does not trip: ${P.outageMs / 1000} s at ${fmtInt(P.outageRate)} commits/s is ~${((P.outageMs / 1000) * P.outageRate * (PAGE_SIZE + 24) / 1e9).toFixed(1)} GB of WAL), schema + flush, ${args.outageWarm ? `${fmtInt(args.outageWarm)} rows in transactions of 10,000 with S3 up, flush, checkpoint (--outage-warm: SQLite's page cache is full before the outage, as in a running application), ` : ''}gc(), setDown(true), then ${fmtInt(P.outageRate)} single-row commits/s paced for ${P.outageMs / 1000} s${Q ? ' (--quick: 60 s, not the 10 minutes of the target)' : ''}.`);
  emit(`process.memoryUsage() of this process every 1 s (s3rver is a child process and not counted; the fault proxy runs in this process and only resets connections while down). Growth = RSS at the end minus the average of the first ${P.rssBaselineS} samples. Then setDown(false) with the writes stopped; catch-up = until status().durableTxid reaches the last txid (polled every 100 ms).`);
  emit('');
  emit('| | value |');
  emit('|---|---:|');
  emit(`| commits during the outage | ${fmtInt(r.commits)} in ${(r.ms / 1000).toFixed(1)} s (${fmtInt(r.rate)}/s; worst backlog of the pacer ${fmtInt(r.maxBehind)} commits)${r.writeError ? `; writes failed: ${r.writeError}` : ''} |`);
  emit(`| RSS, first ${P.rssBaselineS} s average | ${fmtMiB(r.baseRss)} (heapUsed ${fmtMiB(r.baseHeap)}, external ${fmtMiB(r.baseExternal)}, SQLite wasm memory ${fmtMiB(r.baseWasm)}) |`);
  emit(`| RSS at ${P.rssBaselineS} s | ${fmtMiB(r.rss10)} |`);
  emit(`| RSS at the end of the outage | ${fmtMiB(r.endRss)} (heapUsed ${fmtMiB(r.endHeap)}, external ${fmtMiB(r.endExternal)}, SQLite wasm memory ${fmtMiB(r.endWasm)}) |`);
  emit(`| after the outage, gc() | RSS ${fmtMiB(r.gcRss)} (heapUsed ${fmtMiB(r.gcHeap)}, external ${fmtMiB(r.gcExternal)}) |`);
  emit(`| RSS growth (end - first ${P.rssBaselineS} s average) | ${fmtMiB(r.growth)} (${(r.growth / 1e6).toFixed(1)} MB) |`);
  emit(`| RSS peak during the outage / during catch-up | ${fmtMiB(r.peakRss)} / ${fmtMiB(r.catchupPeakRss)} |`);
  emit(`| RSS over time (MiB) | ${r.curve.join(', ')} |`);
  if (r.slope) emit(`| after the first minute, per waiting transaction (${fmtInt(r.slope.txns)} of them): RSS / external (SQLite wasm memory) / heapUsed | ${r.slope.rss.toFixed(1)} B / ${r.slope.external.toFixed(1)} B (${r.slope.wasm.toFixed(1)} B) / ${r.slope.heap.toFixed(1)} B |`);
  emit(`| pending at the end: transactions, WAL bytes; -wal file | ${fmtInt(r.pending)}, ${fmtMiB(r.pendingWal)}; ${fmtMiB(r.walAtEnd)} |`);
  emit(`| failed requests during the outage; walLimitReached | ${fmtInt(r.failedDuring)}; ${r.walLimitReached} |`);
  emit(`| catch-up after setDown(false) | ${r.caughtUp ? `${(r.catchupMs / 1000).toFixed(1)} s` : `NOT caught up after ${(r.catchupMs / 1000).toFixed(0)} s (durable ${fmtInt(r.durableAtGiveUp)} of ${fmtInt(r.target)}; state ${r.state}; last error ${r.lastErrorAfter})`} |`);
  emit(`| first successful PUT after setDown(false); PUTs until caught up | ${Number.isFinite(r.firstOkPutMs) ? `${fmtInt(r.firstOkPutMs)} ms` : 'none'}; ${fmtInt(r.catchupPuts)} |`);
  if (r.closeError) emit(`| close() after catch-up | failed: ${r.closeError} |`);
  emit('');
  emit(`(5) RSS growth over ${(r.ms / 1000).toFixed(0)} s of outage at ${fmtInt(r.rate)} commits/s: ${fmtMiB(r.growth)}; target <= 32 MiB over 10 minutes: ${Q ? `${verdict(r.growth <= MiB32)} after only 60 s (--quick)` : verdict(r.growth <= MiB32)}. Catch-up: ${r.caughtUp ? `${(r.catchupMs / 1000).toFixed(1)} s` : 'not caught up'}`);
  emit('');
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

function summaryTable(results, errors) {
  const rows = [];
  const c = results.commits;
  rows.push(['1', `commits/s, replication on / off (${c ? `on ${fmtInt(c.onRate)}, off ${fmtInt(c.offRate)}` : 'not run'})`, c ? fmtX(c.ratio) : errors.commits ? 'error' : '-', '>= 0.95x', c ? verdict(c.ratio >= 0.95) : '-']);
  const l = results.lag;
  rows.push(['2a', 'lag p50 / p99, window 1 s, 200 commits/s', l ? `${fmtMs(l[0].p50)} / ${fmtMs(l[0].p99)} ms` : errors.lag ? 'error' : '-', 'p99 <= 1100 ms', l ? verdict(l[0].p99 <= 1100) : '-']);
  rows.push(['2b', 'lag p50 / p99, window 0, 200 commits/s', l ? `${fmtMs(l[1].p50)} / ${fmtMs(l[1].p99)} ms` : errors.lag ? 'error' : '-', 'p99 <= 50 ms', l ? verdict(l[1].p99 <= 50) : '-']);
  const b = results.bytes;
  if (b) {
    for (const r of b) {
      const def = r.windowMs === 1000;
      rows.push([`3${'abcd'[b.indexOf(r)]}`, `segment / WAL bytes, 10k commits, window ${r.windowMs === 1000 ? '1 s' : '0'}, ${r.mode === 'paced' ? '1,000/s' : 'unpaced'} (snapshot ${fmtInt(r.snapshotBytes)} B)`, r.ratio.toFixed(4), def ? '<= 0.03' : '-', def ? verdict(r.ratio <= 0.03) : '-']);
    }
  } else rows.push(['3', 'segment / WAL bytes', errors.bytes ? 'error' : '-', '<= 0.03', '-']);
  const p = results.puts;
  rows.push(['4a', `PUTs/min loaded (1,000 commits/s, ${p ? (p.loadMs / 1000).toFixed(0) : '-'} s)`, p ? p.loadedPerMin.toFixed(0) : errors.puts ? 'error' : '-', '-', '-']);
  rows.push(['4b', `PUTs/min idle after flush (${p ? (p.idleMs / 1000).toFixed(0) : '-'} s)`, p ? `${p.idlePerMin.toFixed(1)} (${p.idlePuts} PUTs)` : errors.puts ? 'error' : '-', '0', p ? verdict(p.idlePuts === 0) : '-']);
  const o = results.outage;
  rows.push(['5a', `RSS growth, S3 down, 1,000 commits/s for ${o ? (o.ms / 1000).toFixed(0) : P.outageMs / 1000} s`, o ? `${fmtMiB(o.growth)}` : errors.outage ? 'error' : '-', '<= 32 MiB / 10 min', o ? `${verdict(o.growth <= 32 * 2 ** 20)}${Q ? ' (60 s only)' : ''}` : '-']);
  rows.push(['5b', 'catch-up after S3 is back', o ? (o.caughtUp ? `${(o.catchupMs / 1000).toFixed(1)} s` : `not in ${(o.catchupMs / 1000).toFixed(0)} s`) : errors.outage ? 'error' : '-', '-', '-']);
  emit('## Summary');
  emit('');
  emit('| # | figure | measured | target | |');
  emit('|---|---|---:|---|---|');
  for (const r of rows) emit(`| ${r.join(' | ')} |`);
  emit('');
  for (const [k, e] of Object.entries(errors)) emit(`Section ${k} failed: ${e}`);
}

/** When the dist this process loaded was built: the newest .js under packages/{vfs,storage,format,shipper}/dist. */
function distBuilt() {
  let newest = 0;
  for (const pkg of ['vfs', 'storage', 'format', 'shipper']) {
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
  emit(`# walship shipper benchmark, ${date.slice(0, 10)}`);
  emit('');
  emit(`Command: \`node ${relative(process.cwd(), fileURLToPath(import.meta.url)) || 'bench/shipper.mjs'}${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`  `);
  emit(`Date: ${date}  `);
  emit(`Machine: ${cpus()[0]?.model?.trim()} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${platform()} ${release()}; Node ${process.version}; load average (1 min) at start ${loadavg()[0].toFixed(2)}  `);
  emit(`Code: packages/*/dist at HEAD ${head}, newest dist file written ${distBuilt()}; @walship/shipper ${version('packages/shipper')}; S3: s3rver ${version('test/node_modules/s3rver')} in a child process on 127.0.0.1  `);
  emit(`Database: page_size ${PAGE_SIZE}, cache_size -${CACHE_KIB}, synchronous NORMAL; table t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT), rows of a random int and a 96..104-byte string${Q ? '  ' : ''}`);
  if (Q) emit('Mode: --quick (shorter phases; outage 60 s instead of 10 min)');
  emit('');

  dir = mkdtempSync(join(tmpdir(), 'walship-shipbench-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results = {};
  const errors = {};
  try {
    s3 = await servers.startS3rver({ bucket: 'walship-bench' });
    const table = { commits: sectionCommits, lag: sectionLag, bytes: sectionBytes, puts: sectionPuts, outage: sectionOutage };
    for (const s of sections) {
      try {
        await table[s](results);
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
  emit(`Total ${((now() - started) / 1000).toFixed(0)} s; load average (1 min) at end ${loadavg()[0].toFixed(2)}`);
  if (args.out || (args.save && !args.only)) {
    const file = args.out ?? join(here, 'results', `shipper-${date.slice(0, 10)}${Q ? '-quick' : ''}.txt`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${out.join('\n')}\n`);
    log(`wrote ${relative(process.cwd(), file)}`);
  }
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
});
