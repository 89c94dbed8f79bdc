// Follow mode against a live writer on s3rver: a reader in another thread opens the replica file
// again and again and must never see a partial transaction; the file converges within two batch
// windows after writes stop; a writer restart (new epoch) is found without LIST, and a new
// generation is followed by a full rebuild.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadFormat } from '@walship/format';
import { openReplicated, type ReplicatedDatabase } from '@walship/shipper';
import { openDatabase } from '@walship/vfs';
import { follow, plan, restore, type FollowApplyEvent, type FollowHandle } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep, source, storageFor } from './util/restore-harness.js';

let server: S3Server;
let dir: string;
const BATCH_WINDOW_MS = 250;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-follow-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface ReaderReport {
  reads: number;
  checks: number;
  violations: string[];
  errors: string[];
  errorCount: number;
}

function startReader(path: string): { stop: () => Promise<ReaderReport> } {
  const flag = new SharedArrayBuffer(4);
  const worker = new Worker(new URL('./util/restore-reader.js', import.meta.url), { workerData: { path, stop: flag } });
  const done = new Promise<ReaderReport>((resolve, reject) => {
    worker.once('message', (m: ReaderReport) => resolve(m));
    worker.once('error', reject);
  });
  return {
    stop: async () => {
      Atomics.store(new Int32Array(flag), 0, 1);
      const report = await done;
      await worker.terminate();
      return report;
    },
  };
}

// How long the follower may take to reach a txid before the test calls it stuck. A liveness bound,
// not a latency claim: how fast a follower converges is measured by bench/follow-latency.mjs,
// never by a timed assertion on this shared machine.
const CONVERGE_LIMIT_MS = 30_000;

async function converge(follower: FollowHandle, txid: number, what: string): Promise<number> {
  const started = Date.now();
  while (follower.status().txid < txid) {
    const elapsed = Date.now() - started;
    if (elapsed > CONVERGE_LIMIT_MS) assert.fail(`${what}: follower at txid ${follower.status().txid}, writer at ${txid}, after ${elapsed} ms (limit ${CONVERGE_LIMIT_MS} ms); ${JSON.stringify(follower.status())}`);
    await sleep(5);
  }
  return Date.now() - started;
}

async function writeFor(db: ReplicatedDatabase, work: Workload, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (let i = 0; i < 5; i++) {
      if (work.rnd() < 0.6) work.transfer(db);
      else work.step(db);
    }
    await sleep(7);
  }
}

