#!/usr/bin/env node
// walship replicated vs better-sqlite3: the table of issue 11 in one run, every measurement in its
// own child process, engines interleaved. See bench/README.md for what every number means.
//
//   cd /work/main && npx tsc -b && node bench/replicated.mjs   full run (~4 min), writes bench/results/replicated-<date>.md
//   node bench/replicated.mjs --quick                         1 repetition, shorter steady load and outage (~1.5 min)
//   node bench/replicated.mjs --only table,steady,outage       a filtered run (not saved unless --out FILE)
//
// Sections: table (better-sqlite3 / replicated / replication off: 20,000 autocommit INSERTs, 300,000 rows
//           in one transaction, 100,000 PK reads; --reps repetitions, order rotated), steady (1,000
//           commits/s paced: lag p50/p99 commit -> durable, segment PUTs per batch window), outage (S3
//           down behind the fault proxy: RSS per waiting transaction)
// Options: --reps N (default 3, --quick 1)   --compare-encoder (table: a 4th engine, openReplicated with encoder: { thread: 'main' })
//          --baseline DIR (table: another engine, openReplicated from DIR/packages/*/dist: another build, e.g. a worktree of an older commit)
//          --outage-commits N (default 60000, --quick 20000)   --no-save   --out FILE
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, writeSync } from 'node:fs';
import { tmpdir, cpus, totalmem, release, platform, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import {
  PAGE_SIZE,
  CACHE_KIB,
  SCHEMA,
  gc,
  quiesce,
  now,
  log,
  yieldLoop,
  fmtInt,
  fmtMs,
  fmtMiB,
  fmtX,
  verdict,
  inserter,
  paced,
  mulberry32,
  percentile,
  median,
  withTimeout,
  isPut,
} from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const require = createRequire(import.meta.url);
const SECTIONS = ['table', 'steady', 'outage'];
const LABEL = { 'better-sqlite3': 'better-sqlite3 12', replicated: 'walship openReplicated', off: 'walship, replication off', 'main-thread': "openReplicated, encoder: { thread: 'main' }", 'baseline-build': 'openReplicated, --baseline build' };

function parseArgs(argv) {
  const a = { quick: false, only: null, save: true, out: null, reps: null, outageCommits: null, child: null, compareEncoder: false, baseline: null };
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
      case '--reps': a.reps = positive(value()); break;
      case '--outage-commits': a.outageCommits = positive(value()); break;
      case '--no-save': a.save = false; break;
      case '--compare-encoder': a.compareEncoder = true; break;
      case '--baseline': a.baseline = value(); break;
      case '--out': a.out = value(); break;
      case '--child': a.child = value(); break;
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
const ENGINES = ['better-sqlite3', 'replicated', 'off', ...(args.compareEncoder ? ['main-thread'] : []), ...(args.baseline ? ['baseline-build'] : [])];
const BASELINE = args.baseline ?? process.env.WALSHIP_BENCH_BASELINE ?? null;
const Q = args.quick;
const P = {
  reps: args.reps ?? (Q ? 1 : 3),
  commits: 20_000, // (a) single-row autocommit INSERTs
  commitsWarm: 500,
  yieldEvery: 500, // (a) await setImmediate every 500 commits
  rows: 300_000, // (b) rows in one transaction
  reads: 100_000, // (c) PK point reads over every row
  steadyRate: 1000, // steady: paced commits per second
  steadyWarmMs: 2000, // steady: paced, not recorded
  steadyMs: Q ? 8000 : 20_000, // steady: recorded
  outageWarm: 15_000, // outage: commits before the first sample (the first upload retries set the allocator's high-water mark; with maxPendingMemoryBytes > 0 they would fill the page budget)
  outageCommits: args.outageCommits ?? (Q ? 20_000 : 60_000),
  outageRate: 1000,
};

// ---------------------------------------------------------------------------------------------
// Children: one measurement each, a JSON line on stdout
// ---------------------------------------------------------------------------------------------

const s3env = () => JSON.parse(process.env.WALSHIP_BENCH_S3 ?? 'null');

async function loadWalship(root = repo) {
  const shipper = await import(pathToFileURL(join(root, 'packages/shipper/dist/index.js')).href);
  const vfs = await import(pathToFileURL(join(root, 'packages/vfs/dist/index.js')).href);
  return { shipper, vfs };
}

function replicatedOptions(s3, prefix, endpoint, extra) {
  return {
    s3: { bucket: s3.bucket, prefix, endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } },
    lease: false,
    logLevel: 'silent',
    ...extra,
  };
}

/** Opens one engine on `file`; every engine: page_size 8192, cache 16 MiB, WAL, synchronous NORMAL. */
async function openEngine(engine, file, extra = {}) {
  if (engine === 'better-sqlite3') {
    const BetterSqlite3 = require(join(repo, 'test/node_modules/better-sqlite3'));
    const db = new BetterSqlite3(file);
    db.pragma(`page_size = ${PAGE_SIZE}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`cache_size = -${CACHE_KIB}`);
    return { db, flush: async () => undefined, settle: () => db.pragma('wal_checkpoint(TRUNCATE)'), close: async () => db.close(), events: [] };
  }
  const { shipper, vfs } = await loadWalship(engine === 'baseline-build' ? BASELINE : repo);
  if (engine === 'off') {
    const db = await vfs.openDatabase(file, { capture: false, pageSize: PAGE_SIZE, synchronous: 'NORMAL' });
    db.pragma(`cache_size = -${CACHE_KIB}`);
    return { db, flush: async () => undefined, settle: () => db.checkpoint(), close: async () => db.close(), events: [] };
  }
  const s3 = s3env();
  if (engine === 'main-thread') extra = { ...extra, options: { ...(extra.options ?? {}), encoder: { thread: 'main' } } };
  const events = [];
  const endpoint = extra.endpoint ?? s3.endpoint;
  const db = await shipper.openReplicated(
    file,
    replicatedOptions(s3, `bench-replicated/${process.pid}-${Date.now()}`, endpoint, {
      onRequest: (e) => events.push({ t: now(), op: e.operation, status: e.status, key: e.key ?? '' }),
      ...(extra.options ?? {}),
    }),
  );
  db.pragma(`cache_size = -${CACHE_KIB}`);
  return {
    db,
    events,
    flush: () => withTimeout(db.flush(), 300_000, 'flush'),
    settle: () => db.checkpoint(),
    close: () => withTimeout(db.close({ timeoutMs: 120_000 }), 150_000, 'close'),
  };
}

/** (a) (b) (c) on one fresh file. */
async function childTable(engine, dir) {
  const file = join(dir, 'bench.db');
  const h = await openEngine(engine, file);
  const { db } = h;
  db.exec(SCHEMA);
  const insert = inserter(db);
  for (let i = 0; i < P.commitsWarm; i++) insert();
  await h.flush();
  quiesce();
  let t0 = now();
  for (let i = 0; i < P.commits; ) {
    for (let j = 0; j < P.yieldEvery && i < P.commits; j++, i++) insert();
    await yieldLoop();
  }
  const commitsMs = now() - t0;
  t0 = now();
  await h.flush();
  const commitsFlushMs = now() - t0;

  quiesce();
  t0 = now();
  db.exec('BEGIN');
  for (let i = 0; i < P.rows; i++) insert();
  db.exec('COMMIT');
  const rowsMs = now() - t0;
  await h.flush();
  h.settle();

  const total = P.commitsWarm + P.commits + P.rows;
  const rnd = mulberry32(0xc0ffee);
  const ids = new Int32Array(P.reads);
  for (let i = 0; i < ids.length; i++) ids[i] = 1 + Math.floor(rnd() * total);
  const select = db.prepare('SELECT * FROM t WHERE id = ?');
  for (let i = 0; i < 10_000; i++) select.get(ids[i]);
  quiesce();
  t0 = now();
  let found = 0;
  for (let i = 0; i < ids.length; i++) if (select.get(ids[i]) !== undefined) found++;
  const readsMs = now() - t0;
  if (found !== ids.length) throw new Error(`${engine}: ${ids.length - found} reads found no row`);
  const puts = h.events.filter((e) => isPut(e) && e.key.endsWith('.seg')).length;
  await h.close();
  return { engine, commitsMs, commitsFlushMs, rowsMs, readsMs, segmentPuts: puts };
}

/** Steady paced load at the default window: lag commit -> durable, and segment PUTs per window. */
async function childSteady(dir, engine = 'replicated') {
  const h = await openEngine(engine, join(dir, 'steady.db'));
  const { db, events } = h;
  db.exec(SCHEMA);
  await h.flush();
  const insert = inserter(db);
  const rec = [];
  const lags = [];
  let ptr = 0;
  const timer = setInterval(() => {
    const d = db.status().durableTxid;
    const t = now();
    while (ptr < rec.length && rec[ptr].txid <= d) lags.push(t - rec[ptr++].t);
  }, 1);
  const warm = Math.round((P.steadyWarmMs * P.steadyRate) / 1000);
  let t0 = 0;
  const run = await paced(db, insert, P.steadyRate, P.steadyWarmMs + P.steadyMs, (txid, t, i) => {
    if (i === warm) t0 = t;
    if (i >= warm) rec.push({ txid, t });
  });
  const t1 = now();
  const deadline = now() + 30_000;
  while (ptr < rec.length && now() < deadline) await new Promise((r) => setTimeout(r, 5));
  clearInterval(timer);
  const segs = events.filter((e) => e.t >= t0 && e.t < t1 && isPut(e) && e.key.endsWith('.seg'));
  const metrics = await db.metrics();
  const checkpoints = Number(/^walship_checkpoints_total\S*\s+(\S+)/m.exec(metrics)?.[1] ?? NaN);
  const gaps = segs.slice(1).map((e, i) => e.t - segs[i].t).sort((a, b) => a - b);
  const sorted = lags.sort((a, b) => a - b);
  await h.close();
  const windowMs = 1000;
  return {
    rate: (run.commits * 1000) / run.ms,
    recorded: rec.length,
    resolved: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
    seconds: (t1 - t0) / 1000,
    segmentPuts: segs.length,
    putsPerWindow: segs.length / ((t1 - t0) / windowMs),
    gapP10: percentile(gaps, 0.1),
    gapP50: percentile(gaps, 0.5),
    checkpoints,
  };
}

/** After gc (twice, with a pause between): process.memoryUsage(). */
async function settledMemory() {
  gc();
  await new Promise((r) => setTimeout(r, 200));
  gc();
  return process.memoryUsage();
}

/**
 * S3 down (fault proxy): RSS growth per transaction waiting for it. `baseline`: the same commits
 * through walship's VFS with a sink that keeps nothing and no checkpoint, so the WAL grows the same
 * way: what SQLite and the VFS cost per commit without a shipper (page cache filling, wal-index).
 */
async function childOutage(dir, baseline) {
  const servers = await import(pathToFileURL(join(repo, 'test/dist/servers/index.js')).href);
  const s3 = s3env();
  const proxy = baseline ? null : await servers.startFaultProxy({ target: s3.endpoint });
  const file = join(dir, 'outage.db');
  let h;
  if (baseline) {
    const { vfs } = await loadWalship();
    const db = await vfs.openDatabase(file, { pageSize: PAGE_SIZE, synchronous: 'NORMAL', onCommit: () => {} });
    db.pragma(`cache_size = -${CACHE_KIB}`);
    h = { db, flush: async () => undefined, close: async () => db.close() };
  } else {
    h = await openEngine('replicated', file, { endpoint: proxy.endpoint, options: { walLimitBytes: 16 * 2 ** 30 } });
  }
  const { db } = h;
  db.exec(SCHEMA);
  await h.flush();
  const insert = inserter(db);
  proxy?.setDown(true);
  await paced(db, insert, P.outageRate, (P.outageWarm * 1000) / P.outageRate);
  // A gc'd sample every 5,000 commits; per commit = least-squares slope over them (a single
  // high-water step of the allocator moves it less than a first/last difference).
  const samples = [];
  let commits = 0;
  let ms = 0;
  const sample = async () => {
    const m = await settledMemory();
    samples.push({ n: commits, rss: m.rss, held: m.heapUsed + m.arrayBuffers });
  };
  await sample();
  while (commits < P.outageCommits) {
    const step = Math.min(5000, P.outageCommits - commits);
    const r = await paced(db, insert, P.outageRate, (step * 1000) / P.outageRate);
    commits += r.commits;
    ms += r.ms;
    await sample();
  }
  const pending = baseline ? null : db.status().pendingTransactions;
  let catchupMs = null;
  if (!baseline) {
    proxy.setDown(false);
    const u0 = now();
    await h.flush();
    catchupMs = now() - u0;
  }
  await h.close();
  await proxy?.stop();
  const slope = (k) => {
    const mx = samples.reduce((a, x) => a + x.n, 0) / samples.length;
    const my = samples.reduce((a, x) => a + x[k], 0) / samples.length;
    return samples.reduce((a, x) => a + (x.n - mx) * (x[k] - my), 0) / samples.reduce((a, x) => a + (x.n - mx) ** 2, 0);
  };
  return {
    baseline,
    commits,
    seconds: ms / 1000,
    pending,
    rss0: samples[0].rss,
    rss1: samples.at(-1).rss,
    rssPerTxn: slope('rss'),
    heldPerTxn: slope('held'),
    rssCurve: samples.map((x) => Math.round(x.rss / 2 ** 20)),
    catchupMs,
  };
}

async function child(task) {
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-replicated-'));
  try {
    const [kind, engine] = task.split(':');
    const r = kind === 'table' ? await childTable(engine, dir) : kind === 'steady' ? await childSteady(dir, engine) : await childOutage(dir, engine === 'baseline');
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    if (process.env.WALSHIP_BENCH_DEBUG) process.stderr.write(`${JSON.stringify(r)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: s3rver, interleaved children, the report
// ---------------------------------------------------------------------------------------------

function runChild(task, s3) {
  return new Promise((resolve, reject) => {
    const argv = [fileURLToPath(import.meta.url), '--child', task, ...(Q ? ['--quick'] : []), ...(args.outageCommits ? ['--outage-commits', String(args.outageCommits)] : [])];
    const c = spawn(process.execPath, argv, { env: { ...process.env, WALSHIP_BENCH_S3: JSON.stringify(s3), NODE_NO_WARNINGS: '1', ...(BASELINE ? { WALSHIP_BENCH_BASELINE: BASELINE } : {}) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', (code, signal) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line) resolve(JSON.parse(line.slice(7)));
      else reject(new Error(`child ${task} exited with ${signal ?? code}: ${out.slice(-2000)}`));
    });
  });
}

const report = [];
const emit = (line = '') => {
  report.push(line);
  process.stdout.write(`${line}\n`);
};

async function sectionTable(s3) {
  const runs = [];
  for (let rep = 0; rep < P.reps; rep++) {
    const order = ENGINES.map((_, i) => ENGINES[(i + rep) % ENGINES.length]);
    for (const engine of order) {
      log(`[table] rep ${rep + 1}/${P.reps}: ${engine}`);
      const r = await runChild(`table:${engine}`, s3);
      runs.push(r);
      log(`[table] ${engine}: commits ${fmtInt((P.commits * 1000) / r.commitsMs)}/s, rows ${fmtInt((P.rows * 1000) / r.rowsMs)}/s, reads ${fmtInt((P.reads * 1000) / r.readsMs)}/s`);
    }
  }
  const rate = (engine, k, n) => median(runs.filter((r) => r.engine === engine).map((r) => (n * 1000) / r[k]));
  const spread = (engine, k, n) => {
    const v = runs.filter((r) => r.engine === engine).map((r) => (n * 1000) / r[k]);
    return `${fmtInt(Math.min(...v))} .. ${fmtInt(Math.max(...v))}`;
  };
  const W = [
    ['commits', 'commitsMs', P.commits, `${fmtInt(P.commits)} single-row autocommit INSERTs (await setImmediate every ${P.yieldEvery}), commits/s`, 1.0],
    ['rows', 'rowsMs', P.rows, `${fmtInt(P.rows)} rows in one transaction, rows/s`, 0.9],
    ['reads', 'readsMs', P.reads, `${fmtInt(P.reads)} primary-key reads, reads/s`, 0.9],
  ];
  emit('## Replicated vs better-sqlite3');
  emit('');
  emit(`Each cell: median of ${P.reps} child processes (one per engine and repetition, engine order rotated each repetition; spread in brackets). Every child: fresh file in a temporary directory on the same disk, page_size ${PAGE_SIZE}, cache_size -${CACHE_KIB}, WAL, synchronous NORMAL; ${P.commitsWarm} untimed commits, then (a), (b), (c) in that order on the same table; \`sync\` + gc before each. replicated = \`openReplicated\` with default options (1 s window, zstd, 4 MiB checkpoints), lease off, s3rver on loopback; it is flushed (untimed) after (a) and (b). off = \`openDatabase(file, { capture: false })\`: walship's VFS, no replication, SQLite's autocheckpoint.`);
  emit('');
  const cmp = args.compareEncoder;
  const base = args.baseline !== null;
  if (base) emit(`--baseline build: ${args.baseline} (${gitHead(args.baseline)}).`);
  emit(`| workload | ${ENGINES.map((e) => LABEL[e]).join(' | ')} | replicated / better-sqlite3 | goal | replicated / off |${cmp ? ' worker / main thread |' : ''}${base ? ' this build / baseline build | baseline / better-sqlite3 |' : ''}`);
  emit(`|---|${ENGINES.map(() => '---:|').join('')}---:|---:|---:|${cmp ? '---:|' : ''}${base ? '---:|---:|' : ''}`);
  const ratios = {};
  for (const [name, k, n, label, goal] of W) {
    const r = rate('replicated', k, n) / rate('better-sqlite3', k, n);
    const onOff = rate('replicated', k, n) / rate('off', k, n);
    ratios[name] = { r, onOff, goal };
    const vsMain = cmp ? ` ${fmtX(rate('replicated', k, n) / rate('main-thread', k, n))} |` : '';
    const vsBase = base ? ` ${fmtX(rate('replicated', k, n) / rate('baseline-build', k, n))} | ${fmtX(rate('baseline-build', k, n) / rate('better-sqlite3', k, n))} |` : '';
    emit(`| ${label} | ${ENGINES.map((e) => `${fmtInt(rate(e, k, n))} (${spread(e, k, n)})`).join(' | ')} | ${fmtX(r)} | >= ${goal.toFixed(1)}x: ${verdict(r >= goal)} | ${fmtX(onOff)} |${vsMain}${vsBase}`);
  }
  const rep = runs.filter((r) => r.engine === 'replicated');
  emit('');
  emit(`replicated: flush() after (a) took ${fmtInt(median(rep.map((r) => r.commitsFlushMs)))} ms (median); segment PUTs per child ${rep.map((r) => r.segmentPuts).join(', ')}.`);
  emit('');
  return ratios;
}

async function sectionSteady(s3) {
  log(`[steady] ${P.steadyRate} commits/s for ${(P.steadyWarmMs + P.steadyMs) / 1000} s`);
  // With --compare-encoder: worker and main-thread children alternate, twice each.
  const engines = args.compareEncoder ? ['replicated', 'main-thread', 'replicated', 'main-thread'] : ['replicated'];
  const rows = [];
  for (const engine of engines) rows.push({ engine, r: await runChild(engine === 'replicated' ? 'steady' : `steady:${engine}`, s3) });
  const r = rows[0].r;
  emit('## Steady load: lag and PUTs per batch window');
  emit('');
  emit(`\`openReplicated\`, default options (1 s window), lease off, s3rver; ${fmtInt(P.steadyRate)} single-row commits/s paced on a timer, ${P.steadyWarmMs / 1000} s not recorded, then ${P.steadyMs / 1000} s recorded. Lag = first poll of \`status().durableTxid\` (setInterval 1 ms) that covers the commit, minus its commit time. Segment PUTs: \`onRequest\` events for \`.seg\` keys during the recorded stretch.`);
  emit('');
  emit(`|${args.compareEncoder ? ' encoder |' : ''} commits/s achieved | lag p50 ms | lag p99 ms | lag max ms | segment PUTs | per 1 s window | gap between PUTs p10 / p50 ms | checkpoints (whole run) |`);
  emit(`|${args.compareEncoder ? '---|' : ''}---:|---:|---:|---:|---:|---:|---:|---:|`);
  for (const { engine, r } of rows) {
    emit(`|${args.compareEncoder ? ` ${engine === 'replicated' ? 'worker' : 'main thread'} |` : ''} ${fmtInt(r.rate)} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtMs(r.max)} | ${r.segmentPuts} in ${r.seconds.toFixed(1)} s | ${r.putsPerWindow.toFixed(2)} | ${fmtMs(r.gapP10)} / ${fmtMs(r.gapP50)} | ${r.checkpoints} |`);
  }
  emit('');
  if (r.resolved < r.recorded) emit(`${r.recorded - r.resolved} recorded commits were not durable 30 s after the load.`);
  return r;
}

async function sectionOutage(s3) {
  log(`[outage] S3 down; ${fmtInt(P.outageWarm)} + ${fmtInt(P.outageCommits)} commits at ${P.outageRate}/s, then the same without a shipper`);
  const r = await runChild('outage:replicated', s3);
  const b = await runChild('outage:baseline', s3);
  emit('## S3 down: memory per waiting transaction');
  emit('');
  emit(`replicated: \`openReplicated\` through the fault proxy in front of s3rver (test/src/servers/fault-proxy.ts), walLimitBytes 16 GiB; proxy down (connections reset); ${fmtInt(P.outageWarm)} commits at ${P.outageRate}/s (the first upload retries set the allocator's high-water mark), then ${fmtInt(P.outageCommits)} more commits at ${P.outageRate}/s with a gc'd sample every 5,000. Then the proxy comes back and flush() times the catch-up. VFS alone: the same commits through \`openDatabase\` with a sink that keeps nothing and no checkpoint (the WAL grows the same way), in its own child: what SQLite (its page cache fills as the table grows; the wal-index grows with the WAL) and the VFS cost without a shipper.`);
  emit('');
  emit('| child | waiting txns at the end | RSS first sample -> last (MiB, every 5,000 commits) | RSS per commit | heapUsed + arrayBuffers per commit | catch-up |');
  emit('|---|---:|---|---:|---:|---:|');
  for (const x of [r, b]) {
    emit(`| ${x.baseline ? 'VFS alone, no shipper' : 'replicated, S3 down'} | ${x.pending === null ? '-' : fmtInt(x.pending)} | ${x.rssCurve.join(', ')} | ${fmtInt(x.rssPerTxn)} B | ${fmtInt(x.heldPerTxn)} B | ${x.catchupMs === null ? '-' : `${(x.catchupMs / 1000).toFixed(1)} s`} |`);
  }
  const perTxn = r.rssPerTxn - b.rssPerTxn;
  emit('');
  emit(`Per commit = least-squares slope over the gc'd samples. The shipper's share of RSS per waiting transaction (replicated minus VFS alone): ${fmtInt(perTxn)} B; what it holds on the JS heap and in ArrayBuffers: ${fmtInt(r.heldPerTxn - b.heldPerTxn)} B. Goal ~50 B (32 MB over 10 minutes at 1k commits/s): ${verdict(perTxn <= 56)}. RSS is the allocator's high-water mark (upload retries re-read up to 16 MiB of pages from the WAL): it moves in steps of several MiB, so a short run is noisy, and this machine is shared.`);
  emit('');
  return { r, b, perTxn };
}

async function main() {
  const only = args.only ?? SECTIONS;
  const servers = await import(pathToFileURL(join(repo, 'test/dist/servers/index.js')).href);
  const server = await servers.startS3rver();
  const s3 = { endpoint: server.endpoint, region: server.region, bucket: server.bucket, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  const t0 = now();
  const load0 = loadavg()[0];
  let head = 'unknown';
  try {
    head = execFileSync('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    if (execFileSync('git', ['-C', repo, 'status', '--porcelain', '--', 'packages'], { encoding: 'utf8' }).trim()) head += ' + uncommitted changes in packages/';
  } catch {
    // Not a git checkout: the report says unknown.
  }
  emit(`# walship replicated vs better-sqlite3, ${new Date().toISOString().slice(0, 10)}`);
  emit('');
  emit(`Command: \`node bench/replicated.mjs${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`  `);
  emit(`Machine: ${cpus()[0]?.model.trim()} x${cpus().length}, ${fmtInt(totalmem() / 2 ** 30)} GiB RAM, ${platform()} ${release()}; Node ${process.version}; HEAD ${head}; load average (1 min) at start ${load0.toFixed(2)}. The machine is shared (other engineers build and test on it): quote ratios from one run only.`);
  emit('');
  try {
    if (only.includes('table')) await sectionTable(s3);
    if (only.includes('steady')) await sectionSteady(s3);
    if (only.includes('outage')) await sectionOutage(s3);
  } finally {
    await server.stop();
  }
  emit(`Total ${((now() - t0) / 1000).toFixed(0)} s; load average (1 min) at end ${loadavg()[0].toFixed(2)}.`);
  const target = args.out ?? (args.save && !args.only ? join(here, 'results', `replicated-${new Date().toISOString().slice(0, 10)}${Q ? '-quick' : ''}.md`) : null);
  if (target) {
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, `${report.join('\n')}\n`);
    log(`saved ${target}`);
  }
}

if (args.child) await child(args.child);
else await main();

/** The short commit of a checkout (for the --baseline line), or 'not a git checkout'. */
function gitHead(dir) {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'not a git checkout';
  }
}
