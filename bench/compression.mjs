#!/usr/bin/env node
// Compression and checksum benchmark for @walship/format: which codec the object format uses by
// default, measured on real SQLite pages. See bench/README.md and packages/format/README.md.
//
//   cd /work/main && npx tsc -b && node bench/compression.mjs      writes bench/results/compression-<date>.txt
//   node bench/compression.mjs --quick                            smaller database, fewer repetitions (not saved)
//   node bench/compression.mjs --no-save | --out FILE
//
// Data (made with better-sqlite3 from test/node_modules, page_size 8192 like sqlite-wasm):
//   snapshot  every page of a ~19 MiB database: users (emails, names, balances), events with JSON
//             payloads, random 16-byte tokens, three secondary indexes
//   inserts   the WAL of 2,000 single-row autocommit INSERTs into that database (table + 2 indexes),
//             one transaction record per commit with its distinct pages: what the writer ships
//   updates   the WAL of 100 single-row UPDATE commits to rows on the same leaf page: 100 near-
//             identical versions of one page
// Each is laid out as the format's logical stream (transaction records + pgno||page records) and
// cut into 1 MiB chunks at record boundaries; every candidate compresses each chunk independently,
// as the encoder does. "small" is the inserts stream one commit per object (the low-traffic case).
// Candidates are loaded from packages/format/node_modules; the ones the package no longer depends on
// (lz4-wasm-nodejs, lz4js, fzstd) are measured while still installed and listed as skipped after.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus, totalmem, release, loadavg } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const save = !args.includes('--no-save') && !quick;
const outArg = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const REPS = quick ? 3 : 7;
const PAGE_SIZE = 8192;
const CHUNK_SIZE = 1 << 20;

const requireTest = createRequire(join(repo, 'test', 'package.json'));
const requireFormat = createRequire(join(repo, 'packages', 'format', 'package.json'));
const Database = requireTest('better-sqlite3');

// ---- candidate libraries: each one optional, so the bench still runs after a library is dropped

function tryRequire(name) {
  try {
    const mod = requireFormat(name);
    // Not every package exports its package.json, so read it from the folder.
    const version = JSON.parse(readFileSync(join(repo, 'packages', 'format', 'node_modules', name, 'package.json'), 'utf8')).version;
    return { mod, version };
  } catch {
    return null;
  }
}
const zstdWasm = tryRequire('@bokuweb/zstd-wasm');
const fzstd = tryRequire('fzstd');
const lz4Wasm = tryRequire('lz4-wasm-nodejs');
const lz4js = tryRequire('lz4js');
if (zstdWasm) await zstdWasm.mod.init();
const xxhashPath = requireFormat.resolve('xxhash-wasm');
const xxhash = await (await import(pathToFileURL(xxhashPath).href)).default();

function lz4WasmBlock(raw) {
  // lz4-wasm-nodejs prefixes the block with the raw length (u32 LE); the format stores the bare block.
  return lz4Wasm.mod.compress(raw).subarray(4);
}
function lz4WasmUnblock(block, rawLength) {
  const prefixed = new Uint8Array(block.length + 4);
  new DataView(prefixed.buffer).setUint32(0, rawLength, true);
  prefixed.set(block, 4);
  return lz4Wasm.mod.decompress(prefixed);
}
const lz4jsTable = new Uint32Array(1 << 16);
function lz4jsBlock(raw) {
  const dst = new Uint8Array(lz4js.mod.compressBound(raw.length));
  lz4jsTable.fill(0);
  const n = lz4js.mod.compressBlock(raw, dst, 0, raw.length, lz4jsTable);
  return n === 0 ? raw : dst.subarray(0, n);
}
function lz4jsUnblock(block, rawLength) {
  const dst = new Uint8Array(rawLength);
  lz4js.mod.decompressBlock(block, dst, 0, block.length, 0);
  return dst;
}

