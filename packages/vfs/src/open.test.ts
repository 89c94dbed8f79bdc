import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase, type CommittedTransaction } from './index.js';
import { nodeFs, type FsOps } from './fs-ops.js';
import { WalshipError } from './errors.js';

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'walship-open-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

function digest(txn: CommittedTransaction): string {
  const h = createHash('sha256').update(`${txn.txid}:${txn.commitSize}`);
  for (const p of txn.pages) h.update(`|${p.pgno}|`).update(p.data);
  return h.digest('hex');
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

test('txids start at 1, grow by one per commit, and continue after close and reopen', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const seen: CommittedTransaction[] = [];
  let db = await openDatabase(path, { onCommit: (txn) => seen.push(txn) });
  db.exec('CREATE TABLE t(x)');
  db.prepare('INSERT INTO t VALUES (?)').run(1);
  db.exec('BEGIN; INSERT INTO t VALUES (2); ROLLBACK');
  db.transaction(() => db.prepare('INSERT INTO t VALUES (?)').run(3))();
  assert.deepEqual(seen.map((s) => s.txid), [1, 2, 3, 4]);
  assert.equal(db.txid, 4);
  assert.ok(seen[0]!.pages.some((p) => p.pgno === 1), 'the first transaction of a new database writes page 1');
  assert.equal(seen.every((s) => !s.recovered), true);
  db.acknowledge(4);
  db.close(); // everything durable: checkpoints (marker txid 5) and leaves a clean file
  assert.equal(seen.at(-1)!.txid, 5);
  assert.equal(statSync(`${path}-wal`).size, 0);
  seen.length = 0;
  db = await openDatabase(path, { onCommit: (txn) => seen.push(txn), durableTxid: 5 });
  assert.equal(db.txid, 5);
  assert.equal(seen.length, 0, 'nothing to emit again when the sink has everything');
  db.prepare('INSERT INTO t VALUES (?)').run(4);
  assert.deepEqual(seen.map((s) => s.txid), [6]);
  assert.deepEqual(db.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 3, 4]);
  db.close();
});

test('checkpoint waits until the sink has acknowledged every transaction in the WAL', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const seen: CommittedTransaction[] = [];
  const db = await openDatabase(path, { onCommit: (txn) => seen.push(txn) });
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  const walBefore = statSync(`${path}-wal`).size;
  assert.deepEqual(db.checkpoint(), { checkpointed: false, reason: 'not-durable', lastTxid: 3, durableTxid: 0 });
  assert.equal(statSync(`${path}-wal`).size, walBefore, 'the WAL was not touched');
  db.acknowledge(2);
  assert.equal(db.checkpoint().reason, 'not-durable');
  db.acknowledge(3);
  assert.deepEqual(db.checkpoint(), { checkpointed: true, lastTxid: 4, durableTxid: 3 });
  db.acknowledge(db.txid); // the marker transaction of that checkpoint
  assert.equal(db.checkpoint().reason, 'empty', 'nothing new to checkpoint');
  const walAfterCheckpoint = statSync(`${path}-wal`).size;
  db.exec('INSERT INTO t VALUES (2)');
  assert.equal(statSync(`${path}-wal`).size, walAfterCheckpoint, 'RESTART keeps the WAL file and overwrites it from the start');
  assert.deepEqual(
    { salt1: seen.at(-1)!.wal!.salt1, commitIndex: seen.at(-1)!.wal!.commitIndex, firstFrame: seen.at(-1)!.wal!.firstFrame },
    { salt1: (seen.at(-2)!.wal!.salt1 + 1) >>> 0, commitIndex: 1, firstFrame: 1 },
    'the next commit starts a new WAL generation at frame 1 with salt-1 + 1',
  );
  assert.throws(() => db.acknowledge(99), { code: 'ERR_INVALID_ARGUMENT' });
  assert.throws(() => db.exec('PRAGMA wal_checkpoint(TRUNCATE)'), { code: 'SQLITE_AUTH' });
  assert.throws(() => db.exec('PRAGMA journal_mode = DELETE'), { code: 'SQLITE_AUTH' });
  assert.throws(() => db.exec('DELETE FROM _walship'), { code: 'SQLITE_AUTH' });
  assert.throws(() => db.exec(`ATTACH '${join(t.dir, 'other.db')}' AS o`), { code: 'SQLITE_AUTH' });
  db.close();
});

