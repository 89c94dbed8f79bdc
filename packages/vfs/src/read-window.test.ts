import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from './index.js';
import { nodeFs, type FsOps } from './fs-ops.js';
import { O_DIRECT } from './direct-io.js';
import { WindowReader } from './read-window.js';

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'walship-window-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** node:fs, counting reads of the database file itself, and which of its descriptors were opened with O_DIRECT. */
function countingFs(path: string): { fs: FsOps; reads: () => number; directOpens: () => number } {
  const fds = new Set<number>();
  let reads = 0;
  let directOpens = 0;
  const fs: FsOps = {
    ...nodeFs,
    openSync: (p, flags, mode) => {
      const fd = nodeFs.openSync(p, flags, mode);
      if (p === path) {
        fds.add(fd);
        if (O_DIRECT !== undefined && (flags & O_DIRECT) !== 0) directOpens++;
      }
      return fd;
    },
    readSync: (fd, buffer, offset, length, position) => {
      if (fds.has(fd)) reads++;
      return nodeFs.readSync(fd, buffer, offset, length, position);
    },
  };
  return { fs, reads: () => reads, directOpens: () => directOpens };
}

async function build(path: string, rows: number): Promise<void> {
  const db = await openDatabase(path, { capture: false, pageSize: 4096 });
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)');
  const insert = db.prepare('INSERT INTO t(b) VALUES (randomblob(1500))');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) insert.run();
  })();
  db.checkpoint();
  db.close();
}

test('a database read through windows answers as one read page by page, with a read per window instead of per page', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  await build(path, 6000);
  const plain = countingFs(path);
  const a = await openDatabase(path, { capture: false, create: false, fs: plain.fs });
  const expected = a.prepare('SELECT sum(length(b)), count(*), sum(id) FROM t').get();
  assert.deepEqual(a.pragma('integrity_check', { simple: true }), 'ok');
  a.close();
  const windowed = countingFs(path);
  const seen: number[] = [];
  const b = await openDatabase(path, { capture: false, create: false, fs: windowed.fs, readWindow: { windowBytes: 65536, windows: 2, onRead: (data, offset) => seen.push(offset, data.length) } });
  assert.deepEqual(b.prepare('SELECT sum(length(b)), count(*), sum(id) FROM t').get(), expected);
  assert.deepEqual(b.pragma('integrity_check', { simple: true }), 'ok');
  b.close();
  const size = readFileSync(path).length;
  assert.ok(plain.reads() > size / 4096, `page by page: ${plain.reads()} reads of a ${size}-byte file`);
  assert.ok(windowed.reads() < plain.reads() / 4, `through windows: ${windowed.reads()} reads, page by page ${plain.reads()}`);
  for (let i = 0; i < seen.length; i += 2) {
    assert.equal((seen[i] as number) % 65536, 0, 'windows start at multiples of their size');
    assert.ok((seen[i + 1] as number) === 65536 || (seen[i] as number) + (seen[i + 1] as number) === size, 'a window is whole but at the end of the file');
  }
  if (O_DIRECT !== undefined) assert.ok(windowed.directOpens() >= 1 || process.platform !== 'linux', 'Linux: a descriptor with O_DIRECT was asked for');
});

test('a database read through windows refuses writes: the file it checks cannot change under it', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  await build(path, 200);
  const before = readFileSync(path);
  const db = await openDatabase(path, { capture: false, create: false, readWindow: {} });
  assert.throws(() => db.exec('INSERT INTO t(b) VALUES (x\'00\'); PRAGMA wal_checkpoint(TRUNCATE)'), (e: Error) => /read-only \(read through windows\)|readonly|I\/O/i.test(e.message));
  db.close();
  assert.deepEqual(readFileSync(path), before, 'the file is as it was');
});

