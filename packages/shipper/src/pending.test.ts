import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PendingQueue, pagesInRun, readWalRun, type PendingTxn } from './pending.js';

const PAGE = 4096;
const FRAME = 24 + PAGE;

/** Transaction `txid` as the VFS would describe it: `frames` frames from `firstFrame` on, one page each. */
function txn(txid: number, firstFrame: number, frames: number, withPages: boolean): PendingTxn {
  const pages = Array.from({ length: frames }, (_, i) => ({ pgno: i + 2, data: new Uint8Array(PAGE).fill(txid & 0xff) }));
  return {
    txid,
    timestamp: 1_700_000_000_000 + txid,
    commitSize: 100 + (txid % 7),
    pageSize: PAGE,
    pageCount: frames,
    postChecksum: (BigInt(txid) << 40n) ^ 0xfedcba9876543210n,
    walBytes: frames * FRAME,
    wal: { salt1: 0xaabbccdd, salt2: txid, firstFrame, lastFrame: firstFrame + frames - 1, offset: 32 + (firstFrame - 1) * FRAME, length: frames * FRAME },
    pages: withPages ? pages : null,
    committedAt: txid / 3,
  };
}

describe('PendingQueue', () => {
  test('gives back every field of every transaction across chunk boundaries, and forgets what was dropped', () => {
    const q = new PendingQueue(10 * PAGE);
    const all: PendingTxn[] = [];
    let frame = 1;
    for (let txid = 5; txid < 5 + 9000; txid++) {
      const t = txn(txid, frame, 1 + (txid % 3), true);
      frame += t.pageCount;
      all.push({ ...t });
      q.push(t);
    }
    assert.equal(q.length, 9000);
    assert.equal(q.pendingWalBytes, all.reduce((n, t) => n + t.walBytes, 0));
    assert.ok(q.inMemoryBytes <= 10 * PAGE, `pages kept within the budget (${q.inMemoryBytes})`);
    for (const i of [0, 1, 4095, 4096, 4097, 8191, 8192, 8999]) {
      const got = q.at(i)!;
      const want = all[i]!;
      assert.deepEqual({ ...got, pages: null }, { ...want, pages: null }, `transaction ${want.txid}`);
      if (i < 3) assert.equal(got.pages?.length, want.pageCount, 'the first ones keep their pages');
      else assert.equal(got.pages, null, 'later ones are read back from the WAL');
    }
    const seen: number[] = [];
    assert.equal(q.dropThrough(5 + 4500, (at) => seen.push(at)), 4501);
    assert.deepEqual(seen.slice(0, 2), [5 / 3, 6 / 3]);
    assert.equal(q.length, 4499);
    assert.equal(q.first()!.txid, 5 + 4501);
    assert.equal(q.firstCommittedAt, (5 + 4501) / 3);
    assert.equal(q.inMemoryBytes, 0, 'dropped pages leave the budget');
    assert.equal(q.pendingWalBytes, all.slice(4501).reduce((n, t) => n + t.walBytes, 0));
    q.dropThrough(1e9);
    assert.equal(q.length, 0);
    assert.equal(q.pendingWalBytes, 0);
    assert.equal(q.first(), undefined);
    q.push(txn(42, 1, 2, false));
    assert.equal(q.first()!.txid, 42, 'an emptied queue starts again at any txid');
  });

  test('with an overflow file, only the front chunks and the tail stay in memory; every field comes back, in order and in the middle', () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-pending-overflow-'));
    const path = join(dir, 'x.db-walship-pending');
    const q = new PendingQueue(0, { overflowPath: path });
    try {
      const all: PendingTxn[] = [];
      let frame = 1;
      const n = 4096 * 9 + 100; // ten chunks: two front, seven spilled, the tail
      for (let txid = 1; txid <= n; txid++) {
        const t = txn(txid, frame, 1 + (txid % 3), false);
        frame += t.pageCount;
        all.push(t);
        q.push(t);
      }
      assert.equal(q.spilledChunks, 7, 'chunks 3..9 wait in the file');
      assert.equal(q.overflowFailure, null);
      assert.equal(existsSync(path), false, 'the file is unlinked once open');
      const same = (i: number): void => assert.deepEqual(q.at(i), all[i], `transaction ${all[i]!.txid}`);
      // A look into the middle (a spilled chunk) leaves it where it is.
      for (const i of [0, 8191, 8192, 12_000, 20_480, 36_863, 36_864, n - 1]) same(i);
      assert.equal(q.spilledChunks, 7);
      // The front moves on: the chunks come back as it reaches them, the rest stay in the file.
      let seen = 0;
      q.dropThrough(4096 * 3 + 10, () => seen++);
      assert.equal(seen, 4096 * 3 + 10);
      assert.equal(q.spilledChunks, 4, 'a chunk came back to the front at each of the three steps');
      for (let i = 0; i < q.length; i += 997) assert.deepEqual(q.at(i), all[4096 * 3 + 10 + i]);
      // More commits while the middle is in the file: slots are reused, nothing is mixed up.
      for (let txid = n + 1; txid <= n + 4096 * 3; txid++) {
        const t = txn(txid, frame, 1, false);
        frame += 1;
        all.push(t);
        q.push(t);
      }
      assert.equal(q.spilledChunks, 7, 'each full tail went to the file');
      const base = 4096 * 3 + 10;
      for (let i = 0; i < q.length; i += 331) assert.deepEqual(q.at(i), all[base + i], `after reuse: ${all[base + i]!.txid}`);
      q.dropThrough(1e9);
      assert.equal(q.length, 0);
      assert.equal(q.spilledChunks, 0);
      q.push(txn(all.length + 1, frame, 1, false));
      assert.equal(q.first()!.txid, all.length + 1, 'an emptied queue starts again');
    } finally {
      q.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an overflow file that cannot be written keeps the chunks in memory; a chunk that cannot be read back is a typed error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-pending-overflow-'));
    try {
      const told: Error[] = [];
      const q = new PendingQueue(0, { overflowPath: join(dir, 'no-such-dir', 'x-walship-pending'), onOverflowFailure: (e) => told.push(e) });
      for (let txid = 1; txid <= 4096 * 5; txid++) q.push(txn(txid, txid, 1, false));
      assert.equal(q.spilledChunks, 0);
      assert.equal(told.length, 1, 'the failure is told once');
      assert.equal((q.overflowFailure as NodeJS.ErrnoException | null)?.code, 'ENOENT');
      assert.equal(q.at(4096 * 4)!.txid, 4096 * 4 + 1);
      q.close();
      const lost = new PendingQueue(0, { overflowPath: join(dir, 'y-walship-pending') });
      for (let txid = 1; txid <= 4096 * 5; txid++) lost.push(txn(txid, txid, 1, false));
      assert.equal(lost.spilledChunks, 2);
      lost.close(); // the file is gone with its descriptor: what was in it cannot come back
      assert.throws(() => lost.at(4096 * 3), (e: Error & { code?: string }) => e.code === 'ERR_PENDING_OVERFLOW_LOST' && /waiting for the store/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses a gap in txids (the txid is the position) and a WAL location it could not rebuild', () => {
    const q = new PendingQueue(0);
    q.push(txn(1, 1, 1, false));
    assert.throws(() => q.push(txn(3, 2, 1, false)), (e: Error & { code?: string }) => e.code === 'ERR_INTERNAL');
    const odd = txn(2, 2, 1, false);
    odd.wal = { ...odd.wal!, offset: odd.wal!.offset + 8 };
    assert.throws(() => q.push(odd), (e: Error & { code?: string }) => e.code === 'ERR_INTERNAL');
  });

  test('a transaction without WAL frames keeps its pages whatever the budget', () => {
    const q = new PendingQueue(0);
    const t = { ...txn(7, 1, 2, true), wal: null, walBytes: 2 * PAGE };
    q.push(t);
    const got = q.first()!;
    assert.equal(got.wal, null);
    assert.equal(got.walBytes, 2 * PAGE);
    assert.equal(got.pages?.length, 2);
  });

  test('readWalRun reads the frames of following transactions of one WAL generation in one read; pagesInRun gives each its last images', () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-pending-'));
    try {
      // txids 1..6, two frames each; txid 4 starts a new generation (other salts) at frame 1 of another file position.
      const txns = [1, 2, 3, 4, 5, 6].map((id) => txn(id, 1 + (id - 1) * 2, 2, false));
      for (const t of txns) t.wal = { ...t.wal!, salt2: t.txid < 4 ? 7 : 999 };
      const wal = new Uint8Array(32 + 12 * FRAME);
      const dv = new DataView(wal.buffer);
      for (const t of txns) {
        for (let f = 0; f < 2; f++) {
          const at = t.wal!.offset + f * FRAME;
          dv.setUint32(at, f + 2);
          dv.setUint32(at + 8, t.wal!.salt1);
          dv.setUint32(at + 12, t.wal!.salt2);
          wal.fill((t.txid * 16 + f) & 0xff, at + 24, at + FRAME);
        }
      }
      const path = join(dir, 'x.db-wal');
      writeFileSync(path, wal);
      const fd = openSync(path, 'r');
      try {
        const run = readWalRun(path, fd, txns, 0, 1 << 20);
        assert.equal(run.count, 3, 'the run stops where the salts change');
        for (const t of txns.slice(0, 3)) {
          const pages = pagesInRun(path, run, t);
          assert.deepEqual(pages.map((p) => p.pgno), [2, 3]);
          assert.ok(pages.every((p, f) => p.data.length === PAGE && p.data.every((b) => b === ((t.txid * 16 + f) & 0xff))), `txid ${t.txid} reads its own bytes`);
        }
        assert.equal(readWalRun(path, fd, txns, 0, 2 * FRAME).count, 1, 'maxBytes bounds a run, the first transaction always fits');
        assert.equal(readWalRun(path, fd, [txns[4]!, { ...txns[5]!, pages: [] }], 0, 1 << 20).count, 1, 'a transaction with pages in memory ends a run');
        const wrong = { ...txns[5]!, wal: { ...txns[5]!.wal!, salt1: 1 } };
        assert.throws(() => pagesInRun(path, readWalRun(path, fd, [wrong], 0, 0), wrong), (e: Error & { code?: string }) => e.code === 'ERR_SPOOL_LOST');
      } finally {
        closeSync(fd);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
