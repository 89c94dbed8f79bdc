#!/usr/bin/env node
// walship VFS benchmark: better-sqlite3 (native) vs sqlite-wasm oo1 (:memory:) vs walship with
// capture off and on. See bench/README.md for what every number means.
//
//   node bench/vfs.mjs                      full run (~1-3 min), writes bench/results/vfs-<date>.md
//   node bench/vfs.mjs --quick              sizes / 10, writes bench/results/vfs-<date>-quick.md
//   node bench/vfs.mjs --only commits --engine walship-capture      a filtered run (not saved)
//   node bench/vfs.mjs --profile-summary X.cpuprofile [--marks M.json] [--top 10]   summarise --cpu-prof
//
// Options: --only commits,rows,reads   --engine better-sqlite3,oo1,walship-off,walship-capture
//          --commits N --rows N --reads N (override sizes)   --reps N (default 3; median reported)
//          --no-save   --out FILE
//          --marks M.json (write the timed regions, to restrict --profile-summary to them)
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, writeSync, readFileSync, statSync } from 'node:fs';
import { tmpdir, cpus, totalmem, release, arch, platform, loadavg } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PAGE_SIZE, CACHE_KIB, gc, quiesce, mulberry32, fileSize } from './lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const a = { quick: false, only: null, engines: null, save: true, out: null, sizes: {}, profileSummary: null, top: 10, marks: null, reps: 3 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s) : [arg, undefined];
    const value = () => inline ?? next();
    switch (flag) {
      case '--quick': a.quick = true; break;
      case '--only': a.only = value().split(',').map((s) => WORKLOAD_ALIASES[s.trim()] ?? fail(`unknown workload ${s}`)); break;
      case '--engine':
      case '--engines': a.engines = value().split(',').map((s) => ENGINE_ALIASES[s.trim()] ?? fail(`unknown engine ${s}`)); break;
      case '--commits': a.sizes.commits = positive(value()); break;
      case '--rows': a.sizes.rows = positive(value()); break;
      case '--reads': a.sizes.reads = positive(value()); break;
      case '--no-save': a.save = false; break;
      case '--out': a.out = value(); break;
      case '--profile-summary': a.profileSummary = value(); break;
      case '--top': a.top = positive(value()); break;
      case '--marks': a.marks = value(); break;
      case '--reps': a.reps = positive(value()); break;
      case '-h':
      case '--help':
        writeSync(1, readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 13).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
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

const WORKLOAD_ALIASES = { a: 'commits', commits: 'commits', b: 'rows', rows: 'rows', c: 'reads', reads: 'reads' };
const ENGINE_ALIASES = {
  'better-sqlite3': 'better-sqlite3', native: 'better-sqlite3',
  oo1: 'oo1', 'sqlite-wasm': 'oo1', 'sqlite-wasm-oo1': 'oo1',
  'walship-off': 'walship-off', 'walship-capture-off': 'walship-off',
  'walship-capture': 'walship-on', 'walship-capture-on': 'walship-on', 'walship-on': 'walship-on',
};

// ---------------------------------------------------------------------------------------------
// Profile summary mode (for `node --cpu-prof`)
// ---------------------------------------------------------------------------------------------

const FS_BINDINGS = new Set(['writeBuffer', 'writeBuffers', 'writeString', 'read', 'readBuffers', 'fsync', 'fdatasync', 'ftruncate', 'open', 'close', 'fstat', 'stat', 'lstat', 'unlink', 'access', 'rename', 'mkdir', 'rmdir', 'readdir']);

/** Entry points whose inclusive time the summary reports (names as they appear in walship's dist). */
const INCLUSIVE_NOTE = {
  commitPhaseTwo: 'capture after each commit: scan, checksum, build, emit',
  checkpoint: 'WalshipDatabase/OpenContext.checkpoint: marker + wal_checkpoint',
  xWrite: 'VFS writes, incl. the capture mirror copy',
  xSync: 'VFS fsync',
  xTruncate: 'VFS ftruncate',
  xRead: 'VFS reads (SQLite page reads, checkpoint copy)',
  onCommit: "the benchmark's counting sink",
};
const INCLUSIVE = Object.keys(INCLUSIVE_NOTE);

/** Buckets a call frame into where the time goes. */
function category(cf) {
  const url = cf.url || '';
  const name = cf.functionName || '';
  if (!url) {
    if (name.startsWith('(')) return name; // (program), (garbage collector), (idle), (root)
    // node:fs's C++ bindings (the time of the syscall itself is attributed to them).
    if (FS_BINDINGS.has(name)) return 'node:fs syscalls';
    return 'native/builtin';
  }
  if (url.startsWith('wasm://')) return 'sqlite wasm';
  if (url.startsWith('node:fs') || url === 'fs') return 'node:fs JS wrappers';
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('sqlite-wasm')) return 'sqlite-wasm JS glue';
  if (url.includes('/packages/vfs/dist/')) {
    const file = url.slice(url.indexOf('/packages/vfs/dist/') + '/packages/vfs/dist/'.length);
    return `walship ${file}`;
  }
  if (url.includes('/bench/')) return 'bench loop';
  return 'other JS';
}

