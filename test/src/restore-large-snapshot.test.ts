// A snapshot larger than one ranged piece (8 MiB) is decoded and written by a worker thread while
// restore's thread downloads it (packages/restore/src/snapshot-thread.ts). The restored database
// is the source's, and damage anywhere in such a snapshot still ends in one typed error naming it,
// with the target untouched and no scratch file left.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan, restore, type RestorePlan } from '@walship/restore';
import type { ObjectStorage } from '@walship/storage';
import { openDatabase } from '@walship/vfs';
import { startS3rver, type S3Server } from './servers/index.js';
import { newPrefix, s3Options, source, storageFor } from './util/restore-harness.js';

/** restore's ranged GET size (packages/restore/src/apply.ts PIECE_SIZE). */
const PIECE_SIZE = 8 * 1024 * 1024;

type Coded = Error & { code?: string; details?: Record<string, unknown> };

let server: S3Server;
let dir: string;
let base: string;
let storage: ObjectStorage;
let latest: RestorePlan;
let expected: { rows: number; sum: number };

/** Rows of random blobs written locally (no replication), then replicated: the generation's snapshot is the whole file. */
async function writeReplica(prefix: string, transactions = 10, name = 'source.db'): Promise<{ rows: number; sum: number }> {
  const path = join(dir, name);
  const db = await openDatabase(path, { capture: false, create: true });
  db.exec('PRAGMA page_size = 8192; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
  const insert = db.prepare('INSERT INTO t(b) VALUES (?)');
  for (let txn = 0; txn < transactions; txn++) {
    db.transaction(() => {
      for (let i = 0; i < 1200; i++) insert.run(randomBytes(1000 + ((txn * 1200 + i) % 2000)));
    })();
  }
  db.close();
  const replicated = await openReplicated(path, s3Options(server, prefix, { snapshotIntervalMs: 0 }));
  const row = replicated.prepare('SELECT count(*) AS n, sum(length(b)) AS s FROM t').get() as { n: number; s: number };
  await replicated.close();
  return { rows: row.n, sum: row.s };
}

async function copyReplica(name: string): Promise<string> {
  const prefix = newPrefix(name);
  for await (const o of storage.list({ prefix: `${base}/` })) {
    const bytes = await storage.get(o.key);
    assert.ok(bytes);
    await storage.put(`${prefix}/${o.key.slice(base.length + 1)}`, bytes);
  }
  return prefix;
}

async function expectFailure(prefix: string, name: string, key: string): Promise<Coded> {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const path = join(sub, 'target.db');
  const content = randomBytes(4096);
  writeFileSync(path, content);
  let caught: Coded | undefined;
  await assert.rejects(restore({ ...source(server, prefix), path, overwrite: true }), (e: Coded) => {
    caught = e;
    assert.equal(e.code, 'ERR_CORRUPT_OBJECT', `${name}: ${e.message}`);
    assert.ok(e.message.includes(key), `${name}: the message names ${key}: ${e.message}`);
    assert.ok(Object.values(e.details ?? {}).includes(key), `${name}: details carry the key: ${JSON.stringify(e.details)}`);
    return true;
  });
  assert.ok(readFileSync(path).equals(content), 'the target is untouched');
  assert.deepEqual(readdirSync(sub), ['target.db'], 'no scratch file is left behind');
  return caught as Coded;
}

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-restore-large-'));
  base = newPrefix('large');
  storage = storageFor(server, '');
  expected = await writeReplica(base);
  latest = await plan({ ...source(server, base) });
  const snapshot = latest.objects[0];
  assert.ok(snapshot && snapshot.kind === 'snapshot');
  assert.ok(snapshot.size > 2 * PIECE_SIZE, `the snapshot spans several ranged pieces (${snapshot.size} bytes)`);
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a snapshot larger than one ranged piece', () => {
  test('restores the database: rows, checksum and integrity', async () => {
    const path = join(dir, 'restored.db');
    const result = await restore({ ...source(server, base), path });
    assert.equal(result.txid, latest.txid);
    assert.equal(result.checksum, latest.checksum.toString(16).padStart(16, '0'));
    const db = await openDatabase(path, { capture: false, create: false });
    try {
      assert.deepEqual({ ...(db.prepare('SELECT count(*) AS n, sum(length(b)) AS s FROM t').get() as object) }, { n: expected.rows, s: expected.sum });
    } finally {
      db.close();
    }
  });

  test('pieces are read into recycled buffers, and the database is still the source', async () => {
    // ~145 MB of incompressible rows: a snapshot of 18 pieces, more than the GETs in flight and the
    // pieces queued, so buffers the snapshot thread gave back are read into again.
    const prefix = newPrefix('recycle');
    const want = await writeReplica(prefix, 60, 'recycle.db');
    let offered = 0;
    let fresh = 0;
    let filled = 0;
    const zero = Buffer.alloc(PIECE_SIZE);
    const real = storageFor(server, '');
    // The real store (s3rver over HTTP), watched: the buffers restore offers, and whether they are
    // used. A buffer moved to the snapshot thread and back is a new ArrayBuffer object over the same
    // memory, so a recycled one is told by its content: a new buffer is all zeros, a recycled one
    // still holds an earlier piece (incompressible bytes).
    const watched: ObjectStorage = Object.assign(Object.create(real) as ObjectStorage, {
      get: async (key: string, o: Parameters<ObjectStorage['get']>[1] = {}) => {
        if (o.into) {
          offered++;
          if (o.into.length === PIECE_SIZE && Buffer.from(o.into.buffer, o.into.byteOffset, o.into.length).equals(zero)) fresh++;
        }
        const bytes = await real.get(key, o);
        if (o.into && bytes?.buffer === o.into.buffer) filled++;
        return bytes;
      },
    });
    const path = join(dir, 'recycled.db');
    const result = await restore({ storage: watched, prefix, path });
    assert.ok(offered >= 18 && filled === offered, `every ranged GET was offered a buffer and read into it (${filled} of ${offered})`);
    assert.ok(fresh < offered, `some GETs were read into recycled buffers (${offered - fresh} of ${offered})`);
    // GETs in flight (8), pieces queued (2), the decoder's (2), and messages under way.
    assert.ok(fresh <= 8 + 2 + 4, `new buffers: ${fresh}`);
    const db = await openDatabase(path, { capture: false, create: false });
    try {
      assert.deepEqual({ ...(db.prepare('SELECT count(*) AS n, sum(length(b)) AS s FROM t').get() as object) }, { n: want.rows, s: want.sum });
    } finally {
      db.close();
    }
    assert.equal(result.integrityCheck, 'full');
  });

  test('a bit flipped in a later piece: ERR_CORRUPT_OBJECT naming it', async () => {
    const prefix = await copyReplica('flip');
    const victim = `${prefix}/${latest.objects[0]!.key.slice(base.length + 1)}`;
    const bytes = (await storage.get(victim))!;
    bytes[PIECE_SIZE + Math.floor(PIECE_SIZE / 2)]! ^= 0x08;
    await storage.put(victim, bytes);
    const e = await expectFailure(prefix, 'flip', victim);
    assert.equal(e.details?.['formatCode'], 'ERR_CHECKSUM_MISMATCH', JSON.stringify(e.details));
  });

  test('truncated inside its last piece: ERR_CORRUPT_OBJECT naming it', async () => {
    const prefix = await copyReplica('trunc');
    const victim = `${prefix}/${latest.objects[0]!.key.slice(base.length + 1)}`;
    const bytes = (await storage.get(victim))!;
    await storage.put(victim, bytes.subarray(0, bytes.length - 4096));
    await expectFailure(prefix, 'trunc', victim);
  });
});
