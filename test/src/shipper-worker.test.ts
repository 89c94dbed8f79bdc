// The shipper's encoder worker failing against a real S3 server (s3rver over HTTP): a worker that
// dies, one that gets stuck, and one that never starts each give a typed error (flush, writes,
// status), and nothing acknowledged is lost: the replica holds every flushed transaction, and the
// next open ships the rest from the WAL.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openReplicated, type ReplicatedOptions } from '@walship/shipper';
import { loadFormat } from '@walship/format';
import { startS3rver, type S3Server } from './servers/index.js';
import { rebuildFromReplica } from './util/replica.js';
import { s3Location, storageFor } from './util/s3.js';

let server: S3Server;
let dir: string;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-worker-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const faulty = new URL('./fixtures/encode-worker-fault.js', import.meta.url);

function options(prefix: string, encoder?: ReplicatedOptions['encoder']): ReplicatedOptions {
  return {
    lease: false,
    s3: { ...s3Location(server, prefix), retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 200, requestTimeoutMs: 2000, connectTimeoutMs: 1000 } },
    batchWindowMs: 20,
    logLevel: 'silent',
    ...(encoder ? { encoder } : {}),
  };
}

const codeOf = (e: unknown): string | undefined => (e as { code?: string })?.code;

/**
 * The local file after a clean close equals the replica rebuilt from its objects, which reaches
 * `txid` (close ships a checkpoint's marker transaction after it); returns the replica's txid.
 */
async function assertReplicaIsFile(prefix: string, path: string, txid: number): Promise<number> {
  const rebuilt = await rebuildFromReplica(storageFor(server, prefix), prefix);
  assert.ok(rebuilt.txid >= txid, `the replica reaches the last committed txid ${txid} (it ends at ${rebuilt.txid})`);
  assert.ok(Buffer.from(rebuilt.bytes).equals(readFileSync(path)), 'the replica rebuilds the local file byte for byte');
  return rebuilt.txid;
}

for (const fault of ['crash', 'stall'] as const) {
  const code = fault === 'crash' ? 'ERR_SHIPPER_WORKER_CRASHED' : 'ERR_SHIPPER_WORKER_STALLED';
  describe(`encoder worker ${fault}`, () => {
    test(`flush, writes and status() report ${code}; every flushed transaction is in the replica and the rest ships on reopen`, { timeout: 120_000 }, async () => {
      const prefix = `worker/${fault}-${randomBytes(4).toString('hex')}`;
      const path = join(dir, `${fault}.db`);
      const db = await openReplicated(path, options(prefix, { workerUrl: faulty, stallMs: 3000 }));
      assert.deepEqual(db.status().encoder, { thread: 'worker', failure: null });
      db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
      const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
      for (let i = 0; i < 30; i++) insert.run(randomBytes(500));
      const acknowledged = (await db.flush()).txid;
      assert.equal(acknowledged, db.txid);

      writeFileSync(`${path}-wal.${fault}`, '');
      for (let i = 0; i < 30; i++) insert.run(randomBytes(500));
      const committed = db.txid;
      // timeoutMs only bounds a broken build (sabotage): the worker's error arrives first.
      const flushed = await db.flush({ timeoutMs: 60_000 }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.equal(codeOf(flushed), code, `flush rejects with ${code} (got ${String(flushed)})`);
      assert.throws(() => insert.run(randomBytes(10)), (e: unknown) => codeOf(e) === code, 'writes are refused with the worker error');
      const status = db.status();
      assert.equal(status.state, 'failed');
      assert.equal(status.lastError?.code, code);
      assert.equal(status.encoder.failure?.code, code, 'status().encoder says why');
      assert.equal(status.durableTxid, acknowledged, 'nothing past the last acknowledged transaction is called durable');
      assert.equal(status.committedTxid, committed);
      await assert.rejects(db.close(), (e: unknown) => codeOf(e) === 'ERR_CLOSED');

      const before = await rebuildFromReplica(storageFor(server, prefix), prefix);
      assert.equal(before.txid, acknowledged, 'the replica holds every acknowledged transaction');

      rmSync(`${path}-wal.${fault}`, { force: true });
      const again = await openReplicated(path, options(prefix));
      assert.ok((await again.flush()).txid >= committed, 'the transactions the dead worker never shipped ship from the WAL');
      const rows = again.prepare('SELECT count(*) AS n FROM t').get() as { n: number };
      assert.equal(rows.n, 60);
      const last = again.txid;
      await again.close();
      await assertReplicaIsFile(prefix, path, last);
    });
  });
}

describe('encoder worker start failure', () => {
  for (const [what, url] of [
    ['a missing module', new URL('./fixtures/no-such-worker.js', import.meta.url)],
    ['a module that throws while it loads', new URL('./fixtures/encode-worker-throws.js', import.meta.url)],
  ] as const) {
    test(`${what}: openReplicated rejects with ERR_SHIPPER_WORKER_START_FAILED and touches nothing`, { timeout: 120_000 }, async () => {
      const prefix = `worker/start-${randomBytes(4).toString('hex')}`;
      const path = join(dir, `start-${randomBytes(4).toString('hex')}.db`);
      const db = await openReplicated(path, options(prefix));
      db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
      for (let i = 0; i < 10; i++) db.prepare('INSERT INTO t(v) VALUES (?)').run(`row ${i}`);
      const txid = db.txid;
      await db.close();
      const file = readFileSync(path);

      const failed = await openReplicated(path, options(prefix, { workerUrl: url })).then(
        async (d) => {
          await d.close();
          return null;
        },
        (e: unknown) => e,
      );
      assert.equal(codeOf(failed), 'ERR_SHIPPER_WORKER_START_FAILED', `open fails typed (got ${String(failed)})`);
      assert.equal((failed as { details?: { workerUrl?: string } }).details?.workerUrl, url.href);
      assert.ok(readFileSync(path).equals(file), 'the database file is untouched');
      const replicaTxid = await assertReplicaIsFile(prefix, path, txid);

      const again = await openReplicated(path, options(prefix));
      assert.equal(again.txid, replicaTxid, 'the next open continues the replica');
      await again.close();
    });
  }
});
