// openReplica when things go wrong: a damaged chunk, a chunk forged with recomputed checksums, an
// object swapped after the replica was opened, S3 faults during page reads (retried, then a typed
// error), and a cache much smaller than the database (evicts, stays within cacheBytes, same rows).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { CHUNK_HEADER_SIZE, HEADER_SIZE, Keyring, loadChecksum, loadFormat, readIndex } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { openReplicated } from '@walship/shipper';
import { openDatabase } from '@walship/vfs';
import { openReplica, restore } from '@walship/restore';
import { startFaultProxy, startS3rver, type FaultProxy, type S3Server } from './servers/index.js';
import { newPrefix, replicaTransactions, s3Options, source, storageFor } from './util/restore-harness.js';
import { openOracle } from './util/oracle-sqlite.js';
import type { ChildReply, ChildRequest } from './util/replica-child.js';

let server: S3Server;
let proxy: FaultProxy;
let dir: string;
const keys = [{ id: 'faults-k1', key: randomBytes(32) }];
const keyring = new Keyring({ keys });

interface Fixture {
  prefix: string;
  storage: ObjectStorage;
  snapshot: { key: string; txid: number };
  tip: number;
  extra: { keys?: typeof keys };
}
const fixtures = {} as Record<'plain' | 'encrypted' | 'other' | 'twelve', Fixture>;

/** A database with ~6 MiB (`rows` x 100 KB) of incompressible rows, replicated from then on: a snapshot of all of it, then one segment. */
async function write(label: keyof typeof fixtures, rows = 60): Promise<void> {
  const prefix = newPrefix(`replica-${label}`);
  const encrypted = label === 'encrypted';
  const options = s3Options(server, prefix, encrypted ? { encryption: { keys } } : {});
  const path = join(dir, `${label}.db`);
  // Written before replication starts: the first generation's snapshot then holds all of it.
  const local = await openDatabase(path, { onCommit: () => undefined });
  local.exec('CREATE TABLE blobs(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  const insert = local.prepare('INSERT INTO blobs(v) VALUES (?)');
  for (let i = 0; i < rows; i++) insert.run(randomBytes(100_000));
  local.acknowledge(local.txid);
  local.checkpoint();
  local.close();
  const db = await openReplicated(path, options);
  db.prepare('INSERT INTO blobs(v) VALUES (?)').run(randomBytes(10));
  const tip = (await db.flush()).txid;
  await db.close();
  const storage = storageFor(server, prefix);
  const r = await replicaTransactions(storage, prefix, encrypted ? { keyring } : {});
  const snapshot = r.snapshots.sort((a, b) => b.txid - a.txid)[0];
  assert.ok(snapshot, 'a snapshot');
  fixtures[label] = { prefix, storage, snapshot, tip, extra: encrypted ? { keys } : {} };
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  proxy = await startFaultProxy({ target: server.endpoint, seed: 15 });
  dir = mkdtempSync(join(tmpdir(), 'walship-replica-faults-'));
  await write('plain');
  await write('encrypted');
  await write('other');
  await write('twelve', 130);
});

