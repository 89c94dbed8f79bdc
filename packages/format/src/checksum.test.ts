import { test } from 'node:test';
import assert from 'node:assert/strict';
import xxhash from 'xxhash-wasm';
import { FormatError, PageHashes, loadChecksum, loadFormat, lockPageNumber } from './index.js';
import { makePage, prng, randomInt } from './test-util.js';

await loadFormat();
const sums = await loadChecksum();

test('pageHash is xxh64 (seed 0) of be32(pgno) || page', async () => {
  const reference = await xxhash();
  const rand = prng(1);
  for (const pageSize of [512, 4096, 65536]) {
    for (const pgno of [1, 2, 255, 256, 65537, 0xfffffffe]) {
      const page = makePage(rand, pageSize);
      const joined = new Uint8Array(4 + pageSize);
      new DataView(joined.buffer).setUint32(0, pgno);
      joined.set(page, 4);
      assert.equal(sums.pageHash(pgno, page), reference.h64Raw(joined, 0n));
    }
  }
});

test('lockPageNumber is the page holding byte 2^30', () => {
  assert.equal(lockPageNumber(512), 2097153);
  assert.equal(lockPageNumber(4096), 262145);
  assert.equal(lockPageNumber(8192), 131073);
  assert.equal(lockPageNumber(65536), 16385);
  for (const size of [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]) {
    const pgno = lockPageNumber(size);
    assert.ok((pgno - 1) * size <= 2 ** 30 && 2 ** 30 < pgno * size);
  }
});

test('an empty database has checksum 0', () => {
  const hashes = new PageHashes(4096);
  assert.equal(hashes.value, 0n);
  assert.equal(hashes.pageCount, 0);
  assert.equal(sums.databaseChecksum([]), 0n);
});

test('PageHashes: the incremental value equals a from-scratch XOR after random sets and truncates', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rand = prng(seed);
    const pageSize = 512;
    const hashes = new PageHashes(pageSize);
    const db = new Map<number, Uint8Array>();
    let size = 0;
    for (let step = 0; step < 400; step++) {
      if (rand() < 0.1 && size > 0) {
        size = randomInt(rand, size + 1);
        hashes.truncate(size);
        for (const pgno of [...db.keys()]) if (pgno > size) db.delete(pgno);
      } else {
        const grow = rand() < 0.3;
        const pgno = grow ? size + 1 + randomInt(rand, 300) : 1 + randomInt(rand, Math.max(size, 1));
        const data = makePage(rand, pageSize);
        hashes.set(pgno, data);
        db.set(pgno, data);
        size = Math.max(size, pgno);
      }
      assert.equal(hashes.pageCount, size);
      const scratch = sums.databaseChecksum([...db].map(([pgno, data]) => ({ pgno, data })));
      assert.equal(hashes.value, scratch, `seed ${seed} step ${step}`);
    }
  }
});

test('PageHashes: rewriting a page with the same bytes leaves the value unchanged', () => {
  const rand = prng(9);
  const hashes = new PageHashes(1024);
  const page = makePage(rand, 1024);
  hashes.set(3, page);
  const before = hashes.value;
  hashes.set(3, page.slice());
  assert.equal(hashes.value, before);
  assert.equal(hashes.hashOf(3), sums.pageHash(3, page));
  assert.equal(hashes.hashOf(2), 0n);
});

test('PageHashes: the lock page is refused and pages beyond it count', () => {
  const pageSize = 65536;
  const lock = lockPageNumber(pageSize);
  const hashes = new PageHashes(pageSize);
  const page = new Uint8Array(pageSize);
  assert.throws(() => hashes.set(lock, page), (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT');
  hashes.set(lock - 1, page);
  hashes.set(lock + 1, page);
  assert.equal(hashes.pageCount, lock + 1);
  assert.equal(hashes.value, sums.pageHash(lock - 1, page) ^ sums.pageHash(lock + 1, page));
  hashes.truncate(lock);
  assert.equal(hashes.value, sums.pageHash(lock - 1, page));
});

test('PageHashes: bad arguments are ERR_INVALID_ARGUMENT', () => {
  const invalid = (e: unknown) => e instanceof FormatError && e.code === 'ERR_INVALID_ARGUMENT';
  assert.throws(() => new PageHashes(1000), invalid);
  assert.throws(() => new PageHashes(256), invalid);
  const hashes = new PageHashes(512);
  assert.throws(() => hashes.set(0, new Uint8Array(512)), invalid);
  assert.throws(() => hashes.set(1.5, new Uint8Array(512)), invalid);
  assert.throws(() => hashes.set(1, new Uint8Array(511)), invalid);
  assert.throws(() => hashes.truncate(-1), invalid);
});
