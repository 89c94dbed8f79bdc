import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type CommittedTransaction } from './index.js';
import { nodeFs, type FsOps } from './fs-ops.js';
import { frameOffset } from './wal/format.js';
import { scanWalFile } from './wal/scanner.js';

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'walship-nodevfs-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** node:fs, recording the length and position of every write to a `-wal` file. */
function recordingFs(): { fs: FsOps; walWrites: Array<{ length: number; position: number }> } {
  const walFds = new Set<number>();
  const walWrites: Array<{ length: number; position: number }> = [];
  const fs: FsOps = {
    ...nodeFs,
    openSync: (path, flags, mode) => {
      const fd = nodeFs.openSync(path, flags, mode);
      if (path.endsWith('-wal')) walFds.add(fd);
      return fd;
    },
    closeSync: (fd) => {
      walFds.delete(fd);
      nodeFs.closeSync(fd);
    },
    writeSync: (fd, buffer, offset, length, position) => {
      if (walFds.has(fd)) walWrites.push({ length, position });
      return nodeFs.writeSync(fd, buffer, offset, length, position);
    },
  };
  return { fs, walWrites };
}

const PAGE = 4096;

test('each WAL frame reaches the file as one write: header and page together', async () => {
  using t = tempDir();
  const rec = recordingFs();
  const db = await openDatabase(join(t.dir, 'a.db'), { fs: rec.fs, pageSize: PAGE, onCommit: () => {} });
  db.exec('CREATE TABLE t(x)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  rec.walWrites.length = 0;
  for (let i = 0; i < 50; i++) insert.run(`row ${i}`);
  const frames = rec.walWrites.filter((w) => w.position >= 32);
  assert.ok(frames.length >= 50, `${frames.length} frame writes for 50 commits`);
  for (const w of frames) {
    assert.equal(w.length, 24 + PAGE, `a write of ${w.length} bytes at ${w.position}: frames go out whole`);
    assert.equal((w.position - 32) % (24 + PAGE), 0, `write at ${w.position} starts a frame`);
  }
  db.close();
});

test('a commit whose frame headers SQLite rewrote (pages spilled, then changed again) is whole on disk when COMMIT returns', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const rec = recordingFs();
  let last: CommittedTransaction | null = null;
  const db = await openDatabase(path, { fs: rec.fs, pageSize: PAGE, onCommit: (txn) => (last = txn) });
  db.pragma('cache_size = 8');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
  const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
  const update = db.prepare('UPDATE t SET v = ? WHERE id = ?');
  for (let round = 0; round < 3; round++) {
    rec.walWrites.length = 0;
    db.exec('BEGIN');
    // More pages than the cache holds: SQLite spills frames mid-transaction, then changes those
    // pages again and rewrites the spilled frames in place, so the commit rewrites the checksums
    // in the frame headers from the first rewritten frame to the commit frame.
    for (let i = 0; i < 40; i++) insert.run(new Uint8Array(PAGE / 3).fill(i + round));
    for (let i = 1; i <= 40 * (round + 1); i += 3) update.run(new Uint8Array(PAGE / 3).fill(round + 7), i);
    db.exec('COMMIT');
    const lone = rec.walWrites.filter((w) => w.length === 24);
    assert.ok(lone.length > 0, `round ${round}: the commit rewrote frame headers (the case under test happened)`);
    // What a kill -9 right now would leave: the file must hold the commit SQLite just reported.
    const file = new Uint8Array(readFileSync(`${path}-wal`));
    const scan = scanWalFile((offset, length) => file.subarray(offset, offset + length));
    const onDisk = scan.result!.commits.at(-1);
    const emitted = last as CommittedTransaction | null;
    assert.ok(emitted?.wal && onDisk, `round ${round}: a commit on disk and one emitted`);
    assert.equal(scan.header!.salt1, emitted.wal.salt1);
    assert.equal(onDisk.lastFrame, emitted.wal.lastFrame, `round ${round}: the last commit on disk is the one COMMIT returned (frame ${emitted.wal.lastFrame})`);
    assert.equal(frameOffset(onDisk.lastFrame + 1, PAGE), emitted.wal.offset + emitted.wal.length);
  }
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  db.close();
});