test('reopen emits the transactions still in the WAL again, byte-identical, from durableTxid on', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const first = new Map<number, string>();
  const db = await openDatabase(path, { onCommit: (txn) => first.set(txn.txid, digest(txn)) });
  db.exec('CREATE TABLE t(x)');
  for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
  db.close(); // not acknowledged: the WAL stays as it is
  const again: CommittedTransaction[] = [];
  const db2 = await openDatabase(path, { onCommit: (txn) => again.push(txn), durableTxid: 3 });
  assert.deepEqual(again.map((a) => a.txid), [4, 5, 6, 7]);
  for (const a of again) {
    assert.equal(a.recovered, true);
    assert.equal(digest(a), first.get(a.txid), `txid ${a.txid} has the same bytes`);
  }
  assert.deepEqual(db2.recovery, { walTransactions: 7, reemitted: 4, firstAvailableTxid: 1, gap: null, marker: null, discardedWal: null });
  db2.close();
});

test('transactions larger than the mirror keeps (12 MiB, then small ones, then 20 MiB) are emitted live byte-identical to the recovery scan', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const first = new Map<number, string>();
  const db = await openDatabase(path, { onCommit: (txn) => first.set(txn.txid, digest(txn)) });
  db.exec('CREATE TABLE t(x)');
  const big = (mib: number): void => db.transaction(() => {
    for (let i = 0; i < mib * 256; i++) db.prepare('INSERT INTO t VALUES (randomblob(4000))').run();
  })();
  big(12);
  for (let i = 0; i < 3; i++) db.prepare('INSERT INTO t VALUES (randomblob(100))').run();
  big(20);
  db.prepare('INSERT INTO t VALUES (randomblob(100))').run();
  const last = db.txid;
  db.close(); // not acknowledged: the WAL stays, and reopening scans it from disk
  const again: CommittedTransaction[] = [];
  const db2 = await openDatabase(path, { onCommit: (txn) => again.push(txn), durableTxid: 0 });
  assert.equal(again.length, last);
  for (const a of again) assert.equal(digest(a), first.get(a.txid), `txid ${a.txid} has the same bytes live and recovered`);
  assert.ok(again.some((a) => a.pages.length * a.pageSize > 16 << 20), 'a transaction past the 8 MiB shrink point');
  db2.close();
});

test('the checkpoint marker transaction is rebuilt from the database file when the sink never got it', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const first = new Map<number, string>();
  const db = await openDatabase(path, { onCommit: (txn) => first.set(txn.txid, digest(txn)) });
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  db.acknowledge(db.txid);
  assert.equal(db.checkpoint().checkpointed, true);
  const marker = db.txid;
  db.prepare('INSERT INTO t VALUES (2)').run();
  db.close();
  const again: CommittedTransaction[] = [];
  const db2 = await openDatabase(path, { onCommit: (txn) => again.push(txn), durableTxid: marker - 1 });
  assert.deepEqual(again.map((a) => a.txid), [marker, marker + 1]);
  assert.equal(again[0]!.wal, null, 'rebuilt from the database file');
  assert.equal(digest(again[0]!), first.get(marker));
  assert.equal(digest(again[1]!), first.get(marker + 1));
  db2.close();
  const db3 = await openDatabase(path, { onCommit: () => {}, durableTxid: 1 });
  assert.deepEqual(db3.recovery.gap, { fromTxid: 2, toTxid: marker - 1 }, 'checkpointed transactions the sink lacks are reported as a gap');
  db3.close();
  await assert.rejects(openDatabase(path, { onCommit: () => {}, durableTxid: marker + 5 }), { code: 'ERR_DURABLE_AHEAD' });
});