const candidates = [];
if (zstdWasm) {
  for (const level of [1, 3, 6, 9]) {
    candidates.push({
      name: `zstd-wasm level ${level}`,
      lib: `@bokuweb/zstd-wasm ${zstdWasm.version}`,
      compress: (raw) => zstdWasm.mod.compress(raw, level),
      decompress: (c) => zstdWasm.mod.decompress(c),
    });
  }
  if (fzstd) {
    candidates.push({
      name: 'fzstd (decode of zstd level 3)',
      lib: `fzstd ${fzstd.version} (pure JS, decoder only)`,
      compress: (raw) => zstdWasm.mod.compress(raw, 3),
      decompress: (c, n) => fzstd.mod.decompress(c, new Uint8Array(n)),
      decodeOnly: true,
    });
  }
}
if (lz4Wasm) candidates.push({ name: 'lz4-wasm', lib: `lz4-wasm-nodejs ${lz4Wasm.version}`, compress: lz4WasmBlock, decompress: lz4WasmUnblock });
if (lz4js) candidates.push({ name: 'lz4js', lib: `lz4js ${lz4js.version} (pure JS)`, compress: lz4jsBlock, decompress: lz4jsUnblock });
const missing = [
  ['@bokuweb/zstd-wasm', zstdWasm],
  ['fzstd', fzstd],
  ['lz4-wasm-nodejs', lz4Wasm],
  ['lz4js', lz4js],
]
  .filter(([, m]) => !m)
  .map(([n]) => n);

// ---- data --------------------------------------------------------------------------------------

function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(20261126);
const int = (n) => Math.floor(rand() * n);
const letters = 'etaoinshrdlucmfwypvbgkjqxz';
const words = Array.from({ length: 800 }, () => {
  let w = '';
  const len = 2 + int(8);
  for (let i = 0; i < len; i++) w += letters[Math.floor(letters.length * rand() ** 2)];
  return w;
});
const word = () => words[Math.floor(words.length * rand() ** 3)];
const sentence = (n) => Array.from({ length: n }, word).join(' ');
const kinds = ['login', 'logout', 'purchase', 'refund', 'view', 'search', 'share', 'comment'];
const statuses = ['active', 'suspended', 'trial', 'closed'];
const token = () => {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = int(256);
  return b;
};

const USERS = quick ? 8000 : 40000;
const EVENTS = quick ? 20000 : 100000;
const INSERT_COMMITS = quick ? 500 : 2000;
const UPDATE_COMMITS = 100;

function eventRow(i) {
  return {
    user: 1 + int(USERS),
    kind: kinds[int(kinds.length)],
    at: 1764115200000 + i * 1000 + int(1000),
    payload: JSON.stringify({ q: sentence(2 + int(4)), ip: `10.${int(256)}.${int(256)}.${int(256)}`, score: Math.round(rand() * 1e4) / 100 }),
  };
}

function parseWal(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pageSize = v.getUint32(8);
  const salt1 = v.getUint32(16);
  const salt2 = v.getUint32(20);
  const transactions = [];
  let pending = new Map();
  for (let at = 32; at + 24 + pageSize <= bytes.length; at += 24 + pageSize) {
    if (v.getUint32(at + 8) !== salt1 || v.getUint32(at + 12) !== salt2) break;
    const pgno = v.getUint32(at);
    pending.set(pgno, bytes.slice(at + 24, at + 24 + pageSize));
    const commit = v.getUint32(at + 4);
    if (commit !== 0) {
      const pages = [...pending].sort((a, b) => a[0] - b[0]).map(([p, data]) => ({ pgno: p, data }));
      transactions.push({ commitSize: commit, pages });
      pending = new Map();
    }
  }
  return transactions;
}

