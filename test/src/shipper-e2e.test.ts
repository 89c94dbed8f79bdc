// The shipper against a real S3 server (s3rver over HTTP, started here on a random loopback port):
// random transactions go in, objects come out, and an independent decoder rebuilds the database
// from them byte for byte. Faults come from a proxy in front of the same server.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { openReplicated, type ReplicatedDatabase, type ReplicatedOptions } from '@walship/shipper';
import type { ObjectStorage } from '@walship/storage';
import { Keyring, loadFormat, decodeObject } from '@walship/format';
import { startS3rver, startFaultProxy, type S3Server, type FaultProxy } from './servers/index.js';
import { rebuildFromReplica } from './util/replica.js';
import { restore } from '@walship/restore';
import { prng } from './util/prng.js';
import { s3Location, storageFor as sharedStorageFor } from './util/s3.js';

let server: S3Server;
let dir: string;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-ship-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function s3Options(prefix: string, endpoint = server.endpoint, extra: Partial<ReplicatedOptions> = {}): ReplicatedOptions {
  return {
    lease: false,
    s3: {
      ...s3Location(server, prefix, endpoint),
      retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 200, requestTimeoutMs: 1000, connectTimeoutMs: 500 },
    },
    batchWindowMs: 50,
    logLevel: 'silent',
    ...extra,
  };
}

function storageFor(prefix: string): ObjectStorage {
  return sharedStorageFor(server, prefix);
}

const newPrefix = (name: string): string => `e2e/${name}-${randomBytes(4).toString('hex')}`;

/** Random inserts, updates, deletes, multi-page blobs and rollbacks; returns the commits made. */
function randomWork(db: ReplicatedDatabase, rnd: () => number, n: number): number {
  db.exec('CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v BLOB, n INTEGER)');
  const put = db.prepare('INSERT OR REPLACE INTO kv VALUES (?, ?, ?)');
  const del = db.prepare('DELETE FROM kv WHERE k = ?');
  let commits = 0;
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const key = Math.floor(rnd() * 500);
    if (r < 0.6) {
      const size = rnd() < 0.05 ? 20000 + Math.floor(rnd() * 50000) : Math.floor(rnd() * 300);
      put.run(key, randomBytes(size), i);
      commits++;
    } else if (r < 0.8) {
      del.run(key);
      commits++;
    } else if (r < 0.9) {
      db.transaction(() => {
        for (let j = 0; j < 20; j++) put.run(Math.floor(rnd() * 500), randomBytes(Math.floor(rnd() * 200)), j);
      })();
      commits++;
    } else {
      try {
        db.transaction(() => {
          put.run(key, randomBytes(100), -1);
          throw new Error('rollback');
        })();
      } catch {
        // rolled back on purpose: nothing to ship
      }
    }
  }
  return commits;
}

async function assertReplicaEqualsFile(prefix: string, path: string, keyring?: Keyring): Promise<number> {
  const rebuilt = await rebuildFromReplica(storageFor(prefix), prefix, keyring ? { keyring } : {});
  const local = readFileSync(path);
  assert.equal(rebuilt.bytes.length, local.length, 'database size');
  assert.ok(Buffer.from(rebuilt.bytes).equals(local), 'replica rebuilds the database byte for byte');
  return rebuilt.txid;
}