test('follow: consistent reads under a live writer, convergence, a new epoch without LIST, a new generation', async (t) => {
  const prefix = newPrefix('follow');
  const work = new Workload(2024);
  const origin = join(dir, 'origin.db');
  const options = s3Options(server, prefix, { batchWindowMs: BATCH_WINDOW_MS });
  let db = await openReplicated(origin, options);
  work.setup(db);
  work.transfer(db);
  await db.flush();

  const replica = join(dir, 'replica', 'follower.db');
  const applied: FollowApplyEvent[] = [];
  const errors: Error[] = [];
  const follower = await follow({ ...source(server, prefix), path: replica, intervalMs: 25, probeEvery: 4, onApply: (e) => applied.push(e), onError: (e) => errors.push(e) });
  assert.equal(follower.status().state, 'following');
  assert.equal(follower.status().requests.list, 1, 'one LIST at start');
  const reader = startReader(replica);
  let readerReport: ReaderReport | null = null;
  try {
    // Live writes; then writes stop and the replica converges within two batch windows.
    await writeFor(db, work, 2500);
    // Several batches applied while the writer runs (a loaded machine applies fewer per second).
    for (const started = Date.now(); applied.filter((e) => e.kind === 'segments').length < 3 && Date.now() - started < CONVERGE_LIMIT_MS; ) await writeFor(db, work, 300);
    const stoppedAt = db.txid;
    const took = await converge(follower, stoppedAt, 'after writes stop');
    t.diagnostic(`converged ${took} ms after writes stopped (batch window ${BATCH_WINDOW_MS} ms)`);
    assert.ok(applied.filter((e) => e.kind === 'segments').length >= 3, `applied in several steps (${applied.length})`);
    assert.equal(follower.status().requests.list, 1, 'no LIST in steady state');
    const s = follower.status();
    assert.ok(s.lagMs !== null && s.lagMs >= 0);
    assert.equal(s.generation, db.status().generation);

    // The writer restarts: a new epoch, found by GET of its marker.
    await db.close();
    const closedAt = db.txid;
    await converge(follower, closedAt, 'after close');
    db = await openReplicated(origin, options);
    const epoch2 = db.status().epoch;
    await writeFor(db, work, 600);
    const afterRestart = db.txid;
    await converge(follower, afterRestart, 'after the writer restarted');
    assert.equal(follower.status().epoch, epoch2, 'the follower polls the new epoch');
    assert.equal(follower.status().requests.list, 1, 'a new epoch costs no LIST');
    await db.close();

    // A new generation (the origin wrote without replication in between, then opened on purpose
    // with allowRollback): rebuilt from its snapshot.
    const local = await openDatabase(origin);
    for (let i = 0; i < 10; i++) work.transfer(local);
    // Pages no later segment rewrites (overflow pages of large rows): a file built on a copy of the
    // file from before the rebuild would lack them.
    for (let i = 0; i < 5; i++) work.run(local, [{ text: 'INSERT OR REPLACE INTO kv VALUES (?, ?, ?)', params: [1000 + i, new Uint8Array(30_000).fill(i + 1), i] }]);
    local.close();
    db = await openReplicated(origin, { ...options, allowRollback: true });
    const generation2 = db.status().generation;
    await writeFor(db, work, 400);
    await db.flush();
    const final = db.txid;
    await db.close();
    await converge(follower, db.txid, 'after the new generation');
    assert.equal(follower.status().generation, generation2);
    assert.ok(applied.some((e) => e.kind === 'restore' && e.generation === generation2), 'the new generation was rebuilt');
    assert.ok(follower.status().txid >= final);

    // Segments after the rebuild are applied to a copy of the rebuilt file (the spare the follower
    // copies ahead), never to a copy of the file from before it.
    const restores = follower.status().restores;
    db = await openReplicated(origin, options);
    await writeFor(db, work, 400);
    await db.flush();
    const afterRebuild = db.txid;
    await db.close();
    await converge(follower, afterRebuild, 'segments after the rebuild');
    // The file itself is compared with the oracle at the end, once the reader has stopped (an
    // oracle opened beside the reader can meet its lock: 'database is locked').
    assert.equal(follower.status().restores, restores, 'applied as segments, not rebuilt');

    readerReport = await reader.stop();
  } finally {
    if (readerReport === null) await reader.stop();
    await follower.stop();
    if (db.open) await db.close().catch(() => undefined);
  }
  const report = readerReport;
  assert.deepEqual(report.violations, [], 'no reader ever saw a partial transaction');
  assert.ok(report.reads >= 50, `reads: ${report.reads}`);
  assert.ok(report.checks >= 5);
  assert.equal(report.errorCount, 0, `reader errors: ${report.errors.join('; ')}`);

  assert.equal(follower.status().state, 'stopped');
  assertMatchesOracle(replica, work, follower.status().txid, 'follower file at the end');
  assert.deepEqual(readdirSync(join(dir, 'replica')).filter((f) => f.includes('.walship-')), [], 'no scratch files left');
  assert.deepEqual(errors.map((e) => e.message), []);
});

test('follow adopts a file that already is the replica tip; another file needs overwrite', async () => {
  const prefix = newPrefix('adopt');
  const work = new Workload(5);
  const db = await openReplicated(join(dir, 'adopt-origin.db'), s3Options(server, prefix));
  work.setup(db);
  for (let i = 0; i < 30; i++) work.step(db);
  await db.close();

  const tipPath = join(dir, 'adopt.db');
  const r = await restore({ ...source(server, prefix), path: tipPath });
  const adopted = await follow({ ...source(server, prefix), path: tipPath, intervalMs: 50 });
  try {
    assert.equal(adopted.status().restores, 0, 'nothing downloaded: the file is the tip');
    assert.equal(adopted.status().txid, r.txid);
  } finally {
    await adopted.stop();
  }

  const other = join(dir, 'other.db');
  writeFileSync(other, 'not this database');
  writeFileSync(`${other}-wal`, 'stale');
  await assert.rejects(follow({ ...source(server, prefix), path: other }), (e: Error & { code?: string }) => e.code === 'ERR_TARGET_EXISTS');
  const replaced = await follow({ ...source(server, prefix), path: other, overwrite: true, intervalMs: 50 });
  try {
    assert.equal(replaced.status().restores, 1);
    assert.equal(existsSync(`${other}-wal`), false, 'the replaced database\u2019s WAL is gone');
    assertMatchesOracle(other, work, replaced.status().txid);
  } finally {
    await replaced.stop();
  }
});

