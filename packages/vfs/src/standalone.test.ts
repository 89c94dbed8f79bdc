import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, openDatabase } from './index.js';

// `new Database(filename)` (better-sqlite3's constructor) on files in WAL mode: every database
// walship captured or restored is one. There is no shared-memory wal-index in walship's VFS, so
// SQLite needs exclusive locking to read them; and a plain connection must never write to a
// replicated database behind capture's back, nor run beside a walship writer.

await Database.ready();

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'walship-standalone-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A database walship captured, closed cleanly (checkpointed: no -wal left). */
async function replicatedFile(path: string): Promise<void> {
  const db = await openDatabase(path);
  db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)');
  db.close();
}

test('a WAL-mode file opens with new Database(): read-only for a replicated one, read-write for a plain one', async () => {
  using t = tempDir();
  const path = join(t.dir, 'replicated.db');
  await replicatedFile(path);
  assert.equal(readFileSync(path)[18], 2, 'the file is in WAL mode');
  const before = readFileSync(path);
  const ro = new Database(path, { readonly: true, fileMustExist: true });
  try {
    assert.deepEqual(ro.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2]);
    assert.equal(ro.pragma('integrity_check', { simple: true }), 'ok');
    assert.equal(ro.readonly, true);
  } finally {
    ro.close();
  }
  assert.deepEqual(readFileSync(path), before, 'a read-only open changes nothing');
  assert.equal(existsSync(`${path}.walship-lock`), false, 'the lock is released on close');

  // Read-write would let writes reach the file outside capture (the next openDatabase would never
  // ship them): refused with what to do instead.
  assert.throws(() => new Database(path), (e: unknown) => {
    const err = e as { code?: string; details?: Record<string, unknown>; message: string };
    return err.code === 'ERR_REPLICATED_DATABASE' && err.details?.filename === path && /openDatabase|readonly/.test(err.message);
  });
  assert.deepEqual(readFileSync(path), before, 'the refused open changed nothing');
  assert.equal(existsSync(`${path}.walship-lock`), false);

  // A plain WAL database (no _walship) is an ordinary file: read-write works.
  const plain = join(t.dir, 'plain.db');
  const setup = new Database(plain);
  setup.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
  setup.close();
  const bytes = readFileSync(plain);
  bytes[18] = 2;
  bytes[19] = 2;
  writeFileSync(plain, bytes);
  const rw = new Database(plain);
  try {
    rw.prepare('INSERT INTO t VALUES (?)').run(2);
    assert.deepEqual(rw.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2]);
    assert.equal(rw.pragma('journal_mode', { simple: true }), 'wal');
  } finally {
    rw.close();
  }
  const again = new Database(plain, { readonly: true });
  assert.deepEqual(again.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2]);
  again.close();
});

test('new Database() on a WAL-mode file refuses while walship has it open, and openDatabase refuses while it is open', async () => {
  using t = tempDir();
  const path = join(t.dir, 'live.db');
  await replicatedFile(path);
  const live = await openDatabase(path);
  try {
    assert.throws(() => new Database(path, { readonly: true }), { code: 'ERR_DATABASE_LOCKED' });
  } finally {
    live.close();
  }
  const ro = new Database(path, { readonly: true });
  try {
    await assert.rejects(openDatabase(path), { code: 'ERR_DATABASE_LOCKED' });
  } finally {
    ro.close();
  }
  (await openDatabase(path)).close();
});

test('a database whose pages are all still in its -wal is never opened by new Database() or openDatabase() (SQLite would delete that -wal)', async () => {
  using t = tempDir();
  const path = join(t.dir, 'live.db');
  const live = await openDatabase(path);
  live.exec('CREATE TABLE t (x); INSERT INTO t VALUES (42)');
  const copy = join(t.dir, 'copy.db');
  writeFileSync(copy, new Uint8Array(0));
  copyFileSync(`${path}-wal`, `${copy}-wal`);
  live.close();
  const wal = readFileSync(`${copy}-wal`);
  assert.ok(wal.length > 0);
  for (const readonly of [true, false]) {
    assert.throws(() => new Database(copy, { readonly }), (e: unknown) => (e as { code?: string }).code === 'ERR_WAL_ONLY' && (e as { details: { walBytes: number } }).details.walBytes === wal.length);
  }
  for (const capture of [true, false]) {
    await assert.rejects(openDatabase(copy, { capture }), (e: unknown) => (e as { code?: string }).code === 'ERR_WAL_ONLY' && (e as { details: { walBytes: number } }).details.walBytes === wal.length);
  }
  assert.deepEqual(readFileSync(`${copy}-wal`), wal, 'the -wal is untouched');
  assert.equal(existsSync(`${copy}.walship-lock`), false);
});