function makeData() {
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-compression-'));
  try {
    const path = join(dir, 'bench.db');
    const db = new Database(path);
    db.pragma(`page_size = ${PAGE_SIZE}`);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec(`
      CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT, status TEXT, balance REAL, token BLOB, created TEXT);
      CREATE UNIQUE INDEX users_email ON users(email);
      CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL, payload TEXT);
      CREATE INDEX events_user ON events(user_id, at);
      CREATE INDEX events_kind ON events(kind, at);
    `);
    const addUser = db.prepare('INSERT INTO users (email, name, status, balance, token, created) VALUES (?, ?, ?, ?, ?, ?)');
    const addEvent = db.prepare('INSERT INTO events (user_id, kind, at, payload) VALUES (@user, @kind, @at, @payload)');
    db.transaction(() => {
      for (let i = 0; i < USERS; i++) {
        const name = `${word()} ${word()}`;
        addUser.run(
          `${name.replace(' ', '.')}.${i}@${word()}.example`,
          name,
          statuses[int(statuses.length)],
          Math.round(rand() * 1e7) / 100,
          token(),
          new Date(1700000000000 + i * 60000).toISOString(),
        );
      }
      for (let i = 0; i < EVENTS; i++) addEvent.run(eventRow(i));
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    const file = readFileSync(path);
    const snapshotPages = [];
    for (let p = 0; p * PAGE_SIZE < file.length; p++) snapshotPages.push({ pgno: p + 1, data: file.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE) });
    const snapshot = [{ commitSize: snapshotPages.length, pages: snapshotPages }];

    for (let i = 0; i < INSERT_COMMITS; i++) addEvent.run(eventRow(EVENTS + i));
    const inserts = parseWal(readFileSync(`${path}-wal`));
    db.pragma('wal_checkpoint(TRUNCATE)');

    // Rows 2000..2009 share a table leaf page (a users row is ~120 bytes, ~60 per 8 KiB page).
    const update = db.prepare('UPDATE users SET balance = ?, status = ? WHERE id = ?');
    for (let i = 0; i < UPDATE_COMMITS; i++) update.run(Math.round(rand() * 1e7) / 100, statuses[int(statuses.length)], 2000 + (i % 10));
    const updates = parseWal(readFileSync(`${path}-wal`));
    db.close();
    return { snapshot, inserts, updates, dbBytes: file.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The logical stream of the format, cut into chunks of ~CHUNK_SIZE at record boundaries. */
function toChunks(transactions, firstTxid = 1) {
  const chunks = [];
  let buf = new Uint8Array(CHUNK_SIZE + 4 + PAGE_SIZE);
  let len = 0;
  const flush = () => {
    if (len > 0) chunks.push(buf.slice(0, len));
    len = 0;
  };
  const room = (n) => {
    if (len > 0 && len + n > CHUNK_SIZE) flush();
  };
  transactions.forEach((t, i) => {
    room(32);
    const v = new DataView(buf.buffer);
    v.setBigUint64(len, BigInt(firstTxid + i));
    v.setBigUint64(len + 8, BigInt(1764115200000 + i));
    v.setUint32(len + 16, t.commitSize);
    v.setUint32(len + 20, t.pages.length);
    v.setBigUint64(len + 24, 0x1234567890abcdefn ^ BigInt(i));
    len += 32;
    for (const p of t.pages) {
      room(4 + PAGE_SIZE);
      v.setUint32(len, p.pgno);
      buf.set(p.data, len + 4);
      len += 4 + PAGE_SIZE;
    }
  });
  flush();
  return chunks;
}

// ---- measurement -------------------------------------------------------------------------------

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const now = () => performance.now();

function measure(candidate, chunks) {
  const raw = chunks.reduce((n, c) => n + c.length, 0);
  let compressed = chunks.map((c) => candidate.compress(c));
  for (let i = 0; i < chunks.length; i++) {
    const back = candidate.decompress(compressed[i], chunks[i].length);
    if (back.length !== chunks[i].length || Buffer.compare(Buffer.from(back), Buffer.from(chunks[i])) !== 0) {
      throw new Error(`${candidate.name}: round trip failed on chunk ${i}`);
    }
  }
  const stored = compressed.reduce((n, c, i) => n + Math.min(c.length, chunks[i].length), 0);
  const ctimes = [];
  const dtimes = [];
  for (let r = 0; r < REPS + 1; r++) {
    let t0 = now();
    if (!candidate.decodeOnly) compressed = chunks.map((c) => candidate.compress(c));
    const ct = now() - t0;
    t0 = now();
    for (let i = 0; i < chunks.length; i++) candidate.decompress(compressed[i], chunks[i].length);
    const dt = now() - t0;
    if (r > 0) {
      ctimes.push(ct);
      dtimes.push(dt);
    }
  }
  const mb = raw / 1048576;
  return {
    ratio: raw / stored,
    compressMBs: candidate.decodeOnly ? null : mb / (median(ctimes) / 1000),
    decompressMBs: mb / (median(dtimes) / 1000),
  };
}

// ---- report ------------------------------------------------------------------------------------

const lines = [];
const out = (s = '') => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};
const progress = (s) => process.stderr.write(`${s}\n`);
const fmt = (x, d = 0) => (x === null ? '-' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

const started = now();
const load0 = loadavg()[0];
progress('building the databases...');
const data = makeData();
const datasets = [
  { name: 'snapshot', chunks: toChunks(data.snapshot), what: `${data.snapshot[0].pages.length} pages (${mib(data.dbBytes)} database)` },
  {
    name: 'inserts',
    chunks: toChunks(data.inserts),
    what: `${data.inserts.length} commits, ${data.inserts.reduce((n, t) => n + t.pages.length, 0)} page records`,
  },
  {
    name: 'updates',
    chunks: toChunks(data.updates),
    what: `${data.updates.length} commits, ${data.updates.reduce((n, t) => n + t.pages.length, 0)} page records`,
  },
  {
    name: 'small',
    chunks: data.inserts.slice(0, 200).flatMap((t, i) => toChunks([t], i + 1)),
    what: '200 objects of one insert commit each',
  },
];

out(`# @walship/format compression benchmark`);
out();
out(`Command: node bench/compression.mjs${quick ? ' --quick' : ''}`);
out(`Date: ${new Date().toISOString()}`);
out(`Machine: ${cpus()[0]?.model.trim()} x${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, linux ${release()}; Node ${process.version}`);
out(`Load average (1 min) at start: ${load0.toFixed(2)}`);
out(`Page size ${PAGE_SIZE}; chunks of ${CHUNK_SIZE / 1048576} MiB raw cut at record boundaries; median of ${REPS} passes after one warm-up pass`);
out(`Libraries: ${candidates.map((c) => c.lib).filter((v, i, a) => a.indexOf(v) === i).join('; ')}`);
if (missing.length) out(`Not installed (skipped): ${missing.join(', ')}`);
out();
out('| data set | what | raw | chunks |');
out('|---|---|---:|---:|');
for (const d of datasets) out(`| ${d.name} | ${d.what} | ${mib(d.chunks.reduce((n, c) => n + c.length, 0))} | ${d.chunks.length} |`);
out();

const results = new Map();
for (const d of datasets) {
  for (const c of candidates) {
    progress(`${d.name}: ${c.name}`);
    results.set(`${d.name}/${c.name}`, measure(c, d.chunks));
  }
}

for (const [title, key, digits] of [
  ['Ratio (raw bytes / stored bytes; a chunk that does not shrink is stored raw)', 'ratio', 2],
  ['Compress MB/s (raw MiB per second, one core)', 'compressMBs', 0],
  ['Decompress MB/s (raw MiB per second, one core)', 'decompressMBs', 0],
]) {
  out(`## ${title}`);
  out();
  out(`| candidate | ${datasets.map((d) => d.name).join(' | ')} |`);
  out(`|---|${datasets.map(() => '---:').join('|')}|`);
  for (const c of candidates) {
    out(`| ${c.name} | ${datasets.map((d) => fmt(results.get(`${d.name}/${c.name}`)[key], digits)).join(' | ')} |`);
  }
  out();
}

// ---- page hash: the term of the rolling checksum, two ways ----------------------------------------

const pages = data.snapshot[0].pages;
const scratch = new Uint8Array(4 + PAGE_SIZE);
const scratchView = new DataView(scratch.buffer);
const hashWays = {
  'copy pgno||page into a scratch buffer, h64Raw': (pgno, page) => {
    scratchView.setUint32(0, pgno);
    scratch.set(page, 4);
    return xxhash.h64Raw(scratch);
  },
  'create64().update(be32).update(page).digest()': (pgno, page) => {
    const be = new Uint8Array(4);
    new DataView(be.buffer).setUint32(0, pgno);
    return xxhash.create64().update(be).update(page).digest();
  },
};
out('## Page hash (xxh64 of be32(pgno) || page, xxhash-wasm)');
out();
out(`| method | MB/s | ns/page |`);
out('|---|---:|---:|');
let reference;
for (const [name, fn] of Object.entries(hashWays)) {
  let x = 0n;
  for (const p of pages) x ^= fn(p.pgno, p.data);
  if (reference === undefined) reference = x;
  else if (x !== reference) throw new Error(`${name} computes a different checksum`);
  const times = [];
  for (let r = 0; r < REPS + 1; r++) {
    const t0 = now();
    for (const p of pages) fn(p.pgno, p.data);
    times.push(now() - t0);
  }
  const t = median(times.slice(1));
  out(`| ${name} | ${fmt((pages.length * PAGE_SIZE) / 1048576 / (t / 1000))} | ${fmt((t * 1e6) / pages.length)} |`);
}
out();

// ---- the format end to end, when the package is built ---------------------------------------------

const dist = join(repo, 'packages', 'format', 'dist', 'index.js');
let format = null;
try {
  format = await import(pathToFileURL(dist).href);
} catch {
  format = null;
}
if (typeof format?.loadFormat !== 'function') {
  format = null;
  out('(packages/format/dist is not built: run npx tsc -b for the end-to-end table)');
}
if (format) {
  await format.loadFormat();
  const keyring = new format.Keyring({ keys: [{ id: 'bench', key: new Uint8Array(32).fill(7) }] });
  const hashes = new format.PageHashes(PAGE_SIZE);
  const t0 = now();
  for (const p of pages) hashes.set(p.pgno, p.data);
  const hashMs = now() - t0;
  out('## @walship/format end to end (inserts stream as one segment, 1 MiB chunks)');
  out();
  out(`PageHashes.set over the snapshot's ${pages.length} pages: ${fmt((pages.length * PAGE_SIZE) / 1048576 / (hashMs / 1000))} MB/s (first pass, includes table growth)`);
  out();
  out('| compression | encryption | object size | ratio | encode MB/s | decode MB/s |');
  out('|---|---|---:|---:|---:|---:|');
  const txs = data.inserts.map((t, i) => ({ txid: i + 1, timestamp: 1764115200000 + i, commitSize: t.commitSize, postChecksum: BigInt(i), pages: t.pages }));
  const rawBytes = txs.reduce((n, t) => n + t.pages.length * (PAGE_SIZE + 4) + 32, 0);
  const header = {
    kind: 'segment',
    databaseId: '0123456789abcdef0123456789abcdef',
    generation: '0000000100000001',
    epoch: 1,
    level: 0,
    minTxid: 1,
    maxTxid: txs.length,
    pageSize: PAGE_SIZE,
    commitSize: txs.at(-1).commitSize,
    firstTimestamp: txs[0].timestamp,
    lastTimestamp: txs.at(-1).timestamp,
    preChecksum: 0n,
    postChecksum: txs.at(-1).postChecksum,
    transactionCount: txs.length,
    pageCount: txs.reduce((n, t) => n + t.pages.length, 0),
  };
  for (const compression of format.COMPRESSIONS) {
    for (const encrypted of [false, true]) {
      const options = encrypted ? { keyring } : {};
      let bytes;
      const et = [];
      const dt = [];
      for (let r = 0; r < REPS + 1; r++) {
        let t = now();
        bytes = format.encodeSegment({ ...header, compression }, txs, options);
        et.push(now() - t);
        t = now();
        await format.decodeSegment(bytes, encrypted ? { keyring } : {});
        dt.push(now() - t);
      }
      const mb = rawBytes / 1048576;
      out(
        `| ${compression}${compression === format.DEFAULT_COMPRESSION ? ' (default)' : ''} | ${encrypted ? 'AES-256-GCM' : 'none'} | ${mib(bytes.length)} | ${(rawBytes / bytes.length).toFixed(2)} | ${fmt(mb / (median(et.slice(1)) / 1000))} | ${fmt(mb / (median(dt.slice(1)) / 1000))} |`,
      );
    }
  }
  out();
}

out(`Total ${((now() - started) / 1000).toFixed(1)} s; load average (1 min) at end: ${loadavg()[0].toFixed(2)}`);

if (save || outArg) {
  const file = outArg ?? join(repo, 'bench', 'results', `compression-${new Date().toISOString().slice(0, 10)}.txt`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${lines.join('\n')}\n`);
  progress(`saved ${relative(process.cwd(), file)}`);
}