test('bad input: not a database, a directory, a corrupt WAL, bad options, a second open', async () => {
  using t = tempDir();
  const junk = join(t.dir, 'junk.db');
  writeFileSync(junk, 'this is not an sqlite database, just some text that is long enough');
  const before = sha(junk);
  await assert.rejects(openDatabase(junk), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_NOT_A_DATABASE' && e.message.includes(junk));
  assert.equal(sha(junk), before, 'the file is untouched');
  assert.equal(existsSync(`${junk}-wal`), false);
  assert.equal(existsSync(`${junk}.walship-lock`), false, 'the lock is released');

  const dir = join(t.dir, 'adir');
  mkdirSync(dir);
  await assert.rejects(openDatabase(dir), { code: 'ERR_CANTOPEN' });

  const path = join(t.dir, 'a.db');
  const db = await openDatabase(path);
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  await assert.rejects(openDatabase(path), { code: 'ERR_DATABASE_LOCKED' });
  db.close();
  writeFileSync(`${path}-wal`, Buffer.alloc(5000, 7));
  const walBefore = sha(`${path}-wal`);
  const dbBefore = sha(path);
  await assert.rejects(openDatabase(path), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_CORRUPT_WAL' && e.details.problem === 'bad-magic');
  assert.equal(sha(`${path}-wal`), walBefore);
  assert.equal(sha(path), dbBefore);

  await assert.rejects(openDatabase(join(t.dir, 'b.db'), { pageSize: 1000 }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openDatabase(join(t.dir, 'b.db'), { synchronous: 'SOMETIMES' as never }), { code: 'ERR_INVALID_OPTION' });
  await assert.rejects(openDatabase(join(t.dir, 'missing.db'), { create: false }), { code: 'ERR_NOT_FOUND' });
  assert.equal(existsSync(join(t.dir, 'b.db')), false, 'bad options create nothing');
});

test('a -wal whose header a crash tore is moved aside and the open goes on; the database keeps every commit', async () => {
  using t = tempDir();
  const path = join(t.dir, 'torn.db');
  const db = await openDatabase(path);
  db.exec('CREATE TABLE t(x)');
  for (let i = 1; i <= 20; i++) db.prepare('INSERT INTO t VALUES (?)').run(i);
  assert.equal(db.checkpoint().checkpointed, true);
  // The state a crash leaves when it hits SQLite rewriting the header to start the WAL over: the
  // frames behind the header are all in the database file already.
  const copy = join(t.dir, 'copy.db');
  writeFileSync(copy, readFileSync(path));
  const wal = readFileSync(`${path}-wal`);
  assert.ok(wal.length > 32, 'the WAL still holds the checkpointed frames');
  db.close();
  const torn = Buffer.from(wal);
  torn.writeUInt32BE(torn.readUInt32BE(12) + 1, 12); // the new checkpoint sequence landed, the rest did not
  writeFileSync(`${copy}-wal`, torn);
  const reopened = await openDatabase(copy);
  try {
    const d = reopened.recovery.discardedWal;
    assert.ok(d, 'reported in recovery');
    assert.equal(d.problem, 'bad-checksum');
    assert.equal(d.size, torn.length);
    assert.ok(readFileSync(d.movedTo).equals(torn), 'kept for inspection');
    assert.equal(reopened.prepare('SELECT count(*) FROM t').pluck().get(), 20);
    assert.equal(reopened.pragma('integrity_check', { simple: true }), 'ok');
  } finally {
    reopened.close();
  }
  // A WAL shorter than its header never held a frame.
  writeFileSync(`${copy}-wal`, torn.subarray(0, 10));
  const again = await openDatabase(copy);
  assert.equal(again.recovery.discardedWal?.problem, 'short');
  assert.equal(again.prepare('SELECT count(*) FROM t').pluck().get(), 20);
  again.close();
});

test('a path without permission fails with ERR_CANTOPEN and the reason', { skip: process.platform !== 'linux' }, () => {
  using t = tempDir();
  const locked = join(t.dir, 'locked');
  mkdirSync(locked);
  chmodSync(locked, 0o700);
  chmodSync(t.dir, 0o755);
  const entry = fileURLToPath(new URL('./index.js', import.meta.url));
  const script = `import(${JSON.stringify(entry)}).then(m => m.openDatabase(${JSON.stringify(join(locked, 'x.db'))})).then(() => console.log('opened'), e => console.log(e.code + ' ' + e.message))`;
  const asRoot = process.getuid?.() === 0;
  if (!asRoot) chmodSync(locked, 0o000);
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
  if (!asRoot) chmodSync(locked, 0o700);
  assert.match(r.stdout, /^ERR_CANTOPEN .*(EACCES|permission denied)/i, r.stdout + r.stderr);
});

/** node:fs with a switch that fails the next matching call with an errno, as a full disk or a bad sector would. */
function faultyFs(): { fs: FsOps; fail(op: 'write' | 'fsync', code: string, pathSuffix: string): void; heal(): void } {
  let fault: { op: string; code: string; pathPart: string } | null = null;
  const paths = new Map<number, string>();
  const hit = (op: string, fd: number): void => {
    if (fault && fault.op === op && (paths.get(fd) ?? '').endsWith(fault.pathPart)) {
      const e = new Error(`${fault.code}: injected`) as Error & { code: string };
      e.code = fault.code;
      throw e;
    }
  };
  const fs: FsOps = {
    ...nodeFs,
    openSync: (path, flags, mode) => {
      const fd = nodeFs.openSync(path, flags, mode);
      paths.set(fd, path);
      return fd;
    },
    writeSync: (fd, buf, off, len, pos) => {
      hit('write', fd);
      return nodeFs.writeSync(fd, buf, off, len, pos);
    },
    fsyncSync: (fd) => {
      hit('fsync', fd);
      nodeFs.fsyncSync(fd);
    },
    fdatasyncSync: (fd) => {
      hit('fsync', fd);
      nodeFs.fdatasyncSync(fd);
    },
  };
  return { fs, fail: (op, code, pathPart) => (fault = { op, code, pathPart }), heal: () => (fault = null) };
}

test('disk full and EIO surface as SQLITE_FULL / SQLITE_IOERR_*, lose nothing committed, and emit nothing for the failed commit', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const faults = faultyFs();
  const seen: number[] = [];
  const db = await openDatabase(path, { fs: faults.fs, synchronous: 'FULL', onCommit: (txn) => seen.push(txn.txid) });
  db.exec('CREATE TABLE t(x)');
  db.prepare('INSERT INTO t VALUES (?)').run(1);
  const emitted = seen.length;
  faults.fail('write', 'ENOSPC', '-wal');
  assert.throws(() => db.prepare('INSERT INTO t VALUES (?)').run(2), { code: 'SQLITE_FULL' });
  assert.equal(seen.length, emitted, 'no transaction emitted for a failed commit');
  faults.fail('fsync', 'EIO', '-wal');
  assert.throws(() => db.prepare('INSERT INTO t VALUES (?)').run(3), (e: unknown) => e instanceof WalshipError && e.code.startsWith('SQLITE_IOERR'));
  faults.heal();
  db.prepare('INSERT INTO t VALUES (?)').run(4);
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  const rows = db.prepare('SELECT x FROM t ORDER BY x').pluck().all() as number[];
  assert.ok(rows.includes(1) && rows.includes(4) && !rows.includes(2), `rows ${rows.join(',')}`);
  assert.deepEqual(seen, seen.map((_, i) => i + 1), 'txids stay contiguous');
  assert.equal(seen.at(-1), db.txid);
  db.close();
});

test('a checkpoint that fails after its marker committed leaves the marker in the WAL; reopen numbers around it', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const faults = faultyFs();
  const first = new Map<number, string>();
  const db = await openDatabase(path, { fs: faults.fs, onCommit: (txn) => first.set(txn.txid, digest(txn)) });
  db.exec('CREATE TABLE t(x)');
  for (let i = 0; i < 3; i++) db.prepare('INSERT INTO t VALUES (?)').run(i);
  db.acknowledge(db.txid);
  const markerTxid = db.txid + 1;
  faults.fail('write', 'EIO', 'a.db'); // the database file, not its WAL: the copy step of the checkpoint fails
  assert.throws(() => db.checkpoint(), (e: unknown) => e instanceof WalshipError && e.code.startsWith('SQLITE_IOERR'));
  faults.heal();
  assert.equal(db.txid, markerTxid, 'the marker transaction committed');
  db.prepare('INSERT INTO t VALUES (?)').run(10);
  db.prepare('INSERT INTO t VALUES (?)').run(11);
  db.close();
  const again: CommittedTransaction[] = [];
  const db2 = await openDatabase(path, { onCommit: (txn) => again.push(txn) });
  assert.equal(db2.txid, markerTxid + 2);
  assert.deepEqual(again.map((a) => a.txid), [...first.keys()].filter((k) => k >= again[0]!.txid));
  for (const a of again) assert.equal(digest(a), first.get(a.txid), `txid ${a.txid} keeps its number and bytes`);
  assert.ok(again.some((a) => a.txid === markerTxid), 'the marker is among the re-emitted');
  db2.close();
});

test('baseTxid numbers a restored database file from the replica and survives a reopen before any checkpoint', async () => {
  using t = tempDir();
  const source = join(t.dir, 'source.db');
  let db = await openDatabase(source, { onCommit: () => {} });
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  db.acknowledge(db.txid);
  db.close(); // checkpoint: the marker row names this file's txid (4)
  const restored = join(t.dir, 'restored.db');
  writeFileSync(restored, readFileSync(source));
  const seen: CommittedTransaction[] = [];
  db = await openDatabase(restored, { onCommit: (txn) => seen.push(txn), baseTxid: 40, durableTxid: 40 });
  assert.equal(db.recovery.firstAvailableTxid, 41);
  assert.deepEqual(seen.map((s) => s.txid), [41], 'the base is recorded by one marker transaction');
  db.prepare('INSERT INTO t VALUES (?)').run(2);
  assert.equal(db.txid, 42);
  db.close(); // not acknowledged: the WAL keeps 41 and 42
  seen.length = 0;
  db = await openDatabase(restored, { onCommit: (txn) => seen.push(txn), durableTxid: 40 });
  assert.deepEqual(seen.map((s) => s.txid), [41, 42]);
  assert.deepEqual(db.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 2]);
  db.close();
  await assert.rejects(openDatabase(restored, { baseTxid: 7 }), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_TXID_STATE');
});

test('a checkpoint note survives in the marker row and comes back when the marker is rebuilt', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  let db = await openDatabase(path, { onCommit: () => {} });
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  db.acknowledge(db.txid);
  const r = db.checkpoint({ note: 'before-marker:abc' });
  assert.equal(r.checkpointed, true);
  db.close();
  const seen: CommittedTransaction[] = [];
  db = await openDatabase(path, { onCommit: (txn) => seen.push(txn), durableTxid: r.lastTxid - 1 });
  assert.deepEqual(db.recovery.marker, { txid: r.lastTxid, note: 'before-marker:abc' });
  assert.deepEqual(seen.map((s) => s.txid), [r.lastTxid], 'the marker transaction, still in the WAL, is emitted again');
  db.close();
});

