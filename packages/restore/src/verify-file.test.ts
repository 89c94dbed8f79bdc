import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFormat } from '@walship/format';
import { openDatabase } from '@walship/vfs';
import { hashFile } from './apply.js';
import { INTEGRITY_CHECK_MODES } from './check-modes.js';
import { verifyFile } from './restore.js';

const PAGE = 4096;

/** A small database with an index; returns the plan-like facts a restore would check it against. */
async function build(path: string): Promise<{ pageSize: number; commitSize: number; checksum: bigint; txid: number }> {
  const db = await openDatabase(path, { capture: false, pageSize: PAGE });
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b BLOB); CREATE INDEX ta ON t(a)');
  const insert = db.prepare('INSERT INTO t(a, b) VALUES (?, randomblob(300))');
  db.transaction(() => {
    for (let i = 0; i < 2000; i++) insert.run((i * 7919) % 1009);
  })();
  db.checkpoint();
  db.close();
  await loadFormat();
  const size = statSync(path).size;
  return { pageSize: PAGE, commitSize: size / PAGE, checksum: hashFile(path, PAGE).checksum, txid: 7 };
}

function flipByte(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Uint8Array.of(0x5a), 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

test('verifyFile: every mode passes the file that was written and refuses one the disk changed or shortened (ERR_VERIFY_FAILED, before any SQLite finding)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-verifyfile-'));
  try {
    for (const mode of INTEGRITY_CHECK_MODES) {
      const path = join(dir, `${mode}.db`);
      const plan = await build(path);
      await verifyFile(path, plan, mode);
      // One byte of a table page (not page 1) changed after the write: what a disk that lost a write returns.
      flipByte(path, 5 * PAGE + 100);
      await assert.rejects(verifyFile(path, plan, mode), (e: { code?: string; message: string; details?: Record<string, unknown> }) => {
        assert.equal(e.code, 'ERR_VERIFY_FAILED');
        assert.match(e.message, /the disk did not keep what was written/);
        assert.equal(e.details?.['expected'], `0x${plan.checksum.toString(16).padStart(16, '0')}`);
        return true;
      });
      truncateSync(path, (plan.commitSize - 1) * PAGE);
      await assert.rejects(verifyFile(path, plan, mode), /did not keep what was written/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('verifyFile: a broken index with the replica\'s own checksum fails `full` and passes `quick` and `none`, which do not match index entries to rows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-verifyfile-'));
  try {
    const path = join(dir, 'a.db');
    await build(path);
    const db = await openDatabase(path, { capture: false });
    db.pragma('writable_schema = ON');
    db.exec("UPDATE sqlite_schema SET sql = 'CREATE INDEX ta ON t(a DESC)' WHERE name = 'ta'");
    db.close();
    const size = statSync(path).size;
    const plan = { pageSize: PAGE, commitSize: size / PAGE, checksum: hashFile(path, PAGE).checksum, txid: 9 };
    await assert.rejects(verifyFile(path, plan, 'full'), (e: { code?: string; message: string; details?: Record<string, unknown> }) => {
      assert.equal(e.code, 'ERR_VERIFY_FAILED');
      assert.match(e.message, /PRAGMA integrity_check at txid 9 reports: .*missing from index ta/);
      assert.equal(e.details?.['integrityCheck'], 'full');
      return true;
    });
    await verifyFile(path, plan, 'quick');
    await verifyFile(path, plan, 'none');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