function summariseProfile(file, top, marksFile) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const windows = marksFile ? JSON.parse(readFileSync(marksFile, 'utf8')).filter((m) => m.endUs > m.startUs) : null;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parentOf = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const inclusiveUs = new Map(INCLUSIVE.map((name) => [name, 0]));
  const selfUs = new Map();
  // timeDeltas[i] is the time since the previous sample; attribute it to sample i's node.
  let t = prof.startTime;
  let samples = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const delta = Math.max(0, prof.timeDeltas[i] ?? 0);
    t += delta;
    if (windows && !windows.some((w) => t >= w.startUs && t <= w.endUs)) continue;
    const id = prof.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    samples++;
    const seen = new Set();
    for (let p = id; p !== undefined; p = parentOf.get(p)) {
      const name = byId.get(p).callFrame.functionName;
      if (inclusiveUs.has(name) && !seen.has(name)) {
        seen.add(name);
        inclusiveUs.set(name, inclusiveUs.get(name) + delta);
      }
    }
  }
  const total = [...selfUs.values()].reduce((s, v) => s + v, 0);
  const fns = new Map();
  const cats = new Map();
  for (const [id, us] of selfUs) {
    const cf = byId.get(id).callFrame;
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'}\t${where}`;
    const cat = category(cf);
    const f = fns.get(key) ?? { name: cf.functionName || '(anonymous)', where, cat, us: 0 };
    f.us += us;
    fns.set(key, f);
    cats.set(cat, (cats.get(cat) ?? 0) + us);
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1)}%`;
  const ms = (us) => (us / 1000).toFixed(0);
  const lines = [];
  const scope = windows ? `timed regions only (${windows.map((w) => `${w.label} ${((w.endUs - w.startUs) / 1000).toFixed(0)} ms`).join(', ')})` : 'whole process';
  lines.push(`Profile ${file}, ${scope}: ${ms(total)} ms sampled, ${samples} samples`);
  lines.push('');
  lines.push(`| # | function | where | category | self ms | self % |`);
  lines.push(`|---|---|---|---|---:|---:|`);
  [...fns.values()]
    .sort((x, y) => y.us - x.us)
    .slice(0, top)
    .forEach((f, i) => lines.push(`| ${i + 1} | \`${f.name}\` | ${f.where || '-'} | ${f.cat} | ${ms(f.us)} | ${pct(f.us)} |`));
  lines.push('');
  lines.push(`| category | self ms | self % |`);
  lines.push(`|---|---:|---:|`);
  for (const [cat, us] of [...cats].sort((x, y) => y[1] - x[1])) lines.push(`| ${cat} | ${ms(us)} | ${pct(us)} |`);
  lines.push('');
  lines.push(`| inclusive (function and everything it calls) | ms | % |`);
  lines.push(`|---|---:|---:|`);
  for (const name of INCLUSIVE) {
    const us = inclusiveUs.get(name);
    if (us > 0) lines.push(`| \`${name}\` (${INCLUSIVE_NOTE[name]}) | ${ms(us)} | ${pct(us)} |`);
  }
  return lines.join('\n');
}