test('a write barrier refuses WAL writes with its own error, keeps reads, and lifts', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const seen: CommittedTransaction[] = [];
  const db = await openDatabase(path, { onCommit: (txn) => seen.push(txn) });
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1)');
  const insert = db.prepare('INSERT INTO t VALUES (?)');
  const before = seen.length;
  db.setWriteBarrier(new WalshipError('ERR_WAL_LIMIT', 'too much WAL waiting', { details: { limit: 1 } }));
  assert.throws(() => insert.run(2), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_WAL_LIMIT' && (e.cause as { code?: string }).code === 'SQLITE_FULL');
  assert.throws(() => db.exec('INSERT INTO t VALUES (3)'), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_WAL_LIMIT');
  assert.equal(seen.length, before, 'nothing captured for refused writes');
  assert.deepEqual(db.prepare('SELECT x FROM t').pluck().all(), [1]);
  db.setWriteBarrier(null);
  insert.run(4);
  assert.deepEqual(db.prepare('SELECT x FROM t ORDER BY x').pluck().all(), [1, 4]);
  assert.equal(seen.at(-1)!.txid, db.txid);
  db.close();
});

test('close() with an unfinished iterate() checkpoints and releases the file: the next open in this process works', async () => {
  using t = tempDir();
  const path = join(t.dir, 'iter.db');
  let db = await openDatabase(path);
  db.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)');
  const it = db.prepare('SELECT x FROM t').iterate();
  assert.deepEqual(it.next().value, { x: 1 });
  db.close();
  assert.equal(statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0, 0, 'the close checkpoint ran: the WAL is empty');
  db = await openDatabase(path);
  assert.deepEqual(db.prepare('SELECT count(*) AS n FROM t').get(), { n: 3 });
  db.close();
});