test('follow reads again an object caught mid-upload; one that stays short is reported, then repaired', async () => {
  // A writer leaves a chain in one prefix; the follower's prefix gets all of it but the last two
  // segments, which this test then writes short first (as a store that is not atomic shows an
  // object mid-upload) and whole later.
  const origin = newPrefix('short-origin');
  const work = new Workload(77);
  const db = await openReplicated(join(dir, 'short-origin.db'), s3Options(server, origin, { batchWindowMs: 0 }));
  work.setup(db);
  for (let i = 0; i < 40; i++) {
    work.step(db);
    if (i % 5 === 0) await db.flush();
  }
  await db.close();
  const storage = storageFor(server, '');
  const keys: string[] = [];
  for await (const o of storage.list({ prefix: `${origin}/` })) keys.push(o.key);
  const segments = keys.filter((k) => k.includes('/l0/')).sort();
  assert.ok(segments.length >= 4, `a chain of several segments (${segments.length})`);
  const [first, second] = segments.slice(-2) as [string, string];
  const firstMin = parseInt(first.split('/').at(-1)!.slice(0, 16), 16);
  const later = keys.filter((k) => k.includes('/snapshots/') && parseInt(k.split('/').at(-1)!.slice(0, 16), 16) >= firstMin);
  assert.deepEqual(later, [], 'no snapshot past the held-back segments');

  const prefix = newPrefix('short');
  const rekeyed = (k: string) => `${prefix}/${k.slice(origin.length + 1)}`;
  for (const k of keys) {
    if (k === first || k === second) continue;
    await storage.put(rekeyed(k), (await storage.get(k))!);
  }
  const whole = { first: (await storage.get(first))!, second: (await storage.get(second))! };
  const errors: (Error & { code?: string; details?: Record<string, unknown> })[] = [];
  const path = join(dir, 'short.db');
  const follower = await follow({ ...source(server, prefix), path, intervalMs: 25, probeEvery: 4, onError: (e) => errors.push(e) });
  try {
    const start = follower.status().txid;
    assert.equal(start, firstMin - 1, 'the follower starts just before the held-back segments');
    const readsOf = async (n: number) => {
      const at = follower.status().requests.get;
      while (follower.status().requests.get < at + n) await sleep(5);
    };

    // Short for a few polls, then whole: applied, and no error reported.
    await storage.put(rekeyed(first), whole.first.subarray(0, Math.floor(whole.first.length * 0.6)));
    await readsOf(4);
    assert.equal(follower.status().txid, start, 'a short object is not applied');
    await storage.put(rekeyed(first), whole.first);
    const secondMin = parseInt(second.split('/').at(-1)!.slice(0, 16), 16);
    await converge(follower, secondMin - 1, 'after the object became whole');
    assert.deepEqual(errors.map((e) => e.message), [], 'a short read that heals is not an error');

    // Short and staying short: reported after the settle time, with the key and the format code.
    await storage.put(rekeyed(second), whole.second.subarray(0, whole.second.length - 100));
    const since = Date.now();
    while (errors.length === 0) {
      if (Date.now() - since > 30_000) assert.fail('an object that stays short was never reported within 30 s');
      await sleep(20);
    }
    assert.ok(Date.now() - since >= 1900, `reported only after the settle time (${Date.now() - since} ms)`);
    const err = errors[0]!;
    assert.equal(err.code, 'ERR_CORRUPT_OBJECT');
    assert.equal(err.details?.formatCode, 'ERR_TRUNCATED');
    assert.ok(err.message.includes(rekeyed(second)), err.message);
    assert.equal(follower.status().lastError?.code, 'ERR_CORRUPT_OBJECT');
    assert.equal(follower.status().txid, secondMin - 1, 'nothing of it applied');

    // Repaired in the store: the follower catches up from a fresh listing.
    await storage.put(rekeyed(second), whole.second);
    const tip = await plan({ ...source(server, origin) });
    await converge(follower, tip.txid, 'after the object was repaired');
  } finally {
    await follower.stop();
  }
  assertMatchesOracle(path, work, follower.status().txid, 'follower after the short objects');
});

test('follow: polls every activeIntervalMs for 5 s after a segment (or the start), then every intervalMs', async () => {
  const prefix = newPrefix('follow-active');
  const work = new Workload(77);
  const db = await openReplicated(join(dir, 'active-origin.db'), s3Options(server, prefix, { batchWindowMs: 0 }));
  let follower: FollowHandle | undefined;
  try {
    work.setup(db);
    await db.flush();
    // An hour between quiet polls: only the active pace can apply anything within this test.
    follower = await follow({ ...source(server, prefix), path: join(dir, 'active', 'replica.db'), intervalMs: 3_600_000, activeIntervalMs: 20 });
    assert.equal(follower.status().pollIntervalMs, 20, 'active right after the start');
    work.transfer(db);
    await db.flush();
    await converge(follower, db.txid, 'a segment shipped right after the start');
    assert.equal(follower.status().pollIntervalMs, 20, 'active after an applied segment');
    await sleep(5600);
    assert.equal(follower.status().pollIntervalMs, 3_600_000, 'quiet 5 s after the last segment');
    const gets = follower.status().requests.get;
    work.transfer(db);
    await db.flush();
    await sleep(1500);
    assert.ok(follower.status().txid < db.txid, `quiet: the next segment waits for the hourly poll (follower at ${follower.status().txid}, writer at ${db.txid})`);
    assert.equal(follower.status().requests.get, gets, 'no GET while quiet');
  } finally {
    await follower?.stop();
    await db.close();
  }
});
