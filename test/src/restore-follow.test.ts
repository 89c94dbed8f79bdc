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
import { follow, restore, type FollowApplyEvent, type FollowHandle } from '@walship/restore';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, assertMatchesOracle, newPrefix, s3Options, sleep, source } from './util/restore-harness.js';

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

async function converge(follower: FollowHandle, txid: number, budgetMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (follower.status().txid < txid) {
    const elapsed = Date.now() - started;
    if (elapsed > budgetMs) assert.fail(`${what}: follower at txid ${follower.status().txid}, writer at ${txid}, after ${elapsed} ms (budget ${budgetMs} ms); ${JSON.stringify(follower.status())}`);
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

test('follow: consistent reads under a live writer, convergence, a new epoch without LIST, a new generation', async () => {
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
    const stoppedAt = db.txid;
    const took = await converge(follower, stoppedAt, 2 * BATCH_WINDOW_MS, 'after writes stop');
    assert.ok(took <= 2 * BATCH_WINDOW_MS);
    assert.ok(applied.filter((e) => e.kind === 'segments').length >= 3, `applied in several steps (${applied.length})`);
    assert.equal(follower.status().requests.list, 1, 'no LIST in steady state');
    const s = follower.status();
    assert.ok(s.lagMs !== null && s.lagMs >= 0);
    assert.equal(s.generation, db.status().generation);

    // The writer restarts: a new epoch, found by GET of its marker.
    await db.close();
    const closedAt = db.txid;
    await converge(follower, closedAt, 2 * BATCH_WINDOW_MS + 500, 'after close');
    db = await openReplicated(origin, options);
    const epoch2 = db.status().epoch;
    await writeFor(db, work, 600);
    const afterRestart = db.txid;
    await converge(follower, afterRestart, 2 * BATCH_WINDOW_MS + 500, 'after the writer restarted');
    assert.equal(follower.status().epoch, epoch2, 'the follower polls the new epoch');
    assert.equal(follower.status().requests.list, 1, 'a new epoch costs no LIST');
    await db.close();

    // A new generation (the origin wrote without replication in between): rebuilt from its snapshot.
    const local = await openDatabase(origin);
    for (let i = 0; i < 10; i++) work.transfer(local);
    local.close();
    db = await openReplicated(origin, options);
    const generation2 = db.status().generation;
    await writeFor(db, work, 400);
    await db.flush();
    const final = db.txid;
    await db.close();
    await converge(follower, db.txid, 5000, 'after the new generation');
    assert.equal(follower.status().generation, generation2);
    assert.ok(applied.some((e) => e.kind === 'restore' && e.generation === generation2), 'the new generation was rebuilt');
    assert.ok(follower.status().txid >= final);

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