test('a checkpoint truncates a WAL larger than journal_size_limit (64 MiB) itself, so the next commit does not', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  const seen: CommittedTransaction[] = [];
  const db = await openDatabase(path, { onCommit: (txn) => seen.push({ ...txn, pages: [] }) });
  db.exec('CREATE TABLE t(x BLOB)');
  const ins = db.prepare('INSERT INTO t VALUES (randomblob(?))');
  db.transaction(() => {
    for (let i = 0; i < 70; i++) ins.run(1024 * 1024);
  })();
  const big = statSync(`${path}-wal`).size;
  assert.ok(big > 64 * 1024 * 1024, `the WAL is past the limit (${big} bytes)`);
  db.acknowledge(db.txid);
  assert.equal(db.checkpoint().checkpointed, true);
  assert.equal(statSync(`${path}-wal`).size, 0, 'the checkpoint truncated the WAL');
  db.acknowledge(db.txid);
  db.exec('INSERT INTO t VALUES (x\'01\')');
  assert.ok(statSync(`${path}-wal`).size < 1024 * 1024, 'the next commit starts a small WAL');
  assert.equal(seen.at(-1)!.txid, db.txid, 'and is captured');
  assert.equal(db.prepare('SELECT count(*) FROM t').pluck().get(), 71);
  db.acknowledge(db.txid);
  db.close();
});