function shortUrl(url) {
  if (url.startsWith('file://')) {
    try {
      return relative(repo, fileURLToPath(url)).replace(/^packages\/vfs\/node_modules\/@sqlite\.org\//, '');
    } catch {
      return url;
    }
  }
  return url;
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

const STRING_POOL = 1024; // power of two: strings[i & (STRING_POOL - 1)]
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';

/** Same data for every engine: random ints and ~100-byte ASCII strings (96..104 bytes). */
function makeData(n, seed) {
  const rnd = mulberry32(seed);
  const ints = new Int32Array(n);
  for (let i = 0; i < n; i++) ints[i] = Math.floor(rnd() * 2 ** 32) | 0;
  const strings = [];
  for (let i = 0; i < STRING_POOL; i++) {
    const len = 96 + Math.floor(rnd() * 9);
    let s = '';
    for (let j = 0; j < len; j++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
    strings.push(s);
  }
  return { ints, strings };
}

function randomIds(n, max, seed) {
  const rnd = mulberry32(seed);
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = 1 + Math.floor(rnd() * max);
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Engines: each returns the same small adapter
// ---------------------------------------------------------------------------------------------

const CHECKPOINT_EVERY = 1000; // capture on: acknowledge + checkpoint every 1000 commits
const SCHEMA = (name) => `CREATE TABLE ${name}(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)`;
const INSERT = (name) => `INSERT INTO ${name}(a, b) VALUES (?, ?)`;
const SELECT = (name) => `SELECT * FROM ${name} WHERE id = ?`;

const require = createRequire(import.meta.url);

async function loadEngines() {
  const BetterSqlite3 = require(join(repo, 'test/node_modules/better-sqlite3'));
  const bsqlVersion = JSON.parse(readFileSync(join(repo, 'test/node_modules/better-sqlite3/package.json'), 'utf8')).version;
  const wasmPkgDir = join(repo, 'packages/vfs/node_modules/@sqlite.org/sqlite-wasm');
  const wasmPkg = JSON.parse(readFileSync(join(wasmPkgDir, 'package.json'), 'utf8'));
  const wasmEntry = join(wasmPkgDir, wasmPkg.exports['.'].node);
  const sqlite3InitModule = (await import(pathToFileURL(wasmEntry).href)).default;
  const walship = await import(pathToFileURL(join(repo, 'packages/vfs/dist/index.js')).href);
  return { BetterSqlite3, bsqlVersion, sqlite3InitModule, wasmVersion: wasmPkg.version, walship };
}

function betterSqlite3Engine(libs) {
  return {
    id: 'better-sqlite3',
    label: 'better-sqlite3 (native, file)',
    async open(dir) {
      const db = new libs.BetterSqlite3(join(dir, 'bsql.db'));
      db.pragma(`page_size = ${PAGE_SIZE}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = -${CACHE_KIB}`);
      return {
        exec: (sql) => db.exec(sql),
        inserter(table) {
          const st = db.prepare(INSERT(table));
          return (a, b) => st.run(a, b);
        },
        reader(table) {
          const st = db.prepare(SELECT(table));
          return (id) => st.get(id);
        },
        periodic: null,
        settle() {
          db.pragma('wal_checkpoint(TRUNCATE)');
        },
        afterBulk: null,
        value: (sql) => db.prepare(sql).pluck().get(),
        files: [join(dir, 'bsql.db'), join(dir, 'bsql.db-wal')],
        walBytes: () => fileSize(join(dir, 'bsql.db-wal')),
        close: () => db.close(),
        sink: null,
      };
    },
  };
}

function oo1Engine(libs) {
  let sqlite3;
  return {
    id: 'oo1',
    label: 'sqlite-wasm oo1 (:memory:)',
    async open() {
      sqlite3 ??= await libs.sqlite3InitModule();
      const db = new sqlite3.oo1.DB(':memory:');
      const stmts = [];
      return {
        exec: (sql) => db.exec(sql),
        inserter(table) {
          const st = db.prepare(INSERT(table));
          stmts.push(st);
          return (a, b) => {
            st.bind(1, a).bind(2, b);
            st.stepReset();
          };
        },
        reader(table) {
          const st = db.prepare(SELECT(table));
          stmts.push(st);
          return (id) => {
            st.bind(1, id);
            const row = st.step() ? st.get({}) : undefined;
            st.reset();
            return row;
          };
        },
        periodic: null,
        settle() {},
        afterBulk: null,
        value: (sql) => db.selectValue(sql),
        files: [],
        walBytes: () => null,
        close() {
          for (const st of stmts) st.finalize();
          db.close();
        },
        sink: null,
      };
    },
  };
}

function walshipEngine(libs, capture) {
  return {
    id: capture ? 'walship-on' : 'walship-off',
    label: capture ? 'walship capture on' : 'walship capture off',
    async open(dir) {
      const file = join(dir, capture ? 'walship-on.db' : 'walship-off.db');
      const sink = capture ? { txns: 0, pages: 0, bytes: 0, checkpoints: 0, checkpointMisses: {} } : null;
      const db = await libs.walship.openDatabase(
        file,
        capture
          ? {
              synchronous: 'NORMAL',
              pageSize: PAGE_SIZE,
              onCommit(txn) {
                // Count only: proof that every commit produced its page images.
                sink.txns++;
                const pages = txn.pages;
                sink.pages += pages.length;
                for (let i = 0; i < pages.length; i++) sink.bytes += pages[i].data.byteLength;
              },
            }
          : { capture: false, synchronous: 'NORMAL', pageSize: PAGE_SIZE },
      );
      db.pragma(`cache_size = -${CACHE_KIB}`);
      const checkpoint = () => {
        db.acknowledge(db.txid);
        const r = db.checkpoint();
        if (r.checkpointed) sink.checkpoints++;
        else if (r.reason !== 'empty') sink.checkpointMisses[r.reason] = (sink.checkpointMisses[r.reason] ?? 0) + 1;
      };
      return {
        exec: (sql) => db.exec(sql),
        inserter(table) {
          const st = db.prepare(INSERT(table));
          return (a, b) => st.run(a, b);
        },
        reader(table) {
          const st = db.prepare(SELECT(table));
          return (id) => st.get(id);
        },
        // Capture on turns SQLite's autocheckpoint off; the application checkpoints once the sink has
        // everything (here: immediately, it only counts).
        periodic: capture ? checkpoint : null,
        settle() {
          if (capture) checkpoint();
          else db.checkpoint();
        },
        afterBulk: capture ? checkpoint : null,
        value: (sql) => db.prepare(sql).pluck().get(),
        files: [file, `${file}-wal`],
        walBytes: () => fileSize(`${file}-wal`),
        close() {
          if (capture) db.acknowledge(db.txid);
          db.close();
        },
        sink,
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

const now = () => performance.now();

/**
 * Timed regions, in the clock of V8's CPU profiler (process.hrtime, microseconds), so that
 * `--marks FILE` plus `--profile-summary X --marks FILE` can summarise only what was timed.
 */
const marks = [];
let currentLabel = '';
const hrUs = () => Number(process.hrtime.bigint() / 1000n);
function begin() {
  marks.push({ label: currentLabel, startUs: hrUs(), endUs: 0 });
  return now();
}
function end() {
  const t = now();
  marks[marks.length - 1].endUs = hrUs();
  return t;
}
const snap = (sink) => (sink ? { txns: sink.txns, pages: sink.pages, bytes: sink.bytes } : null);
const diff = (a, b) => (a && b ? { txns: b.txns - a.txns, pages: b.pages - a.pages, bytes: b.bytes - a.bytes } : null);
function addSink(total, d) {
  if (!total || !d) return;
  total.txns += d.txns;
  total.pages += d.pages;
  total.bytes += d.bytes;
}
const log = (...m) => process.stderr.write(`${m.join(' ')}\n`);

/** Median repetition (by elapsed time) plus the spread, for the report. */
function summarise(reps, extra = {}) {
  const sorted = [...reps].sort((x, y) => x.ms - y.ms);
  const median = sorted[(sorted.length - 1) >> 1];
  return { ...median, reps: reps.map((r) => r.ms), ...extra };
}

/** (a) single-row autocommit transactions; `reps` timed repetitions of `n` on the same table. */
function runCommits(h, data, n, warm, reps) {
  const { ints, strings } = data;
  const mask = STRING_POOL - 1;
  h.exec(SCHEMA('t'));
  const ins = h.inserter('t');
  for (let i = 0; i < warm; i++) ins(ints[i], strings[i & mask]);
  const periodic = h.periodic;
  const sink = h.sink ? { txns: 0, pages: 0, bytes: 0 } : null;
  const out = [];
  for (let r = 0; r < reps; r++) {
    h.settle();
    quiesce();
    const before = snap(h.sink);
    const t0 = begin();
    if (periodic) {
      for (let i = 0; i < n; i++) {
        ins(ints[i], strings[i & mask]);
        if ((i + 1) % CHECKPOINT_EVERY === 0) periodic();
      }
    } else {
      for (let i = 0; i < n; i++) ins(ints[i], strings[i & mask]);
    }
    out.push({ ops: n, ms: end() - t0 });
    addSink(sink, diff(before, snap(h.sink)));
  }
  const count = h.value('SELECT count(*) FROM t');
  if (count !== reps * n + warm) throw new Error(`commits: expected ${reps * n + warm} rows in t, found ${count}`);
  return summarise(out, { sink });
}

/** (b) many rows in one transaction; each repetition fills a fresh table big1, big2, ... */
function runRows(h, data, n, warm, reps) {
  const { ints, strings } = data;
  const mask = STRING_POOL - 1;
  // Warm up the same code path on a scratch table, then measure on fresh ones.
  h.exec(SCHEMA('warm'));
  const w = h.inserter('warm');
  h.exec('BEGIN');
  for (let i = 0; i < warm; i++) w(ints[i], strings[i & mask]);
  h.exec('COMMIT');
  const sink = h.sink ? { txns: 0, pages: 0, bytes: 0 } : null;
  const out = [];
  for (let r = 1; r <= reps; r++) {
    const table = `big${r}`;
    h.exec(SCHEMA(table));
    h.settle();
    const ins = h.inserter(table);
    quiesce();
    const before = snap(h.sink);
    const t0 = begin();
    h.exec('BEGIN');
    for (let i = 0; i < n; i++) ins(ints[i], strings[i & mask]);
    const t1 = now();
    h.exec('COMMIT');
    const t2 = now();
    // Capture on: the checkpoint SQLite's autocheckpoint would have run inside COMMIT is explicit.
    if (h.afterBulk) h.afterBulk();
    const t3 = end();
    addSink(sink, diff(before, snap(h.sink)));
    const walBytes = h.walBytes();
    const count = h.value(`SELECT count(*) FROM ${table}`);
    if (count !== n) throw new Error(`rows: expected ${n} rows in ${table}, found ${count}`);
    out.push({ ops: n, ms: t3 - t0, loopMs: t1 - t0, commitMs: t2 - t1, checkpointMs: t3 - t2, walBytes, table });
  }
  return summarise(out, { sink, table: `big${reps}` });
}

/** (c) primary-key point reads over a bulk table; a different random id sequence per repetition. */
function runReads(h, table, tableRows, n, warm, reps, seed) {
  // Same starting state for every file engine: WAL checkpointed and empty.
  h.settle();
  const get = h.reader(table);
  const warmIds = randomIds(warm, tableRows, seed ^ 0x5eed);
  let check = 0;
  for (let i = 0; i < warm; i++) check += get(warmIds[i]).a & 1;
  const out = [];
  for (let r = 0; r < reps; r++) {
    const ids = randomIds(n, tableRows, seed + r);
    quiesce();
    let misses = 0;
    const t0 = begin();
    for (let i = 0; i < n; i++) {
      const row = get(ids[i]);
      if (row === undefined) misses++;
      else check += row.a & 1;
    }
    const ms = end() - t0;
    if (misses) throw new Error(`reads: ${misses} ids not found`);
    out.push({ ops: n, ms });
  }
  return summarise(out, { check });
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
const fmtRate = (r) => (r === undefined ? '-' : fmtInt(r));
const fmtRatio = (x) => (x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(2)}x`);
const fmtMiB = (b) => `${(b / 1048576).toFixed(1)} MiB`;

function report(ctx) {
  const { results, engines, workloads, sizes, env, args, totalMs } = ctx;
  const rate = (eng, wl) => {
    const r = results[eng]?.[wl];
    return r ? (r.ops * 1000) / r.ms : undefined;
  };
  const L = [];
  L.push(`# walship VFS benchmark, ${env.date}`);
  L.push('');
  L.push(`Command: \`${env.command}\`  `);
  L.push(`Machine: ${env.cpu} x${env.cores}, ${env.mem}, ${env.os}; Node ${process.version}; load average (1 min) ${env.loadStart} at start, ${loadavg()[0].toFixed(2)} at end  `);
  L.push(`Engines: better-sqlite3 ${env.bsql} (SQLite ${env.bsqlSqlite}); @sqlite.org/sqlite-wasm ${env.wasm} (SQLite ${env.wasmSqlite}); walship from packages/vfs/dist  `);
  L.push(`Settings (all engines): page_size ${PAGE_SIZE}, cache_size -${CACHE_KIB} (KiB); file engines: journal_mode WAL, synchronous NORMAL  `);
  L.push(`Sizes: (a) ${fmtInt(sizes.commits)} commits, (b) ${fmtInt(sizes.rows)} rows, (c) ${fmtInt(sizes.reads)} reads${args.quick ? ' (--quick: /10)' : ''}; median of ${args.reps} timed repetitions each; one process run, total ${(totalMs / 1000).toFixed(1)} s`);
  L.push('');
  const wlLabel = {
    commits: `(a) commits/s: ${fmtInt(sizes.commits)} single-row autocommit INSERTs`,
    rows: `(b) rows/s: ${fmtInt(sizes.rows)} rows in one transaction`,
    reads: `(c) reads/s: ${fmtInt(sizes.reads)} PK point reads`,
  };
  L.push(`| workload | ${engines.map((e) => e.label).join(' | ')} |`);
  L.push(`|---|${engines.map(() => '---:').join('|')}|`);
  for (const wl of workloads) L.push(`| ${wlLabel[wl]} | ${engines.map((e) => fmtRate(rate(e.id, wl))).join(' | ')} |`);
  L.push('');
  L.push(`Spread over the ${args.reps} repetitions (ops/s, slowest .. fastest; the table above shows the median):`);
  L.push('');
  L.push(`| workload | ${engines.map((e) => e.label).join(' | ')} |`);
  L.push(`|---|${engines.map(() => '---:').join('|')}|`);
  for (const wl of workloads) {
    const cell = (e) => {
      const r = results[e.id]?.[wl];
      if (!r) return '-';
      const rates = r.reps.map((ms) => (r.ops * 1000) / ms).sort((x, y) => x - y);
      return `${fmtInt(rates[0])} .. ${fmtInt(rates[rates.length - 1])}`;
    };
    L.push(`| ${wl} | ${engines.map(cell).join(' | ')} |`);
  }
  L.push('');
  if (workloads.includes('rows')) {
    const parts = engines
      .filter((e) => results[e.id]?.rows)
      .map((e) => {
        const b = results[e.id].rows;
        const wal = b.walBytes === null ? '' : `, WAL left ${fmtMiB(b.walBytes)}`;
        return `${e.id} ${b.loopMs.toFixed(0)} + ${b.commitMs.toFixed(0)}${b.checkpointMs >= 0.5 ? ` + ${b.checkpointMs.toFixed(0)}` : ''}${wal}`;
      });
    L.push(`(b) median repetition split, ms: INSERT loop + COMMIT (+ explicit checkpoint, capture on): ${parts.join('; ')}  `);
  }
  L.push('');

  const has = (id) => engines.some((e) => e.id === id);
  const ratioRows = [];
  const add = (label, num, den, wl, target) => {
    if (!has(num) || !has(den) || !workloads.includes(wl)) return;
    const x = rate(num, wl) / rate(den, wl);
    ratioRows.push(`| ${label} | ${fmtRatio(x)} | ${target ? `>= ${target.toFixed(1)}x` : '-'} | ${target ? (x >= target ? 'met' : 'NOT met') : '-'} |`);
  };
  add('(a) commits: capture on / better-sqlite3', 'walship-on', 'better-sqlite3', 'commits', 1.0);
  add('(b) rows: capture on / better-sqlite3', 'walship-on', 'better-sqlite3', 'rows', 0.9);
  add('(c) reads: capture on / better-sqlite3', 'walship-on', 'better-sqlite3', 'reads', 0.9);
  add('(a) commits: capture on / capture off (cost of capture)', 'walship-on', 'walship-off', 'commits');
  add('(b) rows: capture on / capture off', 'walship-on', 'walship-off', 'rows');
  add('(c) reads: capture on / capture off', 'walship-on', 'walship-off', 'reads');
  add('(a) commits: capture off / better-sqlite3', 'walship-off', 'better-sqlite3', 'commits');
  add('(b) rows: capture off / better-sqlite3', 'walship-off', 'better-sqlite3', 'rows');
  add('(c) reads: capture off / better-sqlite3', 'walship-off', 'better-sqlite3', 'reads');
  add('(b) rows: capture off / oo1 :memory:', 'walship-off', 'oo1', 'rows');
  add('(c) reads: capture off / oo1 :memory:', 'walship-off', 'oo1', 'reads');
  if (ratioRows.length) {
    L.push('| ratio (ops/s over ops/s, same run) | value | target | |');
    L.push('|---|---:|---:|---|');
    L.push(...ratioRows);
    L.push('');
  }

  const on = results['walship-on'];
  if (on?.sink) {
    L.push('What the capture-on sink counted (transactions handed to onCommit, their page images, their bytes):');
    L.push('');
    L.push('| phase | transactions | pages | bytes |');
    L.push('|---|---:|---:|---:|');
    for (const wl of workloads) {
      const s = on[wl]?.sink;
      if (s) L.push(`| ${wl} (inside the ${args.reps} timed regions, incl. checkpoint markers) | ${fmtInt(s.txns)} | ${fmtInt(s.pages)} | ${fmtInt(s.bytes)} (${fmtMiB(s.bytes)}) |`);
    }
    const t = on.sink;
    L.push(`| whole run (open, schema, warm-up, timed) | ${fmtInt(t.txns)} | ${fmtInt(t.pages)} | ${fmtInt(t.bytes)} (${fmtMiB(t.bytes)}) |`);
    L.push('');
    const misses = Object.entries(t.checkpointMisses).map(([k, v]) => `${k} x${v}`).join(', ');
    L.push(`Capture-on checkpoints (acknowledge + checkpoint every ${CHECKPOINT_EVERY} commits, after the bulk commit and after warm-ups): ${t.checkpoints} done${misses ? `, not done: ${misses}` : ''}.`);
    L.push('');
  }
  const sizesLine = engines
    .filter((e) => results[e.id]?.fileBytes)
    .map((e) => `${e.id} ${fmtMiB(results[e.id].fileBytes)}`)
    .join(', ');
  if (sizesLine) L.push(`Database file after the run: ${sizesLine}.`);
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.profileSummary) {
    process.stdout.write(`${summariseProfile(args.profileSummary, args.top, args.marks)}\n`);
    return;
  }
  const div = args.quick ? 10 : 1;
  const sizes = {
    commits: args.sizes.commits ?? 10_000 / div,
    rows: args.sizes.rows ?? 1_000_000 / div,
    reads: args.sizes.reads ?? 100_000 / div,
  };
  const warm = { commits: 500 / div, rows: 20_000 / div, reads: 10_000 / div };
  const workloads = args.only ?? ['commits', 'rows', 'reads'];
  const started = now();

  const libs = await loadEngines();
  const all = [betterSqlite3Engine(libs), oo1Engine(libs), walshipEngine(libs, false), walshipEngine(libs, true)];
  const engines = args.engines ? all.filter((e) => args.engines.includes(e.id)) : all;
  const data = makeData(Math.max(sizes.commits, sizes.rows, warm.commits, warm.rows), 0x5a17);
  const results = {};
  const env = {
    date: new Date().toISOString().slice(0, 10),
    loadStart: loadavg()[0].toFixed(2),
    command: `node ${relative(process.cwd(), fileURLToPath(import.meta.url)) || 'bench/vfs.mjs'}${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    cpu: cpus()[0]?.model?.trim() ?? arch(),
    cores: cpus().length,
    mem: `${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
    os: `${platform()} ${release()}`,
    bsql: libs.bsqlVersion,
    wasm: libs.wasmVersion,
  };

  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    for (const eng of engines) {
      log(`[${eng.id}] open`);
      const h = await eng.open(dir);
      const r = (results[eng.id] = {});
      try {
        if (eng.id === 'better-sqlite3') env.bsqlSqlite = h.value('SELECT sqlite_version()');
        if (eng.id !== 'better-sqlite3') env.wasmSqlite ??= h.value('SELECT sqlite_version()');
        const ps = h.value('PRAGMA page_size');
        if (ps !== PAGE_SIZE) throw new Error(`${eng.id}: page_size is ${ps}, expected ${PAGE_SIZE}`);
        currentLabel = `${eng.id} commits`;
        if (workloads.includes('commits')) {
          r.commits = runCommits(h, data, sizes.commits, warm.commits, args.reps);
          log(`[${eng.id}] commits ${fmtInt((r.commits.ops * 1000) / r.commits.ms)}/s`);
        }
        currentLabel = `${eng.id} rows`;
        if (workloads.includes('rows') || workloads.includes('reads')) {
          // --only reads: one untimed bulk load to read from.
          const bulk = runRows(h, data, sizes.rows, warm.rows, workloads.includes('rows') ? args.reps : 1);
          r.bulkTable = bulk.table;
          if (workloads.includes('rows')) {
            r.rows = bulk;
            log(`[${eng.id}] rows ${fmtInt((bulk.ops * 1000) / bulk.ms)}/s`);
          }
        }
        currentLabel = `${eng.id} reads`;
        if (workloads.includes('reads')) {
          r.reads = runReads(h, r.bulkTable, sizes.rows, sizes.reads, warm.reads, args.reps, 0xbead);
          log(`[${eng.id}] reads ${fmtInt((r.reads.ops * 1000) / r.reads.ms)}/s`);
        }
        if (h.sink) r.sink = h.sink;
      } finally {
        h.close();
      }
      if (h.files.length) {
        try {
          r.fileBytes = statSync(h.files[0]).size;
        } catch {
          // Not essential.
        }
      }
      for (const f of h.files) rmSync(f, { force: true });
      gc();
    }
  } finally {
    cleanup();
  }

  if (args.marks) {
    // Only the regions whose numbers are reported (the bulk load that precedes --only reads is not).
    const kept = marks.filter((m) => workloads.some((wl) => m.label.endsWith(` ${wl}`)));
    mkdirSync(dirname(args.marks), { recursive: true });
    writeFileSync(args.marks, `${JSON.stringify(kept, null, 1)}\n`);
  }
  const md = report({ results, engines, workloads, sizes, env, args, totalMs: now() - started });
  process.stdout.write(`${md}\n`);
  const filtered = args.only !== null || args.engines !== null || Object.keys(args.sizes).length > 0;
  if (args.out || (args.save && !filtered)) {
    const out = args.out ?? join(here, 'results', `vfs-${env.date}${args.quick ? '-quick' : ''}.md`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${md}\n`);
    log(`wrote ${relative(process.cwd(), out)}`);
  }
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exitCode = 1;
});
