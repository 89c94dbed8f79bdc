// The replicated writer heals after a DynamoDB outage longer than its lease (issue 12 part 1):
// while the lease is not held, writes and flushes fail fast with the retryable ERR_LEASE_NOT_HELD
// and status() says leaseless; once DynamoDB answers, the same open database re-acquires under a
// new epoch, writes that epoch's start marker first, and ships what was committed before the loss.
// If another writer took over meanwhile, it stops for good with ERR_LEASE_LOST. Real servers:
// s3rver and dynalite, each behind a fault proxy.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createDynamoLease, createLeaseTable } from '@walship/lease';
import { openReplicated, type ReplicatedDatabase, type ReplicatedOptions } from '@walship/shipper';
import { restore } from '@walship/restore';
import { createS3Storage } from '@walship/storage';
import { loadFormat, parseObjectKey } from '@walship/format';
import { nodeFs, openDatabase, type FsOps } from '@walship/vfs';
import { startDynalite, startFaultProxy, startS3rver, type DynamoServer, type FaultProxy, type S3Server } from './servers/index.js';

const TABLE = 'walship-leases';
// 4 s: with 1 s, a renewal that waited behind a busy machine (CI with a stray process spinning
// beside its three lanes) let the re-acquired lease run out again before the test could flush. The
// lease also caps each S3 request at leaseMs / 4 (1 s here).
const LEASE_MS = 4000;

let s3: S3Server;
let dynamo: DynamoServer;
let sproxy: FaultProxy;
let dproxy: FaultProxy;
let dir: string;

before(async () => {
  await loadFormat();
  [s3, dynamo] = await Promise.all([startS3rver(), startDynalite()]);
  await createLeaseTable({ table: TABLE, ...dynamoConnection(dynamo.endpoint) });
  sproxy = await startFaultProxy({ target: s3.endpoint });
  dproxy = await startFaultProxy({ target: dynamo.endpoint });
  dir = mkdtempSync(join(tmpdir(), 'walship-heal-'));
  // A cold first open (WASM, SDK, first connections) can take most of a short lease.
  const warm = await openReplicated(join(dir, 'warm.db'), { ...options('heal/warm-up'), lease: false });
  warm.exec('CREATE TABLE w(x)');
  await warm.close();
});