test('readWindow is refused with capture on, and checked', async () => {
  using t = tempDir();
  const path = join(t.dir, 'a.db');
  await assert.rejects(openDatabase(path, { readWindow: {} }), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_OPTION' && /needs capture off/.test(e.message));
  await assert.rejects(openDatabase(path, { capture: false, readWindow: { windowBytes: 1000 } }), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_OPTION' && /multiple of 65536/.test(e.message));
});

test('WindowReader: reads at the end of a file are short, a range across two windows is left to the caller, and O_DIRECT refused falls back', () => {
  using t = tempDir();
  const path = join(t.dir, 'f.bin');
  const bytes = new Uint8Array(65536 * 2 + 4096).map((_, i) => (i * 31) & 0xff);
  writeFileSync(path, bytes);
  // A file system that refuses O_DIRECT at open and an alignment it refuses at read: both end in buffered reads.
  for (const refuse of ['open', 'read'] as const) {
    const fs: FsOps = {
      ...nodeFs,
      openSync: (p, flags, mode) => {
        if (refuse === 'open' && O_DIRECT !== undefined && (flags & O_DIRECT) !== 0) throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' });
        return nodeFs.openSync(p, flags, mode);
      },
      readSync: (fd, buffer, offset, length, position) => {
        if (refuse === 'read' && fd !== plainFd) throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' });
        return nodeFs.readSync(fd, buffer, offset, length, position);
      },
    };
    const plainFd = nodeFs.openSync(path, 0);
    try {
      const r = new WindowReader(fs, path, plainFd, { windowBytes: 65536, windows: 1 });
      const page = new Uint8Array(4096);
      assert.equal(r.read(page, 65536 * 2), 4096);
      assert.deepEqual(page, bytes.subarray(65536 * 2, 65536 * 2 + 4096));
      const past = new Uint8Array(4096);
      assert.equal(r.read(past, 65536 * 2 + 2048), 2048, 'short at the end of the file');
      assert.equal(r.read(new Uint8Array(4096), 65536 - 2048), -1, 'a range across two windows');
      assert.equal(r.read(page, 4096), 4096);
      assert.deepEqual(page, bytes.subarray(4096, 8192));
      r.close();
    } finally {
      nodeFs.closeSync(plainFd);
    }
  }
});

/** Waits (up to 20 s: a loaded machine starts threads slowly) until the reader's read-ahead thread has opened the file. */
async function threadStarted(reader: WindowReader): Promise<void> {
  for (let waited = 0; !reader.readAheadAlive; waited += 10) {
    if (waited > 20_000) throw new Error('the read-ahead thread did not start in 20 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('WindowReader with readAhead: every window read forwards, backwards, out of order or at random is the file\'s, most of them read by the thread', async () => {
  using t = tempDir();
  const W = 65536;
  const count = 48;
  const path = join(t.dir, 'windows');
  const file = new Uint8Array(count * W + 1000);
  for (let i = 0; i < file.length; i++) file[i] = (Math.floor(i / W) * 37 + i * 7 + (i >> 9)) & 0xff;
  writeFileSync(path, file);
  const forward = Array.from({ length: count + 1 }, (_, i) => i);
  const backward = [...forward].reverse();
  // integrity_check's order: the tree from its last cell down, a few windows swapped here and there.
  const sqliteLike = backward.map((w, i) => backward[i % 4 === 1 && i + 2 < backward.length ? i + 2 : i % 4 === 3 ? i - 2 : i] as number);
  let seed = 7;
  const random = Array.from({ length: 60 }, () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % (count + 1));
  const fd = nodeFs.openSync(path, 0);
  const reader = new WindowReader(nodeFs, path, fd, { windowBytes: W, windows: 1, readAhead: 4 });
  let reads = 0;
  try {
    await threadStarted(reader);
    for (const [name, order] of [['forward', forward], ['backward', backward], ['sqlite-like', sqliteLike], ['random', random], ['forward again', forward]] as const) {
      for (const w of order) {
        const into = new Uint8Array(W).fill(0xee);
        const n = reader.read(into, w * W);
        const want = file.subarray(w * W, Math.min(file.length, (w + 1) * W));
        assert.equal(n, want.length, `${name}: window ${w} length`);
        assert.ok(Buffer.from(into.subarray(0, n)).equals(want), `${name}: window ${w} holds the file's bytes`);
        reads++;
      }
    }
    assert.ok(reader.windowsReadAhead >= reads / 4, `${reader.windowsReadAhead} of ${reads} windows came from the read-ahead thread`);
  } finally {
    reader.close();
    nodeFs.closeSync(fd);
  }
});

test('WindowReader with readAhead: a read-ahead thread that dies at once (its file gone before it opens it) costs nothing but its help: every window still read, no wait', () => {
  using t = tempDir();
  const W = 65536;
  const path = join(t.dir, 'gone');
  const file = new Uint8Array(40 * W).map((_, i) => (i * 13 + (i >> 16)) & 0xff);
  writeFileSync(path, file);
  const fd = nodeFs.openSync(path, 0);
  const reader = new WindowReader(nodeFs, path, fd, { windowBytes: W, windows: 1, readAhead: 4 });
  // The reader keeps its descriptor; the thread, still starting, finds no file to open and ends.
  unlinkSync(path);
  try {
    for (const w of [0, 1, 2, 3, 4, 5, 39, 38, 37, 10, 11, 12]) {
      const into = new Uint8Array(W);
      assert.equal(reader.read(into, w * W), W);
      assert.ok(Buffer.from(into).equals(file.subarray(w * W, (w + 1) * W)), `window ${w}`);
    }
    // (A thread that opened the file before the unlink would have served some windows, correctly.)
    if (!reader.readAheadAlive) assert.equal(reader.windowsReadAhead, 0);
  } finally {
    reader.close();
    nodeFs.closeSync(fd);
  }
});
