import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '@walship/vfs';
import { checkFile, type IntegrityRun } from './integrity.js';

/** integrity_check's rows for a file built here (4 KiB pages). */
const integrityCheck = async (path: string, o: { onRun: (how: IntegrityRun) => void }): Promise<string[]> => (await checkFile(path, { pageSize: 4096, ...o })).rows;

/** A file of about `mib` MiB: a table, and an index on it unless `index` is false. */
async function build(path: string, mib: number, index = true): Promise<void> {
  const db = await openDatabase(path, { capture: false, pageSize: 4096 });
  db.exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b BLOB);${index ? ' CREATE INDEX ta ON t(a)' : ''}`);
  const insert = db.prepare('INSERT INTO t(a, b) VALUES (?, randomblob(1000))');
  db.transaction(() => {
    for (let i = 0; i < mib * 1010; i++) insert.run((i * 7919) % 100003);
  })();
  db.checkpoint();
  db.close();
}

/** Declares the index descending: its entries, stored ascending, are then missing from it. */
async function breakIndex(path: string): Promise<void> {
  const db = await openDatabase(path, { capture: false });
  db.pragma('writable_schema = ON');
  db.exec("UPDATE sqlite_schema SET sql = 'CREATE INDEX ta ON t(a DESC)' WHERE name = 'ta'");
  db.close();
}

for (const [name, mib, expected] of [['a large file, in a thread', 34, 'thread'], ['a small file, inline', 2, 'inline']] as const) {
  test(`integrity_check of ${name}: ok for a sound file, SQLite's findings for a broken index`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-integrity-'));
    try {
      const path = join(dir, 'a.db');
      await build(path, mib);
      const runs: string[] = [];
      assert.deepEqual(await integrityCheck(path, { onRun: (how) => runs.push(how) }), ['ok']);
      await breakIndex(path);
      const found = await integrityCheck(path, { onRun: (how) => runs.push(how) });
      assert.deepEqual(runs, [expected, expected]);
      assert.ok(found.length > 0 && found[0] !== 'ok', JSON.stringify(found.slice(0, 3)));
      assert.match(found[0]!, /missing from index ta/);
      // The other modes on the same file: quick_check does not match index entries against rows;
      // none reads the file back (same size and checksum as the full check's read) and asks SQLite nothing.
      const full = await checkFile(path, { pageSize: 4096 });
      const other: IntegrityRun[] = [];
      const quick = await checkFile(path, { pageSize: 4096, mode: 'quick', onRun: (how) => other.push(how) });
      const none = await checkFile(path, { pageSize: 4096, mode: 'none', onRun: (how) => other.push(how) });
      assert.deepEqual(quick.rows, ['ok']);
      assert.deepEqual(none.rows, []);
      assert.deepEqual(other, [expected, 'read-back']);
      assert.equal(full.size, statSync(path).size);
      for (const c of [quick, none]) assert.deepEqual([c.size, c.checksum], [full.size, full.checksum]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('integrity_check of a large file without indexes runs inline (it reads each page about once whatever the cache)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-integrity-'));
  try {
    const path = join(dir, 'a.db');
    await build(path, 34, false);
    const runs: string[] = [];
    assert.deepEqual(await integrityCheck(path, { onRun: (how) => runs.push(how) }), ['ok']);
    assert.deepEqual(runs, ['inline']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