describe('shipper against s3rver', () => {
  test('random transactions: every object decodes, the chain links, and the rebuild is byte-identical; reopen continues the lineage', async () => {
    const prefix = newPrefix('roundtrip');
    const path = join(dir, 'roundtrip.db');
    const rnd = prng(7);
    let db = await openReplicated(path, s3Options(prefix));
    randomWork(db, rnd, 300);
    const committed = db.txid;
    const flushed = await db.flush();
    assert.ok(flushed.txid >= committed, `flush covers every commit before it (${flushed.txid} >= ${committed})`);
    const st = db.status();
    assert.equal(st.durableTxid, st.committedTxid);
    assert.equal(st.pendingTransactions, 0);
    assert.match(await db.metrics(), /walship_transactions_durable_total\{database="[^"]+"\} \d+/);
    randomWork(db, rnd, 200);
    const generation = st.generation;
    const epoch = st.epoch;
    await db.close();
    const txid = await assertReplicaEqualsFile(prefix, path);

    db = await openReplicated(path, s3Options(prefix));
    assert.equal(db.status().generation, generation, 'a clean reopen continues the generation');
    assert.equal(db.status().epoch, epoch + 1, 'each writer start takes the next epoch');
    assert.equal(db.txid, txid, 'txids continue');
    randomWork(db, rnd, 100);
    await db.close();
    await assertReplicaEqualsFile(prefix, path);
  });

  test('a database rebuilt from the replica continues it (txids go on, same generation); a foreign local database does not', async () => {
    const prefix = newPrefix('continue');
    const path = join(dir, 'continue-src.db');
    let db = await openReplicated(path, s3Options(prefix));
    randomWork(db, prng(11), 150);
    const generation = db.status().generation;
    await db.close();
    const rebuilt = await rebuildFromReplica(storageFor(prefix), prefix);
    const restored = join(dir, 'continue-restored.db');
    writeFileSync(restored, rebuilt.bytes);
    db = await openReplicated(restored, s3Options(prefix));
    assert.equal(db.status().generation, generation);
    assert.equal(db.txid, rebuilt.txid, 'the restored file is the replica tip, whose marker already names it');
    randomWork(db, prng(12), 50);
    await db.close();
    await assertReplicaEqualsFile(prefix, restored);

    // A database that never came from this replica and is behind it: refused.
    const stranger = join(dir, 'stranger.db');
    await assert.rejects(openReplicated(stranger, s3Options(prefix)), (e: Error & { code?: string }) => e.code === 'ERR_DURABLE_AHEAD');
  });

  test('a local database that diverged from the replica: ERR_DIVERGED, or a new generation with a snapshot with allowRollback; periodic snapshots land', async () => {
    const prefix = newPrefix('diverge');
    const path = join(dir, 'diverge-a.db');
    let db = await openReplicated(path, s3Options(prefix, server.endpoint, { snapshotIntervalMs: 1, checkpointBytes: 16 * 1024 }));
    const first = db.status().generation;
    for (let i = 0; i < 6; i++) {
      randomWork(db, prng(20 + i), 40);
      await db.flush();
    }
    await db.close();
    const storage = storageFor(prefix);
    const snaps: string[] = [];
    for await (const o of storage.list({ prefix: `${prefix}/${first}/snapshots/` })) snaps.push(o.key);
    assert.ok(snaps.length >= 2, `periodic snapshots after the first (${snaps.length})`);
    await assertReplicaEqualsFile(prefix, path);

    // Another database, further along than the replica: not a continuation of it. A new generation
    // from it would bury the replica's transactions, so only on purpose (allowRollback).
    const other = join(dir, 'diverge-b.db');
    db = await openReplicated(other, s3Options(newPrefix('scratch')));
    randomWork(db, prng(99), 400);
    await db.close();
    await assert.rejects(openReplicated(other, s3Options(prefix)), (e: Error & { code?: string }) => e.code === 'ERR_DIVERGED' && /allowRollback/.test(e.message));
    db = await openReplicated(other, s3Options(prefix, server.endpoint, { allowRollback: true }));
    const second = db.status().generation;
    assert.notEqual(second, first, 'a new generation');
    assert.ok(second! > first!, 'generation ids sort by creation');
    randomWork(db, prng(100), 20);
    await db.close();
    const marker = JSON.parse(Buffer.from((await storage.get(`${prefix}/${second}/generation.json`))!).toString()) as { reason: string; parent: { generation: string } };
    assert.match(marker.reason, /differs|checkpointed past/);
    assert.equal(marker.parent.generation, first);
    await assertReplicaEqualsFile(prefix, other);
  });

  test('a database restored to an earlier txid: refused by default, a new generation from that txid with allowRollback', async () => {
    const prefix = newPrefix('rollback');
    const path = join(dir, 'rollback-src.db');
    let db = await openReplicated(path, s3Options(prefix));
    db.exec('CREATE TABLE t(x)');
    const ins = db.prepare('INSERT INTO t VALUES (?)');
    let k = 0;
    for (let i = 0; i < 60; i++) {
      ins.run(i);
      if (i === 29) {
        await db.flush();
        k = db.txid;
      }
    }
    const first = db.status().generation;
    await db.close();
    const older = join(dir, 'rollback-older.db');
    await restore({ s3: s3Options(prefix).s3, path: older, txid: k });
    await assert.rejects(openReplicated(older, s3Options(prefix)), (e: Error & { code?: string }) => e.code === 'ERR_DURABLE_AHEAD' && /allowRollback/.test(e.message));
    db = await openReplicated(older, s3Options(prefix, server.endpoint, { allowRollback: true }));
    assert.notEqual(db.status().generation, first);
    assert.ok(db.txid >= k && db.txid <= k + 1, `txids go on from the restored txid ${k} (${db.txid})`);
    assert.equal(db.prepare('SELECT count(*) FROM t').pluck().get(), 30);
    db.prepare('INSERT INTO t VALUES (?)').run(1000);
    const second = db.status().generation!;
    await db.close();
    const marker = JSON.parse(Buffer.from((await storageFor(prefix).get(`${prefix}/${second}/generation.json`))!).toString()) as { reason: string; parent: { generation: string; txid: number } };
    // k + 1 when the refused open above recorded its marker transaction on top of the restored
    // state (open does so when the file's marker row is not at the restored txid, which is the case
    // unless k was a checkpoint's txid; the refused open leaves it in the file).
    assert.equal(marker.parent.generation, first);
    assert.ok(marker.parent.txid === k || marker.parent.txid === k + 1, `parent txid ${marker.parent.txid}, restored to ${k}`);
    await assertReplicaEqualsFile(prefix, older);
  });

  test('bad configuration fails at open with one typed error and writes nothing', async () => {
    const prefix = newPrefix('bad');
    const cases: { name: string; options: ReplicatedOptions; code: string }[] = [
      { name: 'missing bucket', options: { ...s3Options(prefix), s3: { ...s3Options(prefix).s3, bucket: 'no-such-bucket-walship' } }, code: 'ERR_STORAGE_NO_BUCKET' },
      {
        name: 'wrong credentials',
        options: { ...s3Options(prefix), s3: { ...s3Options(prefix).s3, credentials: { accessKeyId: 'WRONG', secretAccessKey: 'wrong-secret' } } },
        code: 'ERR_STORAGE_ACCESS_DENIED',
      },
      { name: 'unreachable endpoint', options: s3Options(prefix, 'http://127.0.0.1:9'), code: 'ERR_STORAGE_UNAVAILABLE' },
      { name: 'bad key length', options: s3Options(prefix, server.endpoint, { encryption: { keys: [{ id: 'k1', key: new Uint8Array(16) }] } }), code: 'ERR_BAD_KEY' },
      { name: 'bad prefix', options: s3Options('/leading'), code: 'ERR_INVALID_OPTION' },
      { name: 'bad window', options: s3Options(prefix, server.endpoint, { batchWindowMs: -1 }), code: 'ERR_INVALID_OPTION' },
    ];
    for (const c of cases) {
      const path = join(dir, `bad-${c.name.replace(/ /g, '-')}.db`);
      await assert.rejects(openReplicated(path, c.options), (e: Error & { code?: string }) => {
        assert.equal(e.code, c.code, `${c.name}: ${e.message}`);
        return true;
      });
      assert.equal(existsSync(path), false, `${c.name}: no local file created`);
    }
    const listed: string[] = [];
    for await (const o of storageFor(prefix).list({ prefix })) listed.push(o.key);
    assert.deepEqual(listed, [], 'nothing written to the bucket');
  });

  test('encrypted replica: decodes with the key, refuses without it, and keys rotate', async () => {
    const prefix = newPrefix('enc');
    const path = join(dir, 'enc.db');
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    let db = await openReplicated(path, s3Options(prefix, server.endpoint, { encryption: { keys: [{ id: 'k1', key: k1 }] } }));
    randomWork(db, prng(3), 80);
    await db.close();
    db = await openReplicated(path, s3Options(prefix, server.endpoint, { encryption: { keys: [{ id: 'k2', key: k2.toString('base64') }, { id: 'k1', key: k1 }] } }));
    randomWork(db, prng(4), 40);
    await db.close();
    await assertReplicaEqualsFile(prefix, path, new Keyring({ keys: [{ id: 'k1', key: k1 }, { id: 'k2', key: k2 }] }));
    await assert.rejects(rebuildFromReplica(storageFor(prefix), prefix), (e: Error & { code?: string }) => e.code === 'ERR_KEY_REQUIRED');
    await assert.rejects(
      rebuildFromReplica(storageFor(prefix), prefix, { keyring: new Keyring({ keys: [{ id: 'k1', key: k1 }] }) }),
      (e: Error & { code?: string }) => e.code === 'ERR_UNKNOWN_KEY',
    );
  });
});

describe('shipper through a fault proxy', () => {
  let proxy: FaultProxy;
  before(async () => {
    proxy = await startFaultProxy({ target: server.endpoint, seed: 42, delayMs: 1500 });
  });
  after(async () => {
    await proxy?.stop();
  });

  test('20% faults of every kind: nothing lost, order kept, lag recovers', async () => {
    const prefix = newPrefix('faults');
    const path = join(dir, 'faults.db');
    const db = await openReplicated(path, s3Options(prefix, proxy.endpoint, { batchWindowMs: 0, uploadBackoff: { baseMs: 5, maxMs: 100 } }));
    try {
      // Every kind at least once, then a 20% random mix.
      proxy.script('reset-before', 'pass', 'reset-after', 'pass', 'error-500', 'pass', 'error-503', 'pass', 'delay');
      proxy.setFaultRate(0.2);
      const rnd = prng(99);
      for (let round = 0; round < 60; round++) {
        randomWork(db, rnd, 10);
        await new Promise((r) => setTimeout(r, 10));
      }
      const committed = db.txid;
      const { txid } = await db.flush();
      proxy.setFaultRate(0);
      assert.ok(txid >= committed);
      const st = db.status();
      assert.ok(st.durableTxid >= committed);
      assert.ok(st.lagMs < 1000, `lag recovered (${st.lagMs} ms)`);
    } finally {
      proxy.setFaultRate(0);
      await db.close();
    }
    const injected = proxy.counts;
    for (const kind of ['reset-before', 'reset-after', 'error-500', 'error-503', 'delay'] as const) assert.ok(injected[kind] > 0, `${kind} injected (${JSON.stringify(injected)})`);
    await assertReplicaEqualsFile(prefix, path);
  });

  test('S3 down across a checkpoint loses nothing; the WAL limit refuses writes with ERR_WAL_LIMIT and lifts once S3 is back', async () => {
    const prefix = newPrefix('down');
    const path = join(dir, 'down.db');
    const db = await openReplicated(path, s3Options(prefix, proxy.endpoint, { checkpointBytes: 64 * 1024, walLimitBytes: 2 * 1024 * 1024, uploadBackoff: { baseMs: 5, maxMs: 50 } }));
    try {
    db.exec('CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)');
    await db.flush();
    proxy.setDown(true);
    const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
    for (let i = 0; i < 50; i++) ins.run(randomBytes(2000));
    const cp = db.checkpoint();
    assert.equal(cp.checkpointed, false, 'nothing is checkpointed while it is not durable');
    let refused: (Error & { code?: string }) | undefined;
    for (let i = 0; i < 5000 && !refused; i++) {
      try {
        ins.run(randomBytes(4000));
      } catch (e) {
        refused = e as Error & { code?: string };
      }
    }
    assert.equal(refused?.code, 'ERR_WAL_LIMIT', `writes refused at the WAL limit: ${refused?.message}`);
    assert.equal(db.status().walLimitReached, true);
    const rows = db.prepare('SELECT count(*) FROM t').pluck().get() as number;
    assert.ok(rows > 50, 'reads go on');
    proxy.setDown(false);
    const committed = db.txid;
    const { txid } = await db.flush();
    assert.ok(txid >= committed);
    assert.equal(db.status().walLimitReached, false);
    ins.run(randomBytes(10));
    } finally {
      proxy.setDown(false);
      await db.close();
    }
    await assertReplicaEqualsFile(prefix, path);
  });

  test('S3 down for 30,000 commits: the waiting queue spills to its overflow file and every commit ships in order once S3 is back', async () => {
    const prefix = newPrefix('overflow');
    const path = join(dir, 'overflow.db');
    const db = await openReplicated(path, s3Options(prefix, proxy.endpoint, { batchWindowMs: 0, uploadBackoff: { baseMs: 5, maxMs: 50 } }));
    const COMMITS = 30_000;
    try {
      db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)');
      await db.flush();
      const durable = db.status().durableTxid;
      proxy.setDown(true);
      const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
      for (let i = 1; i <= COMMITS; i++) {
        ins.run(i * 7);
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      const st = db.status();
      assert.equal(st.durableTxid, durable, 'nothing ships while S3 is down');
      assert.ok(st.pendingTransactions >= COMMITS, `${st.pendingTransactions} transactions wait`);
      // 30,000 waiting transactions are more than the queue keeps in memory (its front two chunks of
      // 4,096 and the tail): the rest are in <db>-walship-pending, held open after its unlink.
      if (process.platform === 'linux') {
        const fds = readdirSync('/proc/self/fd').map((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            return '';
          }
        });
        assert.ok(fds.includes(`${path}-walship-pending (deleted)`), `the overflow file is open and unlinked (${fds.filter((f) => f.includes('walship')).join(', ')})`);
      }
      assert.equal(existsSync(`${path}-walship-pending`), false, 'the overflow file has no name to clean up');
      proxy.setDown(false);
      const committed = db.txid;
      const { txid } = await db.flush({ timeoutMs: 120_000 });
      assert.ok(txid >= committed);
      assert.equal(db.status().pendingTransactions, 0);
      const sum = db.prepare('SELECT count(*) AS n, sum(v) AS s FROM t').get() as { n: number; s: number };
      assert.deepEqual(sum, { n: COMMITS, s: (7 * COMMITS * (COMMITS + 1)) / 2 });
    } finally {
      proxy.setDown(false);
      await db.close();
    }
    await assertReplicaEqualsFile(prefix, path);
  });

  test('flush({ timeoutMs, signal }) gives up with the txids while S3 is down; status() says degraded; nothing is lost', async () => {
    const prefix = newPrefix('flush-deadline');
    const path = join(dir, 'flush-deadline.db');
    const db = await openReplicated(path, s3Options(prefix, proxy.endpoint, { batchWindowMs: 0, uploadBackoff: { baseMs: 5, maxMs: 50 } }));
    try {
      db.exec('CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)');
      await db.flush();
      assert.equal(db.status().state, 'running');
      const durable = db.status().durableTxid;
      proxy.setDown(true);
      for (let i = 0; i < 20; i++) db.prepare('INSERT INTO t(v) VALUES (?)').run(`row ${i}`);
      const committed = db.txid;
      await assert.rejects(db.flush({ timeoutMs: 300 }), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
        assert.equal(e.code, 'ERR_FLUSH_TIMEOUT');
        assert.equal(e.details?.['txid'], committed);
        assert.equal(e.details?.['durableTxid'], durable);
        assert.match(e.message, new RegExp(`txid ${committed} is committed, ${durable} is durable`));
        return true;
      });
      // The failed upload is reported once the storage client's own retries are spent, which on a
      // loaded machine can be after the 300 ms deadline (a liveness bound).
      for (const t0 = Date.now(); db.status().lastError === null && Date.now() - t0 < 10_000; ) await sleep(20);
      assert.equal(db.status().state, 'degraded');
      assert.ok(db.status().lastError, 'the upload error is reported');
      const controller = new AbortController();
      const aborted = db.flush({ signal: controller.signal });
      controller.abort(new Error('shutting down'));
      await assert.rejects(aborted, (e: Error & { code?: string }) => e.code === 'ERR_ABORTED');
      await assert.rejects(db.flush({ timeoutMs: -1 }), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_OPTION');
      proxy.setDown(false);
      const { txid } = await db.flush({ timeoutMs: 30_000 });
      assert.ok(txid >= committed);
      assert.equal(db.status().state, 'running');
    } finally {
      proxy.setDown(false);
      await db.close();
    }
    await assertReplicaEqualsFile(prefix, path);
  });
});

test('segment objects carry the header fields the format promises', async () => {
  const prefix = newPrefix('headers');
  const path = join(dir, 'headers.db');
  const db = await openReplicated(path, s3Options(prefix, server.endpoint, { batchWindowMs: 0 }));
  db.exec('CREATE TABLE t(x)');
  await db.flush();
  for (let i = 0; i < 20; i++) {
    db.prepare('INSERT INTO t VALUES (?)').run(i);
    await db.flush();
  }
  await db.close();
  const storage = storageFor(prefix);
  let segments = 0;
  for await (const o of storage.list({ prefix })) {
    if (!o.key.endsWith('.seg')) continue;
    const bytes = (await storage.get(o.key))!;
    for await (const ev of decodeObject(bytes, { name: o.key })) {
      if (ev.type !== 'header') continue;
      assert.equal(ev.header.epoch, 1);
      assert.ok(ev.header.maxTxid >= ev.header.minTxid);
      assert.ok(ev.header.lastTimestamp >= ev.header.firstTimestamp);
    }
    segments++;
  }
  assert.ok(segments >= 20, `one segment per flushed commit (${segments})`);
});
