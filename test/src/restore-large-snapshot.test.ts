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
async function writeReplica(prefix: string): Promise<{ rows: number; sum: number }> {
  const path = join(dir, 'source.db');
  const db = await openDatabase(path, { capture: false, create: true });
  db.exec('PRAGMA page_size = 8192; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
  const insert = db.prepare('INSERT INTO t(b) VALUES (?)');
  for (let txn = 0; txn < 10; txn++) {
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
