// Helpers shared by the benchmarks in this folder (shipper.mjs, vfs.mjs, replicated.mjs, restore.mjs,
// replica.mjs): data, pacing, quiescing, profiling, Prometheus text, formatting. No benchmark logic lives here.
import { statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { execFileSync } from 'node:child_process';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { Session } from 'node:inspector/promises';

export const PAGE_SIZE = 8192; // walship's default for new files and sqlite-wasm's default; set on better-sqlite3 too
export const CACHE_KIB = 16384; // sqlite-wasm's default cache (-16384); better-sqlite3's build default is -16000

/** gc() when V8 allows exposing it, else a no-op (the numbers are only a little noisier). */
export let gc = () => {};
try {
  setFlagsFromString('--expose-gc');
  gc = runInNewContext('gc');
} catch {
  // Without gc() between phases the numbers are only a little noisier.
}

let syncWorks = true;
/**
 * Untimed, before every timed phase: collect garbage and flush the page cache's dirty data
 * (sync(1)), so no engine pays for the writeback of the previous engine's files inside its own
 * fsyncs (ext4 fsync waits for the journal commit, which carries other files' dirty data).
 */
export function quiesce() {
  gc();
  if (!syncWorks) return;
  try {
    execFileSync('sync', { stdio: 'ignore' });
  } catch {
    syncWorks = false;
  }
}

export const now = () => performance.now();
export const log = (...m) => process.stderr.write(`${m.join(' ')}\n`);
export const yieldLoop = () => new Promise((r) => setImmediate(r));
export const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
export const fmtMs = (ms) => (ms >= 100 ? fmtInt(ms) : ms.toFixed(1));
export const fmtMiB = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
export const fmtX = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
export const verdict = (ok) => (ok ? 'met' : 'NOT met');

export function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Random ints and a pool of 1024 ASCII strings of 96..104 bytes (as bench/vfs.mjs's makeData).
const DATA_MASK = (1 << 16) - 1;
const STRING_MASK = 1023;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';
export const data = (() => {
  const rnd = mulberry32(0x5a17);
  const ints = new Int32Array(DATA_MASK + 1);
  for (let i = 0; i < ints.length; i++) ints[i] = Math.floor(rnd() * 2 ** 32) | 0;
  const strings = [];
  for (let i = 0; i <= STRING_MASK; i++) {
    const len = 96 + Math.floor(rnd() * 9);
    let s = '';
    for (let j = 0; j < len; j++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
    strings.push(s);
  }
  return { ints, strings };
})();

export const SCHEMA = 'CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)';
export const INSERT = 'INSERT INTO t(a, b) VALUES (?, ?)';

/** One single-row INSERT (~100 bytes) into t: in autocommit, one transaction. */
export function inserter(db) {
  const st = db.prepare(INSERT);
  let i = 0;
  return () => {
    st.run(data.ints[i & DATA_MASK], data.strings[i & STRING_MASK]);
    i++;
  };
}

/**
 * Commits at `rate` per second for `durationMs`: every commit is due at t0 + i/rate; the loop runs
 * the due ones, then sleeps on a timer until the next is due (so uploads run in between).
 */
export async function paced(db, insert, rate, durationMs, onCommit) {
  const interval = 1000 / rate;
  const total = Math.round((durationMs * rate) / 1000);
  const t0 = now();
  let done = 0;
  let maxBehind = 0;
  while (done < total) {
    const t = now();
    const due = Math.min(total, Math.floor((t - t0) / interval) + 1);
    maxBehind = Math.max(maxBehind, due - done);
    while (done < due) {
      insert();
      done++;
      if (onCommit) onCommit(db.txid, now(), done - 1);
    }
    if (done < total) await sleep(Math.max(0, t0 + done * interval - now()));
  }
  return { commits: done, ms: now() - t0, maxBehind };
}

/** Sums a metric over its series in Prometheus text, optionally only series whose labels include `match`. */
export function metric(text, name, match = '') {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    if (match && !(m[2] ?? '').includes(match)) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : NaN;
}

export function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export async function withTimeout(promise, ms, what) {
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

export function fileSize(path) {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** onRequest events: a PUT (single or multipart) and a 2xx answer. */
export const isPut = (e) => e.op === 'put' || e.op === 'multipart';
export const ok = (e) => e.status >= 200 && e.status < 300;

/** Runs `fn` under the V8 sampling profiler (this thread only, 200 us interval): its result and the profile. */
export async function profiled(fn) {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  let result;
  let profile;
  try {
    result = await fn();
  } finally {
    ({ profile } = await session.post('Profiler.stop'));
    session.disconnect();
  }
  return { result, profile };
}