after(async () => {
  await proxy?.stop();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The object's bytes with its data chunk `i` changed by `edit` (given the whole object and the chunk's offsets). */
async function editChunk(f: Fixture, key: string, i: number, edit: (bytes: Uint8Array, start: number, end: number) => void): Promise<Uint8Array> {
  const bytes = (await f.storage.get(key)) as Uint8Array;
  const { index, trailer } = await readIndex(bytes.subarray(0, HEADER_SIZE), bytes, { name: key, ...(f.extra.keys ? { keyring } : {}) });
  assert.ok(index.chunks.length > i + 1, `the snapshot has ${index.chunks.length} chunks`);
  const start = (index.chunks[i] as { objectOffset: number }).objectOffset;
  const end = index.chunks[i + 1]?.objectOffset ?? trailer.indexOffset;
  const original = new Uint8Array(bytes); // a copy: the body may be a Buffer, whose slice() is a view
  edit(bytes, start, end);
  await f.storage.put(key, bytes);
  return original;
}

function sumRows(db: { prepare(sql: string): { get(): unknown } }): unknown {
  return db.prepare('SELECT count(*) AS n, sum(length(v)) AS bytes, sum(unicode(substr(v, 7, 1))) AS probe FROM blobs').get();
}

describe('damaged and forged objects', () => {
  test('a bit flipped in a snapshot chunk: the query fails with ERR_CORRUPT_OBJECT naming the object, no rows', async () => {
    const f = fixtures.plain;
    // Damaged before the open (one damaged after it is another version: ERR_STORAGE_OBJECT_CHANGED).
    const original = await editChunk(f, f.snapshot.key, 2, (b, start) => {
      b[start + CHUNK_HEADER_SIZE + 100] = (b[start + CHUNK_HEADER_SIZE + 100] as number) ^ 0x10;
    });
    const db = await openReplica({ ...source(server, f.prefix), txid: f.snapshot.txid });
    try {
      assert.throws(() => sumRows(db), (e: Error & { code?: string; details?: { key?: string; formatCode?: string } }) => {
        assert.equal(e.code, 'ERR_CORRUPT_OBJECT', e.message);
        assert.equal(e.details?.key, f.snapshot.key);
        assert.equal(e.details?.formatCode, 'ERR_CHECKSUM_MISMATCH');
        return true;
      });
    } finally {
      db.close();
      await f.storage.put(f.snapshot.key, original);
    }
    const again = await openReplica({ ...source(server, f.prefix), txid: f.snapshot.txid });
    try {
      assert.ok((sumRows(again) as { n: number }).n >= 60, 'the repaired object reads');
    } finally {
      again.close();
    }
  });

  test('encrypted: a chunk changed with its checksums recomputed fails GCM (ERR_DECRYPT_FAILED), never a wrong row', async () => {
    const f = fixtures.encrypted;
    const sums = await loadChecksum();
    const original = await editChunk(f, f.snapshot.key, 1, (b, start, end) => {
      b[start + CHUNK_HEADER_SIZE + 50] = (b[start + CHUNK_HEADER_SIZE + 50] as number) ^ 0x01;
      const v = new DataView(b.buffer, b.byteOffset);
      v.setBigUint64(start + 16, sums.xxh64(b.subarray(start + CHUNK_HEADER_SIZE, end)));
      v.setBigUint64(start + 24, sums.xxh64(b.subarray(start, start + 24)));
    });
    const db = await openReplica({ ...source(server, f.prefix), ...f.extra, txid: f.snapshot.txid });
    try {
      assert.throws(() => db.verify(), { code: 'ERR_DECRYPT_FAILED' });
      assert.throws(() => sumRows(db), { code: 'ERR_DECRYPT_FAILED' });
    } finally {
      db.close();
      await f.storage.put(f.snapshot.key, original);
    }
  });

  // Plain chunks are not bound to their object (encrypted ones are, by their AAD): another database's
  // object whose chunks sit at the same offsets would decode. The ETag the index was read with is
  // required of every later ranged GET, so no page of the replacement is used.
  test('an object replaced after open is refused by its ETag (ERR_STORAGE_OBJECT_CHANGED naming the key), no rows of the other database', async () => {
    const f = fixtures.plain;
    const db = await openReplica({ ...source(server, f.prefix), txid: f.snapshot.txid });
    const original = (await f.storage.get(f.snapshot.key)) as Uint8Array;
    await f.storage.put(f.snapshot.key, (await fixtures.other.storage.get(fixtures.other.snapshot.key)) as Uint8Array);
    try {
      for (const read of [() => db.verify(), () => sumRows(db)]) {
        assert.throws(read, (e: Error & { code?: string; details?: { key?: string } }) => {
          assert.equal(e.code, 'ERR_STORAGE_OBJECT_CHANGED', e.message);
          assert.equal(e.details?.key, f.snapshot.key);
          assert.match(e.message, /written again under its key after the replica read its index/);
          return true;
        });
      }
    } finally {
      db.close();
      await f.storage.put(f.snapshot.key, original);
    }
  });

  test('an object of another database under this prefix is refused at open (ERR_FOREIGN_OBJECT or a key mismatch)', async () => {
    const f = fixtures.plain;
    const original = (await f.storage.get(f.snapshot.key)) as Uint8Array;
    await f.storage.put(f.snapshot.key, (await fixtures.other.storage.get(fixtures.other.snapshot.key)) as Uint8Array);
    try {
      await assert.rejects(openReplica({ ...source(server, f.prefix), txid: f.snapshot.txid }), (e: Error & { code?: string }) => {
        assert.ok(['ERR_FOREIGN_OBJECT', 'ERR_CORRUPT_OBJECT'].includes(e.code ?? ''), `${e.code}: ${e.message}`);
        return true;
      });
    } finally {
      await f.storage.put(f.snapshot.key, original);
    }
  });
});

/** The replica in a child process (see util/replica-child.ts): one request at a time. */
function child(): { ask: (req: ChildRequest) => Promise<ChildReply>; stop: () => void } {
  const c = fork(fileURLToPath(new URL('./util/replica-child.js', import.meta.url)), { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  return {
    ask: (req) =>
      new Promise((resolve, reject) => {
        c.once('message', (m) => resolve(m as ChildReply));
        c.once('exit', (code) => reject(new Error(`replica child exited with ${code}`)));
        c.send(req);
      }),
    stop: () => c.kill(),
  };
}

describe('S3 faults during page reads', () => {
  test('a 503 and a reset are retried; a store that stays down is ERR_STORAGE_UNAVAILABLE; it reads again once back', async () => {
    const f = fixtures.encrypted;
    // Four attempts: the two scripted faults may hit one GET, which must still succeed.
    const s3 = { ...source(server, f.prefix).s3, endpoint: proxy.endpoint, retry: { attempts: 4, baseDelayMs: 10, maxDelayMs: 100, requestTimeoutMs: 5000 } };
    const { ask, stop } = child();
    const sql = 'SELECT count(*) AS n, sum(length(v)) AS bytes, sum(unicode(substr(v, 7, 1))) AS probe FROM blobs';
    try {
      const opened = await ask({ op: 'open', options: { s3, keys: keys.map((k) => ({ id: k.id, key: k.key.toString('base64') })), cacheBytes: 1024 * 1024 } });
      assert.ok(opened.ok, JSON.stringify(opened));
      const before = { ...proxy.counts };
      proxy.script('error-503', 'reset-before');
      const first = await ask({ op: 'get', sql });
      assert.ok(first.ok, JSON.stringify(first));
      assert.equal((first.value as { n: number }).n, 61);
      assert.equal(proxy.counts['error-503'] - before['error-503'], 1, 'a 503 was injected into a page read');
      assert.equal(proxy.counts['reset-before'] - before['reset-before'], 1, 'a reset was injected into a page read');
      proxy.setDown(true);
      const down = await ask({ op: 'get', sql });
      assert.ok(!down.ok, `a query while the store is down fails: ${JSON.stringify([down, await ask({ op: 'status' })])}`);
      assert.equal(down.error.code, 'ERR_STORAGE_UNAVAILABLE', down.error.message);
      assert.ok(!down.error.message.includes(server.secretAccessKey), 'no credentials in the message');
      proxy.setDown(false);
      const again = await ask({ op: 'get', sql });
      assert.ok(again.ok, JSON.stringify(again));
      assert.deepEqual(again.value, first.value);
    } finally {
      proxy.setDown(false);
      proxy.clearScript();
      stop();
    }
  });
});

describe('cache bounded by cacheBytes', () => {
  test('chunks opened into the buffers of evicted ones: a scan forwards then backwards reads every row as a restore has it', async () => {
    const f = fixtures.twelve;
    // Three of the thirteen 1 MiB chunks fit: the backward scan starts on chunks still cached, all
    // opened into the buffers of chunks evicted before them.
    const db = await openReplica({ ...source(server, f.prefix), cacheBytes: 3.5 * 1024 * 1024 });
    const path = join(dir, 'restored-reuse.db');
    await restore({ ...source(server, f.prefix), path });
    const oracle = openOracle(path, { readonly: true });
    try {
      const sql = 'SELECT id, hex(v) AS v FROM blobs ORDER BY id';
      const want = oracle.prepare(sql).all().map((r) => ({ ...(r as object) }));
      assert.deepEqual(db.prepare(sql).all(), want);
      assert.ok(db.status().buffersReused > 0, `buffers reused: ${db.status().buffersReused}`);
      // SQLite's own page cache (2 MiB) is shrunk first, or it would serve the first pages back.
      db.pragma('cache_size = -16');
      assert.deepEqual(db.prepare(`${sql} DESC`).all(), [...want].reverse());
      db.verify();
    } finally {
      oracle.close();
      db.close();
    }
  });

  test('a full scan of a 6 MiB database with a 1 MiB cache evicts, stays within cacheBytes and equals a restore', async () => {
    const f = fixtures.plain;
    const cacheBytes = 1024 * 1024;
    const db = await openReplica({ ...source(server, f.prefix), cacheBytes });
    const path = join(dir, 'restored-plain.db');
    await restore({ ...source(server, f.prefix), path });
    const oracle = openOracle(path, { readonly: true });
    try {
      const all = db.prepare('SELECT id, hex(v) AS v FROM blobs ORDER BY id');
      // Plain objects: node:sqlite (the oracle on Node 22 and 24) returns rows with a null prototype.
      const want = oracle.prepare('SELECT id, hex(v) AS v FROM blobs ORDER BY id').all().map((r) => ({ ...(r as object) }));
      let max = 0;
      const got: unknown[] = [];
      for (const row of all.iterate()) {
        got.push(row);
        max = Math.max(max, db.status().cachedBytes);
      }
      assert.deepEqual(got, want);
      db.verify();
      const s = db.status();
      max = Math.max(max, s.cachedBytes);
      assert.ok(s.evictions > 0, `evictions: ${s.evictions}`);
      assert.ok(s.buffersReused > 0, `evicted chunks' buffers reused for the next ones (and the rows still equal the restore's): ${s.buffersReused}`);
      assert.ok(max <= cacheBytes, `cached ${max} bytes, cacheBytes ${cacheBytes}`);
      assert.equal(s.cacheBytes, cacheBytes);
    } finally {
      oracle.close();
      db.close();
    }
  });
});