after(async () => {
  await Promise.all([sproxy?.stop(), dproxy?.stop()]);
  await Promise.all([s3?.stop(), dynamo?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function dynamoConnection(endpoint: string) {
  return { endpoint, region: dynamo.region, credentials: { accessKeyId: dynamo.accessKeyId, secretAccessKey: dynamo.secretAccessKey } };
}

const s3Options = (prefix: string, endpoint: string) => ({
  bucket: s3.bucket,
  prefix,
  endpoint,
  region: s3.region,
  forcePathStyle: true,
  credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  // 1 s per request: in a full CI run a LIST at open timed out 4 times at 300 ms (s3rver beside
  // the three lanes). An outage here is a proxy that resets connections, so it fails fast anyway.
  retry: { attempts: 4, baseDelayMs: 5, maxDelayMs: 50, requestTimeoutMs: 1000, connectTimeoutMs: 500 },
});

function options(prefix: string): ReplicatedOptions {
  return {
    lease: { table: TABLE, ...dynamoConnection(dproxy.endpoint), leaseMs: LEASE_MS },
    s3: s3Options(prefix, sproxy.endpoint),
    batchWindowMs: 0,
    uploadBackoff: { baseMs: 5, maxMs: 50 },
    logLevel: 'silent',
  };
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const code = (e: unknown): string | undefined => (e as { code?: string }).code;

/** Rows 1..5 durable, then 6..8 committed while S3 is down (not durable), then DynamoDB down until the lease is lost. */
async function leaselessWithPending(path: string, prefix: string): Promise<{ db: ReplicatedDatabase; epoch: number; durableAtLoss: number }> {
  const db = await openReplicated(path, options(prefix));
  db.exec('CREATE TABLE t(x INTEGER PRIMARY KEY)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  for (let x = 1; x <= 5; x++) insert.run(x);
  await db.flush();
  const epoch = db.status().epoch;
  sproxy.setDown(true);
  for (let x = 6; x <= 8; x++) insert.run(x);
  const durableAtLoss = db.status().durableTxid;
  assert.ok(db.status().committedTxid > durableAtLoss, 'transactions are waiting for S3 when the lease goes');
  dproxy.setDown(true);
  await until('status().state leaseless', () => db.status().state === 'leaseless');
  return { db, epoch, durableAtLoss };
}

describe('the writer heals after a DynamoDB outage', () => {
  test('writes fail fast while leaseless; once DynamoDB answers, the same database resumes under a new epoch and ships everything committed', async () => {
    const prefix = `heal/${randomBytes(3).toString('hex')}`;
    const { db, epoch, durableAtLoss } = await leaselessWithPending(join(dir, 'heal.db'), prefix);
    try {
      const st = db.status();
      assert.equal(st.lease.mode === 'dynamodb' ? st.lease.state : null, 'lost');
      assert.ok(st.lastError, 'status() carries the last error while leaseless');
      const refused = (() => {
        try {
          db.prepare('INSERT INTO t VALUES (100)').run();
        } catch (e) {
          return e as Error & { code?: string; details?: Record<string, unknown> };
        }
        return null;
      })();
      assert.equal(refused?.code, 'ERR_LEASE_NOT_HELD', String(refused));
      assert.equal(refused?.details?.['retryable'], true);
      assert.equal(refused?.details?.['epoch'], epoch);
      await assert.rejects(db.flush(), (e) => code(e) === 'ERR_LEASE_NOT_HELD');

      sproxy.setDown(false);
      dproxy.setDown(false);
      await until('the writer to run again under a new epoch', () => db.status().state === 'running' && db.status().epoch > epoch);
      const healed = db.status();
      assert.equal(healed.epoch, epoch + 1);
      assert.equal(healed.lease.mode === 'dynamodb' ? healed.lease.how : null, 'reacquire');
      const insert = db.prepare('INSERT INTO t VALUES (?)');
      for (let x = 9; x <= 12; x++) insert.run(x);
      const { txid } = await db.flush();
      assert.equal(txid, db.status().committedTxid);

      const storage = createS3Storage({ bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      let startOfNew: number | undefined;
      const newSegments: number[] = [];
      for await (const o of storage.list({ prefix })) {
        const k = parseObjectKey(prefix, o.key);
        if (k?.kind === 'epoch' && k.epoch === epoch + 1) startOfNew = (JSON.parse(Buffer.from((await storage.get(o.key))!).toString()) as { startTxid: number }).startTxid;
        if (k?.kind === 'segment' && k.epoch === epoch + 1) newSegments.push(k.minTxid);
      }
      assert.equal(startOfNew, durableAtLoss + 1, 'the new epoch starts right after what was durable at the loss');
      assert.ok(newSegments.length > 0 && newSegments.every((m) => m >= startOfNew!), `segments of the new epoch start at its marker (${newSegments.join(', ')})`);
    } finally {
      sproxy.setDown(false);
      dproxy.setDown(false);
      await db.close();
    }
    const r = await restore({ s3: s3Options(prefix, s3.endpoint), path: join(dir, 'heal-restored.db') });
    const check = await openDatabase(r.path, { capture: false, create: false });
    try {
      assert.deepEqual(check.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'nothing committed was lost: 6..8 shipped under the new epoch');
    } finally {
      check.close();
    }
  });

  test('another writer took over during the outage: the old one cannot re-acquire and stops with ERR_LEASE_LOST', async () => {
    const prefix = `heal-taken/${randomBytes(3).toString('hex')}`;
    const { db, epoch } = await leaselessWithPending(join(dir, 'taken.db'), prefix);
    const other = createDynamoLease({ table: TABLE, ...dynamoConnection(dynamo.endpoint), key: `s3://${s3.bucket}/${prefix}`, leaseMs: LEASE_MS, logger: () => undefined });
    try {
      const g = await other.acquire({ waitMs: 10_000 });
      assert.equal(g.epoch, epoch + 1);
      sproxy.setDown(false);
      dproxy.setDown(false);
      await until('the old writer to stop', () => db.status().state === 'failed');
      assert.throws(() => db.prepare('INSERT INTO t VALUES (100)').run(), (e) => code(e) === 'ERR_LEASE_LOST');
      await assert.rejects(db.flush(), (e) => code(e) === 'ERR_LEASE_LOST');
      const st = db.status();
      assert.equal(st.epoch, epoch, 'no new epoch');
      assert.ok(st.committedTxid > st.durableTxid, 'what was not durable is reported, never shipped');
      await other.release();
    } finally {
      other.close();
      sproxy.setDown(false);
      dproxy.setDown(false);
      await db.close().catch(() => undefined);
    }
  });
});

/** node:fs whose next `failNext` writes fail with ENOSPC, as a full disk does; counts the failures. */
function fullDisk(): { fs: FsOps; failNext: number; failures: number } {
  const state = { fs: { ...nodeFs } as FsOps, failNext: 0, failures: 0 };
  state.fs.writeSync = (fd, buf, off, len, pos) => {
    if (state.failNext > 0) {
      state.failNext--;
      state.failures++;
      throw Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    return nodeFs.writeSync(fd, buf, off, len, pos);
  };
  return state;
}

describe('close() on a full disk', () => {
  // 'through close': every write fails until close() returns. 'one write': only the checkpoint's
  // first write fails, so the disk has room again by the time the handle closes (a checkpoint there
  // that wrote its own marker would put a txid in the file the replica never gets).
  for (const [name, failNext] of [['through close', 1e9], ['one write', 1]] as const) {
    test(`${name}: the checkpoint at close fails, close() still releases the lease, and the next open continues the replica`, async () => {
      const prefix = `heal-full/${randomBytes(3).toString('hex')}`;
      const path = join(dir, `full-${failNext}.db`);
      const disk = fullDisk();
      const db = await openReplicated(path, { ...options(prefix), database: { fs: disk.fs } });
      db.exec('CREATE TABLE t(x INTEGER PRIMARY KEY)');
      const insert = db.prepare('INSERT INTO t VALUES (?)');
      for (let x = 1; x <= 20; x++) insert.run(x);
      const { txid } = await db.flush();
      disk.failNext = failNext;
      await db.close();
      disk.failNext = 0;
      assert.ok(disk.failures > 0, 'the checkpoint at close hit the full disk');
      assert.ok(statSync(`${path}-wal`).size > 0, 'the WAL keeps its frames');

      const other = createDynamoLease({ table: TABLE, ...dynamoConnection(dynamo.endpoint), key: `s3://${s3.bucket}/${prefix}`, leaseMs: LEASE_MS, logger: () => undefined });
      try {
        // A lease close() did not release would make this wait out the holder's deadline (waitMs 0: refused).
        const g = await other.acquire({ waitMs: 0 });
        assert.ok(g.epoch > 0);
        await other.release();
      } finally {
        other.close();
      }

      const again = await openReplicated(path, options(prefix));
      try {
        assert.equal(again.txid, txid, 'the WAL recovered every transaction, and no more');
        again.prepare('INSERT INTO t VALUES (?)').run(21);
        await again.flush();
      } finally {
        await again.close();
      }
      const r = await restore({ s3: s3Options(prefix, s3.endpoint), path: join(dir, `full-${failNext}-restored.db`) });
      const check = await openDatabase(r.path, { capture: false, create: false });
      try {
        assert.deepEqual(check.prepare('SELECT x FROM t ORDER BY x').pluck().all(), Array.from({ length: 21 }, (_, i) => i + 1));
      } finally {
        check.close();
      }
    });
  }
});
