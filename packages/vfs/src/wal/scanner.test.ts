import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  WAL_FORMAT_VERSION,
  encodeWal,
  encodeWalHeader,
  frameOffset,
  frameSize,
  parseFrameHeader,
  parseWalHeader,
  type WalFrameInit,
  type WalHeader,
  type WalHeaderInit,
} from './format.js';
import { scanWal, scanWalFile, startScan, type WalCommit, type WalReader, type WalScanResult, type WalScanState } from './scanner.js';

// ---------------------------------------------------------------------------------------------
// helpers

function fixture(path: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../../testdata/wal/${path}`, import.meta.url)));
}

interface Recorded {
  read: WalReader;
  calls: Array<[number, number]>;
}

/** A reader over an in-memory file that returns views and records its calls. */
function readerOf(file: Uint8Array): Recorded {
  const calls: Array<[number, number]> = [];
  return {
    calls,
    read: (offset, length) => {
      calls.push([offset, length]);
      return file.subarray(offset, offset + length);
    },
  };
}

/** A reader that copies into one scratch buffer reused for every call (the scanner must not keep views). */
function scratchReaderOf(file: Uint8Array): WalReader {
  let scratch = new Uint8Array(0);
  return (offset, length) => {
    const n = Math.max(0, Math.min(length, file.length - offset));
    if (scratch.length < n) scratch = new Uint8Array(n);
    scratch.fill(0xee);
    scratch.set(file.subarray(offset, offset + n));
    return scratch.subarray(0, n);
  };
}

function scanBytes(file: Uint8Array, options: { sectorSize?: number } = {}): { header: WalHeader; result: WalScanResult } {
  const r = scanWalFile(readerOf(file).read, options);
  assert.ok(r.header !== null && r.result !== undefined, `header problem: ${r.problem}`);
  return { header: r.header, result: r.result };
}

/** The structural part of a commit (what does not depend on the random salts). */
function shape(c: WalCommit): object {
  return {
    index: c.index,
    firstFrame: c.firstFrame,
    commitFrame: c.commitFrame,
    lastFrame: c.lastFrame,
    commitSize: c.commitSize,
    paddingFrames: c.paddingFrames,
    pages: [...c.pages].sort((a, b) => a[0] - b[0]),
  };
}

function commit(index: number, firstFrame: number, commitFrame: number, commitSize: number, pages: Array<[number, number]>, paddingFrames = 0): object {
  return { index, firstFrame, commitFrame, lastFrame: commitFrame + paddingFrames, commitSize, paddingFrames, pages };
}

/** The checksum stored in frame `n`'s header. */
function storedChecksum(file: Uint8Array, n: number, pageSize: number): [number, number] {
  const fh = parseFrameHeader(file, frameOffset(n, pageSize));
  return [fh.checksum1, fh.checksum2];
}

function page(pageSize: number, seed: number): Uint8Array {
  const p = new Uint8Array(pageSize);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < pageSize; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    p[i] = x;
  }
  return p;
}

const hdr = (pageSize: number, extra: Partial<WalHeaderInit> = {}): WalHeaderInit => ({
  bigEndianChecksum: false,
  version: WAL_FORMAT_VERSION,
  pageSize,
  checkpointSeq: 0,
  salt1: 0x11111111,
  salt2: 0x22222222,
  ...extra,
});

/** Frames for "transactions": each inner array is one transaction of pgnos, the last one commits with commitSize. */
function txFrames(pageSize: number, txs: Array<{ pgnos: number[]; commitSize: number }>, seed = 1): WalFrameInit[] {
  const out: WalFrameInit[] = [];
  let s = seed;
  for (const tx of txs) {
    tx.pgnos.forEach((pgno, i) => out.push({ pgno, commitSize: i === tx.pgnos.length - 1 ? tx.commitSize : 0, page: page(pageSize, s++) }));
  }
  return out;
}

const PAGE = 512;
const FRAME = frameSize(PAGE);

// ---------------------------------------------------------------------------------------------
// Expectations for the golden fixtures. The native column comes from testdata/wal/README.md
// ("What native SQLite recovers"): PRAGMA page_count after native sqlite3 opened db-base + wal,
// and the row count of table t. The scanner's last commit must end at that page count.

const OK_COMMITS = [
  commit(1, 1, 2, 2, [[1, 1], [2, 2]]), // CREATE TABLE
  commit(2, 3, 3, 2, [[2, 3]]), // INSERT 2 rows
  // (BEGIN; INSERT; ROLLBACK wrote nothing)
  commit(3, 4, 11, 8, [[1, 4], [2, 5], [3, 6], [4, 7], [5, 8], [6, 9], [7, 10], [8, 11]]), // 6 rows x 300 bytes
  commit(4, 12, 12, 8, [[3, 12]]), // UPDATE id=2
];
const NATIVE = {
  ok: { pageCount: 8, rows: 8 },
  saltMismatch: { pageCount: 2, rows: 2, frame: 7 },
  checksumMismatch: { pageCount: 8, rows: 8, frame: 12 }, // UPDATE lost: v of id 2 is 'b' again
  tornLastFrame: { pageCount: 8, rows: 8, frame: 12 },
  padding: { pageCount: 2, rows: 2 },
  paddingTorn: { pageCount: 2, rows: 0 },
  rollbackOpen: { pageCount: 2, rows: 2 },
  rollbackStale: { pageCount: 2, rows: 3 },
  restartedBefore: { pageCount: 2, rows: 3 },
  restarted: { pageCount: 2, rows: 4 },
} as const;
const UNIX_SECTOR_SIZE = 4096;

// ---------------------------------------------------------------------------------------------
// golden fixtures

test('ok: 4 commits with the expected frames, sizes and page sets; stops cleanly at the end', () => {
  const file = fixture('ok/wal');
  const { header, result } = scanBytes(file);
  assert.equal(header.pageSize, PAGE);
  assert.deepEqual(result.commits.map(shape), OK_COMMITS);
  assert.equal(result.stop, 'end');
  assert.equal(result.stopFrame, 13);
  assert.equal(file.length, frameOffset(13, PAGE));
  assert.equal(result.state.nextFrame, 13);
  assert.equal(result.state.commits, 4);
  assert.equal(result.commits.at(-1)!.commitSize, NATIVE.ok.pageCount);
  for (const c of result.commits) assert.deepEqual(c.checksum, storedChecksum(file, c.lastFrame, PAGE));
  assert.deepEqual(result.state.checksum, storedChecksum(file, 12, PAGE));
  // same answer with a sector size: native unix reports POWERSAFE_OVERWRITE, so nothing is padding
  assert.deepEqual(scanBytes(file, { sectorSize: UNIX_SECTOR_SIZE }).result.commits.map(shape), OK_COMMITS);
});

test('ok: the last image of every page equals the database after a checkpoint', () => {
  const file = fixture('ok/wal');
  const db = fixture('ok/db-checkpointed');
  const { result } = scanBytes(file);
  const last = new Map<number, number>();
  for (const c of result.commits) for (const [pgno, frame] of c.pages) last.set(pgno, frame);
  const size = result.commits.at(-1)!.commitSize;
  assert.equal(db.length, size * PAGE);
  assert.equal(last.size, size);
  for (const [pgno, frame] of last) {
    const off = frameOffset(frame, PAGE) + 24;
    assert.deepEqual(file.subarray(off, off + PAGE), db.subarray((pgno - 1) * PAGE, pgno * PAGE), `page ${pgno}`);
  }
});

test('salt-mismatch: the scan stops at the altered frame and keeps the commits before it', () => {
  const { result } = scanBytes(fixture('salt-mismatch/wal'));
  assert.equal(result.stop, 'salt-mismatch');
  assert.equal(result.stopFrame, NATIVE.saltMismatch.frame);
  assert.deepEqual(result.commits.map(shape), OK_COMMITS.slice(0, 2));
  assert.equal(result.commits.at(-1)!.commitSize, NATIVE.saltMismatch.pageCount);
  assert.equal(result.state.nextFrame, 4);
});

test('checksum-mismatch: the transaction with the flipped byte is dropped', () => {
  const { result } = scanBytes(fixture('checksum-mismatch/wal'));
  assert.equal(result.stop, 'checksum-mismatch');
  assert.equal(result.stopFrame, NATIVE.checksumMismatch.frame);
  assert.deepEqual(result.commits.map(shape), OK_COMMITS.slice(0, 3));
  assert.equal(result.commits.at(-1)!.commitSize, NATIVE.checksumMismatch.pageCount);
});

test('torn-last-frame: a partial last frame drops the last transaction', () => {
  const file = fixture('torn-last-frame/wal');
  assert.equal(file.length, frameOffset(12, PAGE) + 124);
  const { result } = scanBytes(file);
  assert.equal(result.stop, 'torn-frame');
  assert.equal(result.stopFrame, NATIVE.tornLastFrame.frame);
  assert.deepEqual(result.commits.map(shape), OK_COMMITS.slice(0, 3));
  assert.equal(result.state.nextFrame, 12);
  // torn inside the frame header too
  const { result: r2 } = scanBytes(file.subarray(0, frameOffset(12, PAGE) + 10));
  assert.equal(r2.stop, 'torn-frame');
  assert.equal(r2.stopFrame, 12);
});

test('padding (native, psow=0): copies of each commit frame up to the sector boundary are padding', () => {
  const file = fixture('padding/wal');
  const padded = scanBytes(file, { sectorSize: UNIX_SECTOR_SIZE }).result;
  assert.deepEqual(padded.commits.map(shape), [
    commit(1, 1, 2, 2, [[1, 1], [2, 2]], 6), // frames 3..8 start before 4096
    commit(2, 9, 10, 2, [[1, 9], [2, 10]], 6), // 8192
    commit(3, 17, 18, 2, [[1, 17], [2, 18]], 5), // 12288
  ]);
  assert.equal(padded.stop, 'end');
  assert.equal(padded.state.nextFrame, 24);
  assert.equal(padded.commits.at(-1)!.commitSize, NATIVE.padding.pageCount);
  for (const c of padded.commits) {
    assert.ok(frameOffset(c.lastFrame + 1, PAGE) >= Math.ceil(frameOffset(c.commitFrame + 1, PAGE) / 4096) * 4096);
    assert.deepEqual(c.checksum, storedChecksum(file, c.lastFrame, PAGE));
  }
  // without a sector size every copy is a commit of its own
  const plain = scanBytes(file).result;
  assert.equal(plain.commits.length, 20);
  assert.equal(plain.stop, 'end');
  assert.deepEqual(plain.commits[1] && shape(plain.commits[1]), commit(2, 3, 3, 2, [[2, 3]]));
  assert.deepEqual(plain.state.checksum, padded.state.checksum);
});

test('padding-torn: a scan at the mid-padding sync point, then a resumed scan, finds every commit once', () => {
  const torn = scanBytes(fixture('padding-torn/wal'), { sectorSize: UNIX_SECTOR_SIZE }).result;
  assert.deepEqual(torn.commits.map(shape), [commit(1, 1, 2, 2, [[1, 1], [2, 2]], 5)]);
  assert.equal(torn.stop, 'torn-frame');
  assert.equal(torn.stopFrame, 8);
  assert.equal(torn.state.nextFrame, 8);
  assert.equal(NATIVE.paddingTorn.pageCount, torn.commits[0]!.commitSize);

  // the rest of frame 8 arrives: it is commit 1's last padding frame, not a new commit
  const full = fixture('padding/wal');
  const resumed = scanWal(readerOf(full).read, torn.state, { sectorSize: UNIX_SECTOR_SIZE });
  assert.deepEqual(resumed.commits.map(shape), [
    commit(2, 9, 10, 2, [[1, 9], [2, 10]], 6),
    commit(3, 17, 18, 2, [[1, 17], [2, 18]], 5),
  ]);
  assert.equal(resumed.stop, 'end');
  assert.equal(resumed.state.nextFrame, 24);

  // when only the padding tail arrives, it is consumed without producing a commit
  const onlyTail = scanWal(readerOf(full.subarray(0, frameOffset(9, PAGE))).read, torn.state, { sectorSize: UNIX_SECTOR_SIZE });
  assert.deepEqual(onlyTail.commits, []);
  assert.equal(onlyTail.stop, 'end');
  assert.equal(onlyTail.state.nextFrame, 9);
  assert.equal(onlyTail.state.commits, 1);
  assert.deepEqual(onlyTail.state.checksum, storedChecksum(full, 8, PAGE));
});

test('stableViews: padding is recognised with the reference kept as a view, in one scan and resumed', () => {
  const full = fixture('padding/wal');
  const stable = { sectorSize: UNIX_SECTOR_SIZE, stableViews: true };
  assert.deepEqual(scanWalFile(readerOf(full).read, stable).result!.commits.map(shape), scanBytes(full, { sectorSize: UNIX_SECTOR_SIZE }).result.commits.map(shape));
  const torn = scanBytes(fixture('padding-torn/wal'), { sectorSize: UNIX_SECTOR_SIZE }).result;
  assert.deepEqual(scanWal(readerOf(full).read, torn.state, stable).commits.map(shape), [commit(2, 9, 10, 2, [[1, 9], [2, 10]], 6), commit(3, 17, 18, 2, [[1, 17], [2, 18]], 5)]);
});

test('rollback-open: frames a rolled-back transaction spilled are an open transaction, not commits', () => {
  const file = fixture('rollback-open/wal');
  const { result } = scanBytes(file);
  assert.deepEqual(result.commits.map(shape), OK_COMMITS.slice(0, 2));
  assert.equal(result.stop, 'open-transaction');
  assert.equal(result.stopFrame, (file.length - 32) / FRAME + 1);
  assert.ok(result.stopFrame > 10, 'the rollback spilled frames');
  assert.equal(result.state.nextFrame, 4);
  assert.equal(result.commits.at(-1)!.commitSize, NATIVE.rollbackOpen.pageCount);
});

test('rollback-stale: a commit over the rolled-back frames is found; the stale rest fails its checksum', () => {
  const { result } = scanBytes(fixture('rollback-stale/wal'));
  assert.deepEqual(result.commits.map(shape), [...OK_COMMITS.slice(0, 2), commit(3, 4, 4, 2, [[2, 4]])]);
  assert.equal(result.stop, 'checksum-mismatch');
  assert.equal(result.stopFrame, 5);
  assert.equal(result.commits.at(-1)!.commitSize, NATIVE.rollbackStale.pageCount);
});

test('restarted (native): new salts after a checkpoint; old frames after the new ones are ignored', () => {
  const before = scanBytes(fixture('restarted/before.wal'));
  assert.deepEqual(before.result.commits.map(shape), [...OK_COMMITS.slice(0, 2), commit(3, 4, 4, 2, [[2, 4]])]);
  assert.equal(before.result.stop, 'end');
  assert.equal(before.result.commits.at(-1)!.commitSize, NATIVE.restartedBefore.pageCount);

  const after = scanBytes(fixture('restarted/wal'));
  assert.equal(after.header.checkpointSeq, before.header.checkpointSeq + 1);
  assert.equal(after.header.salt1, (before.header.salt1 + 1) >>> 0);
  assert.deepEqual(after.result.commits.map(shape), [commit(1, 1, 1, 2, [[2, 1]])]);
  assert.equal(after.result.stop, 'salt-mismatch');
  assert.equal(after.result.stopFrame, 2);
  assert.equal(after.result.commits.at(-1)!.commitSize, NATIVE.restarted.pageCount);
  // frames 2.. are the old generation's, byte for byte
  const a = fixture('restarted/wal');
  const b = fixture('restarted/before.wal');
  assert.deepEqual(a.subarray(frameOffset(2, PAGE)), b.subarray(frameOffset(2, PAGE)));
});

// ---------------------------------------------------------------------------------------------
// header problems

test('scanWalFile reports header problems and returns no result', () => {
  const good = encodeWalHeader(hdr(PAGE));
  const cases: Array<[Uint8Array, string]> = [
    [new Uint8Array(0), 'short'],
    [good.subarray(0, 31), 'short'],
    [(() => { const b = good.slice(); b[3] = 0x84; return b; })(), 'bad-magic'],
    [encodeWalHeader(hdr(1000)), 'bad-page-size'],
    [encodeWalHeader(hdr(131072)), 'bad-page-size'],
    [(() => { const b = good.slice(); b[17]! ^= 1; return b; })(), 'bad-checksum'],
    [encodeWalHeader(hdr(PAGE, { version: 3007001 })), 'bad-version'],
  ];
  for (const [bytes, problem] of cases) {
    const withFrames = new Uint8Array(bytes.length + (bytes.length === 32 ? FRAME : 0));
    withFrames.set(bytes);
    assert.deepEqual(scanWalFile(readerOf(withFrames).read), { header: null, problem }, problem);
  }
  // a header alone is a valid, empty WAL
  const empty = scanWalFile(readerOf(good).read);
  assert.equal(empty.result?.stop, 'end');
  assert.equal(empty.result?.stopFrame, 1);
  assert.deepEqual(empty.result?.commits, []);
});

// ---------------------------------------------------------------------------------------------
// synthetic WALs

test('big-endian checksum WALs scan the same as little-endian ones; mislabelled frames fail', () => {
  const frames = txFrames(PAGE, [{ pgnos: [1, 2], commitSize: 2 }, { pgnos: [2], commitSize: 3 }]);
  for (const bigEndianChecksum of [true, false]) {
    const wal = encodeWal(hdr(PAGE, { bigEndianChecksum }), frames);
    const { header, result } = scanBytes(wal);
    assert.equal(header.bigEndianChecksum, bigEndianChecksum);
    assert.deepEqual(result.commits.map(shape), [commit(1, 1, 2, 2, [[1, 1], [2, 2]]), commit(2, 3, 3, 3, [[2, 3]])]);
    assert.equal(result.stop, 'end');
  }
  // frames chained big-endian behind a (valid) little-endian header
  const be = encodeWal(hdr(PAGE, { bigEndianChecksum: true }), frames);
  const mixed = be.slice();
  mixed.set(encodeWalHeader(hdr(PAGE)), 0);
  const beHdr = parseWalHeader(be);
  const leHdr = parseWalHeader(mixed);
  assert.ok('header' in beHdr && 'header' in leHdr);
  const { result } = scanBytes(mixed);
  assert.equal(result.stop, 'checksum-mismatch');
  assert.equal(result.stopFrame, 1);
  assert.deepEqual(result.commits, []);
});

test('page sizes 512, 4096 and 65536, with reads bounded to 4 MiB and frames spanning several reads', () => {
  for (const pageSize of [512, 4096, 65536]) {
    const txs = [];
    for (let i = 0; i < 35; i++) txs.push({ pgnos: [1, 2 + i], commitSize: 2 + i });
    const wal = encodeWal(hdr(pageSize), txFrames(pageSize, txs));
    const rec = readerOf(wal);
    const r = scanWalFile(rec.read);
    assert.ok(r.result);
    assert.equal(r.result.commits.length, 35, `page ${pageSize}`);
    assert.equal(r.result.stop, 'end');
    r.result.commits.forEach((c, i) => {
      assert.deepEqual(shape(c), commit(i + 1, 2 * i + 1, 2 * i + 2, 2 + i, [[1, 2 * i + 1], [2 + i, 2 * i + 2]]));
    });
    const frameReads = rec.calls.slice(1); // the first call is the header
    assert.ok(frameReads.every(([, len]) => len <= 4 * 1024 * 1024 && len % frameSize(pageSize) === 0));
    assert.ok(frameReads.length <= 8, `page ${pageSize}: ${frameReads.length} reads for 70 frames`);
    if (pageSize === 65536) assert.ok(frameReads.length >= 2);
    for (let i = 1; i < frameReads.length; i++) {
      assert.equal(frameReads[i]![0], frameReads[i - 1]![0] + frameReads[i - 1]![1], 'reads are contiguous');
    }
  }
});

test('a small scan after a commit is one read call', () => {
  const wal = encodeWal(hdr(4096), txFrames(4096, [{ pgnos: [1, 2, 3], commitSize: 3 }, { pgnos: [3, 1], commitSize: 3 }]));
  const first = scanBytes(wal.subarray(0, frameOffset(4, 4096))).result;
  assert.equal(first.commits.length, 1);
  const rec = readerOf(wal);
  const second = scanWal(rec.read, first.state);
  assert.equal(rec.calls.length, 1);
  assert.equal(rec.calls[0]![0], frameOffset(4, 4096));
  assert.deepEqual(second.commits.map(shape), [commit(2, 4, 5, 3, [[1, 5], [3, 4]])]);
});

test('open transaction after the last commit: not consumed, picked up once it commits', () => {
  const frames = txFrames(PAGE, [{ pgnos: [1, 2], commitSize: 2 }, { pgnos: [3, 4, 2], commitSize: 4 }]);
  const wal = encodeWal(hdr(PAGE), frames);
  const partial = wal.subarray(0, frameOffset(5, PAGE)); // frames 3 and 4 of the second transaction
  const r1 = scanBytes(partial).result;
  assert.equal(r1.stop, 'open-transaction');
  assert.equal(r1.stopFrame, 5);
  assert.equal(r1.commits.length, 1);
  assert.equal(r1.state.nextFrame, 3);
  const r2 = scanWal(readerOf(wal).read, r1.state);
  assert.deepEqual(r2.commits.map(shape), [commit(2, 3, 5, 4, [[2, 5], [3, 3], [4, 4]])]);
  assert.equal(r2.stop, 'end');
});

test('pages beyond the commit size are left out of the page set; the last image of a page wins', () => {
  const p = (s: number) => page(PAGE, s);
  const wal = encodeWal(hdr(PAGE), [
    { pgno: 5, commitSize: 0, page: p(1) },
    { pgno: 3, commitSize: 0, page: p(2) },
    { pgno: 3, commitSize: 0, page: p(3) },
    { pgno: 7, commitSize: 0, page: p(4) },
    { pgno: 2, commitSize: 4, page: p(5) },
  ]);
  const { result } = scanBytes(wal);
  assert.deepEqual(result.commits.map(shape), [commit(1, 1, 5, 4, [[2, 5], [3, 3]])]);
});

test('a frame with page number 0 is invalid', () => {
  const wal = encodeWal(hdr(PAGE), txFrames(PAGE, [{ pgnos: [1], commitSize: 1 }, { pgnos: [0], commitSize: 1 }]));
  const { result } = scanBytes(wal);
  assert.equal(result.commits.length, 1);
  assert.equal(result.stop, 'checksum-mismatch');
  assert.equal(result.stopFrame, 2);
});

test('salt-2 mismatch and frames chained with the wrong checksum seed', () => {
  const frames = txFrames(PAGE, [{ pgnos: [1], commitSize: 1 }, { pgnos: [2], commitSize: 2 }]);
  const wal = encodeWal(hdr(PAGE), [frames[0]!, { ...frames[1]!, salt2: 0x22222223 }]);
  const r = scanBytes(wal).result;
  assert.equal(r.stop, 'salt-mismatch');
  assert.equal(r.stopFrame, 2);
  // a valid frame 2 copied from another WAL (same salts, different history) fails its checksum
  const other = encodeWal(hdr(PAGE), txFrames(PAGE, [{ pgnos: [1], commitSize: 1 }, { pgnos: [2], commitSize: 2 }], 50));
  const spliced = encodeWal(hdr(PAGE), frames);
  spliced.set(other.subarray(frameOffset(2, PAGE)), frameOffset(2, PAGE));
  const r2 = scanBytes(spliced).result;
  assert.equal(r2.stop, 'checksum-mismatch');
  assert.equal(r2.stopFrame, 2);
  assert.equal(r2.commits.length, 1);
});

test('stale frames with old salts after a restarted header are ignored', () => {
  const gen1 = encodeWal(hdr(PAGE, { salt1: 100, salt2: 7 }), txFrames(PAGE, [{ pgnos: [1, 2], commitSize: 2 }, { pgnos: [2], commitSize: 2 }, { pgnos: [1, 2], commitSize: 2 }]));
  const gen2 = encodeWal(hdr(PAGE, { salt1: 101, salt2: 99, checkpointSeq: 1 }), txFrames(PAGE, [{ pgnos: [2], commitSize: 2 }, { pgnos: [1], commitSize: 2 }], 77));
  const file = gen1.slice();
  file.set(gen2, 0); // new header + frames 1..2; gen1's frames 3..5 remain
  const { header, result } = scanBytes(file);
  assert.equal(header.salt1, 101);
  assert.deepEqual(result.commits.map(shape), [commit(1, 1, 1, 2, [[2, 1]]), commit(2, 2, 2, 2, [[1, 2]])]);
  assert.equal(result.stop, 'salt-mismatch');
  assert.equal(result.stopFrame, 3);
  // even a scan state left over from the old generation cannot read them: its header's salts differ
  const oldState = startScan(scanBytes(gen1).header);
  assert.equal(scanWal(readerOf(file).read, oldState).stop, 'salt-mismatch');
});

// ---------------------------------------------------------------------------------------------
// padding rules on synthetic WALs

/** Commit frame C (pgno 2, commitSize 2) and `copies` byte-identical copies of it (fresh checksums). */
function commitThenCopies(pageSize: number, before: number, copies: number, mutate?: (i: number, f: WalFrameInit) => WalFrameInit): Uint8Array {
  const frames: WalFrameInit[] = [];
  for (let i = 0; i < before; i++) frames.push({ pgno: 1, commitSize: 0, page: page(pageSize, 900 + i) });
  const c: WalFrameInit = { pgno: 2, commitSize: 2, page: page(pageSize, 5) };
  frames.push(c);
  for (let i = 0; i < copies; i++) frames.push(mutate ? mutate(i, { ...c, page: c.page.slice() }) : { ...c });
  return encodeWal(hdr(pageSize), frames);
}

test('padding: identical copies before the sync point are padding, the ones at or after it are commits', () => {
  // page 512: C is frame 1 (ends at 568); sector 1024 -> sync point 1024: frame 2 (starts 568) is padding,
  // frame 3 (starts 1104) is not, even though identical.
  const wal = commitThenCopies(PAGE, 0, 3);
  const r = scanBytes(wal, { sectorSize: 1024 }).result;
  assert.deepEqual(r.commits.map(shape), [
    commit(1, 1, 1, 2, [[2, 1]], 1), // frame 3 ends at 1640 -> its sync point is 2048: frame 4 (1640) is its padding
    commit(2, 3, 3, 2, [[2, 3]], 1),
  ]);
  assert.equal(r.state.nextFrame, 5);
  // sectorSize 0 / absent: every copy is a separate commit
  for (const options of [{}, { sectorSize: 0 }]) {
    assert.equal(scanBytes(wal, options).result.commits.length, 4);
  }
});

test('padding: a commit frame ending exactly on a sector boundary has no padding', () => {
  // page 4096 (frame 4120): frame 20 ends at 32 + 20*4120 = 82432 = 161*512
  const wal = commitThenCopies(4096, 19, 1);
  const r = scanBytes(wal, { sectorSize: 512 }).result;
  assert.equal(r.commits.length, 2);
  assert.deepEqual(shape(r.commits[0]!), commit(1, 1, 20, 2, [[1, 19], [2, 20]]));
  assert.deepEqual(shape(r.commits[1]!), commit(2, 21, 21, 2, [[2, 21]]));
});

test('padding: frames that differ from the commit frame are not padding', () => {
  const sector = 4096;
  const cases: Array<[string, (i: number, f: WalFrameInit) => WalFrameInit]> = [
    ['page byte', (_i, f) => { f.page[100]! ^= 1; return f; }],
    ['pgno', (_i, f) => ({ ...f, pgno: 1 })],
    ['commit size', (_i, f) => ({ ...f, commitSize: 3 })],
  ];
  for (const [what, mutate] of cases) {
    const r = scanBytes(commitThenCopies(PAGE, 0, 1, mutate), { sectorSize: sector }).result;
    assert.equal(r.commits.length, 2, what);
    assert.equal(r.commits[0]!.paddingFrames, 0, what);
  }
  // a non-commit frame after C starts a transaction; an identical frame after it is not padding either
  const c: WalFrameInit = { pgno: 2, commitSize: 2, page: page(PAGE, 5) };
  const wal = encodeWal(hdr(PAGE), [c, { pgno: 1, commitSize: 0, page: page(PAGE, 6) }, c]);
  const r = scanBytes(wal, { sectorSize: sector }).result;
  assert.deepEqual(r.commits.map(shape), [commit(1, 1, 1, 2, [[2, 1]]), commit(2, 2, 3, 2, [[1, 2], [2, 3]])]);
});

test('padding is recognised across read chunks even when the reader reuses its buffer', () => {
  // 16 KiB first read = 30 frames of 536: put the commit frame at frame 30 and pad to a 64 KiB sector
  const wal = commitThenCopies(PAGE, 29, 200);
  const rec = scanWalFile(scratchReaderOf(wal), { sectorSize: 65536 });
  assert.ok(rec.result);
  const c1 = rec.result.commits[0]!;
  const expectedPadding = Math.ceil((65536 - frameOffset(31, PAGE)) / FRAME);
  assert.equal(c1.commitFrame, 30);
  assert.equal(c1.paddingFrames, expectedPadding);
  // the first copy at or after 65536 starts a new commit, padded to 131072 in turn
  const c2 = rec.result.commits[1]!;
  assert.equal(c2.commitFrame, 31 + expectedPadding);
  assert.equal(rec.result.commits.reduce((n, c) => n + 1 + c.paddingFrames, 0) + 29, 230);
  assert.equal(rec.result.stop, 'end');
});

test('a padding frame in the next read chunk is compared with a copy of the commit page', () => {
  // C is frame 30, the last frame of the 16 KiB first read; sector 16384: frame 31 (starts at 16112) is
  // its only padding frame and sits in the second read, followed by unrelated transactions. The reader
  // reuses its buffer, so the scanner must have copied C's page before the second read.
  const c: WalFrameInit = { pgno: 2, commitSize: 2, page: page(PAGE, 5) };
  const frames: WalFrameInit[] = [];
  for (let i = 0; i < 29; i++) frames.push({ pgno: 1, commitSize: 0, page: page(PAGE, 900 + i) });
  frames.push(c, c);
  for (let i = 0; i < 40; i++) frames.push({ pgno: 1, commitSize: 2, page: page(PAGE, 2000 + i) });
  const wal = encodeWal(hdr(PAGE), frames);
  for (const read of [scratchReaderOf(wal), readerOf(wal).read]) {
    const r = scanWalFile(read, { sectorSize: 16384 });
    assert.ok(r.result);
    assert.deepEqual(shape(r.result.commits[0]!), commit(1, 1, 30, 2, [[1, 29], [2, 30]], 1));
    assert.deepEqual(shape(r.result.commits[1]!), commit(2, 32, 32, 2, [[1, 32]]));
    assert.equal(r.result.commits.length, 41);
  }
});

// ---------------------------------------------------------------------------------------------
// resuming

/** Scans a growing file: at each step the reader sees `sizes[i]` bytes. Returns all commits and the last result. */
function scanGrowing(file: Uint8Array, sizes: number[], options: { sectorSize?: number } = {}): { commits: WalCommit[]; last: WalScanResult } {
  const header = parseWalHeader(file);
  assert.ok('header' in header);
  let state: WalScanState = startScan(header.header);
  const commits: WalCommit[] = [];
  let last: WalScanResult | undefined;
  for (const size of sizes) {
    last = scanWal(readerOf(file.subarray(0, size)).read, state, options);
    commits.push(...last.commits);
    state = last.state;
  }
  return { commits, last: last! };
}

test('a resumed scan gives the same commits as one scan, for every split point (ok fixture)', () => {
  const file = fixture('ok/wal');
  const whole = scanBytes(file).result;
  for (let split = 32; split <= file.length; split += 67) {
    const { commits, last } = scanGrowing(file, [split, file.length]);
    assert.deepEqual(commits, whole.commits, `split at ${split}`);
    assert.deepEqual(last.state, whole.state);
    assert.equal(last.stop, 'end');
  }
  // three steps, frame by frame growth
  const sizes = [];
  for (let n = 0; n <= 12; n++) sizes.push(frameOffset(n + 1, PAGE));
  assert.deepEqual(scanGrowing(file, sizes).commits, whole.commits);
});

test('a resumed scan over the native padding WAL yields each commit once at every split point', () => {
  const file = fixture('padding/wal');
  const whole = scanBytes(file, { sectorSize: UNIX_SECTOR_SIZE }).result;
  const key = (c: WalCommit) => [c.index, c.firstFrame, c.commitFrame, c.commitSize, [...c.pages]];
  for (let split = 32; split <= file.length; split += 97) {
    const { commits, last } = scanGrowing(file, [split, file.length], { sectorSize: UNIX_SECTOR_SIZE });
    assert.deepEqual(commits.map(key), whole.commits.map(key), `split at ${split}`);
    assert.equal(last.state.nextFrame, whole.state.nextFrame);
    assert.deepEqual(last.state.checksum, whole.state.checksum);
  }
});

test('maxFrames bounds the frames examined; repeated bounded scans equal one scan', () => {
  const file = fixture('padding/wal');
  const whole = scanBytes(file, { sectorSize: UNIX_SECTOR_SIZE }).result;
  const header = parseWalHeader(file);
  assert.ok('header' in header);
  for (const maxFrames of [1, 2, 5, 7]) {
    let state = startScan(header.header);
    const got: number[] = [];
    for (let guard = 0; guard < 100; guard++) {
      const r = scanWal(readerOf(file).read, state, { sectorSize: UNIX_SECTOR_SIZE, maxFrames });
      assert.ok(r.stopFrame - state.nextFrame <= maxFrames);
      got.push(...r.commits.map((c) => c.commitFrame));
      if (r.state.nextFrame === state.nextFrame && r.stop === 'open-transaction') {
        // the next transaction is longer than maxFrames: cannot progress with this bound
        assert.ok(maxFrames < 2);
        break;
      }
      state = r.state;
      if (state.nextFrame === whole.state.nextFrame) break;
    }
    if (maxFrames >= 2) assert.deepEqual(got, whole.commits.map((c) => c.commitFrame), `maxFrames ${maxFrames}`);
  }
  const zero = scanWal(readerOf(file).read, startScan(header.header), { maxFrames: 0 });
  assert.deepEqual(zero.commits, []);
  assert.equal(zero.stop, 'end');
  assert.equal(zero.stopFrame, 1);
});

test('scanWal does not modify the state passed in', () => {
  const file = fixture('ok/wal');
  const header = parseWalHeader(file);
  assert.ok('header' in header);
  const state = startScan(header.header);
  const copy = structuredClone(state);
  scanWal(readerOf(file).read, state);
  assert.deepEqual(state, copy);
});

test('scanWal rejects nonsense options', () => {
  const state = startScan(scanBytes(fixture('ok/wal')).header);
  const read = readerOf(fixture('ok/wal')).read;
  assert.throws(() => scanWal(read, state, { sectorSize: -1 }), RangeError);
  assert.throws(() => scanWal(read, state, { maxFrames: 1.5 }), RangeError);
  assert.throws(() => scanWal(read, { ...state, nextFrame: 0 }), RangeError);
});

test('a reader returning more than asked is clamped', () => {
  const file = fixture('ok/wal');
  const padded = new Uint8Array(file.length + 5000);
  padded.set(file);
  const r = scanWalFile((offset) => padded.subarray(offset)); // ignores length
  // the trailing zeros are an invalid frame (salts 0): stop there, with every commit found
  assert.equal(r.result?.commits.length, 4);
  assert.equal(r.result?.stop, 'salt-mismatch');
  assert.equal(r.result?.stopFrame, 13);
});
