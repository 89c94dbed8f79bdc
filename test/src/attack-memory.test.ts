// Attack suite, issue 10 items 4 and 5: someone who can write to the bucket plants an object whose
// pages or index decode to far more than its stored size. Restore, verify, follow and planning
// (`--txid`) must answer with a typed error naming the object, create nothing at the target, and
// hold bounded memory: peak RSS growth under 64 MiB + 2 x maxSegmentBytes (the shipper's default,
// 16 MiB). Memory is measured in a child process (VmHWM), never by timing.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HEADER_SIZE, PageHashes, encodeSegment, formatKeys, loadFormat, lockPageNumber, type ObjectHeader, type TransactionInput } from '@walship/format';
import { openReplicated } from '@walship/shipper';
import { plan, restore, type RestorePlan } from '@walship/restore';
import type { ObjectStorage } from '@walship/storage';
import { startS3rver, type S3Server } from './servers/index.js';
import { Workload, newPrefix, s3Options, sleep, source, storageFor } from './util/restore-harness.js';

const MiB = 1024 * 1024;
/** The shipper's maxSegmentBytes default (packages/shipper/src/options.ts). */
const MAX_SEGMENT_BYTES = 16 * MiB;
const RSS_BOUND_KIB = (64 * MiB + 2 * MAX_SEGMENT_BYTES) / 1024;
const CHILD = fileURLToPath(new URL('./fixtures/rss-restore.js', import.meta.url));

let server: S3Server;
let dir: string;
let base: string;
let storage: ObjectStorage;
let latest: RestorePlan;
let tipHeader: ObjectHeader;
let basePages: Uint8Array;
let checksumOf: { xxh64(bytes: Uint8Array): bigint };

interface ChildReport {
  ok: boolean;
  code: string | null;
  details: Record<string, unknown> | null;
  message: string | null;
  baselineKiB: number;
  peakKiB: number;
}

async function runChild(op: 'restore' | 'verify' | 'follow', options: Record<string, unknown>, plant?: () => Promise<void>): Promise<ChildReport> {
  const child = spawn(process.execPath, [CHILD, JSON.stringify({ op, options })], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let planted = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (piece: string) => {
    out += piece;
    if (!planted && plant && out.includes('ready\n')) {
      planted = true;
      void plant().then(() => child.stdin.write('planted\n'));
    }
  });
  const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const line = out.split('\n').filter((l) => l.startsWith('{')).at(-1);
  assert.ok(line, `the child (${op}) reported (exit ${status}): ${out}`);
  return JSON.parse(line) as ChildReport;
}

function assertBounded(r: ChildReport, label: string): void {
  const growth = r.peakKiB - r.baselineKiB;
  console.log(`${label}: peak RSS growth ${(growth / 1024).toFixed(1)} MiB (baseline ${(r.baselineKiB / 1024).toFixed(1)} MiB, bound ${RSS_BOUND_KIB / 1024} MiB); ${r.code ?? 'no error'}`);
  assert.ok(growth < RSS_BOUND_KIB, `${label}: peak RSS grew by ${Math.round(growth / 1024)} MiB (bound ${RSS_BOUND_KIB / 1024} MiB; baseline ${Math.round(r.baselineKiB / 1024)} MiB)`);
}

/** A copy of the base replica under a new prefix. */
async function copyReplica(name: string): Promise<string> {
  const prefix = newPrefix(name);
  for await (const o of storage.list({ prefix: `${base}/` })) {
    const bytes = await storage.get(o.key);
    assert.ok(bytes);
    await storage.put(`${prefix}/${o.key.slice(base.length + 1)}`, bytes);
  }
  return prefix;
}

/** A directory for the restore target that does not exist yet; after a failure it must not exist, or be empty. */
function target(name: string): { path: string; check: () => void } {
  const sub = join(dir, `${name}-target`);
  const path = join(sub, 'restored.db');
  return {
    path,
    check: () => {
      assert.ok(!existsSync(path), `${name}: the target was not created`);
      if (existsSync(sub)) assert.deepEqual(readdirSync(sub), [], `${name}: no scratch file is left behind`);
    },
  };
}

function segmentKey(prefix: string, minTxid: number): string {
  return formatKeys(prefix).segment({ generation: tipHeader.generation, level: 0, minTxid, epoch: tipHeader.epoch });
}

/**
 * Item 4 as reproduced: a level-0 segment continuing the chain whose transactions rewrite the same
 * zero pages, checksums right, until the last transaction's checksum is wrong. A few hundred KiB
 * stored, `decoded` bytes of pages.
 */
function pageBomb(decoded: number, chunkSize = 1 << 20): { bytes: Uint8Array; key: (prefix: string) => string; lastTxid: number } {
  const pageSize = latest.pageSize;
  const hashes = new PageHashes(pageSize);
  const lock = lockPageNumber(pageSize);
  for (let p = 1; p <= latest.commitSize; p++) if (p !== lock) hashes.set(p, basePages.subarray((p - 1) * pageSize, p * pageSize));
  assert.equal(hashes.value, latest.checksum, 'the base file hashes to the replica checksum');
  const zero = new Uint8Array(pageSize);
  const pages = Array.from({ length: Math.min(latest.commitSize, 64) }, (_, i) => ({ pgno: i + 1, data: zero })).filter((p) => p.pgno !== lock);
  for (const p of pages) hashes.set(p.pgno, zero);
  const count = Math.ceil(decoded / (pages.length * pageSize));
  const first = latest.txid + 1;
  const at = latest.timestamp + 1;
  const transactions: TransactionInput[] = Array.from({ length: count }, (_, i) => ({
    txid: first + i,
    timestamp: at,
    commitSize: latest.commitSize,
    postChecksum: i === count - 1 ? hashes.value ^ 1n : hashes.value,
    pages,
  }));
  const bytes = encodeSegment(
    {
      kind: 'segment',
      databaseId: latest.databaseId,
      generation: tipHeader.generation,
      epoch: tipHeader.epoch,
      level: 0,
      minTxid: first,
      maxTxid: first + count - 1,
      pageSize,
      commitSize: latest.commitSize,
      firstTimestamp: at,
      lastTimestamp: at,
      preChecksum: latest.checksum,
      postChecksum: hashes.value ^ 1n,
      transactionCount: count,
      pageCount: count * pages.length,
    },
    transactions,
    { chunkSize },
  );
  return { bytes, key: (prefix) => segmentKey(prefix, first), lastTxid: first + count - 1 };
}

function u32(bytes: Uint8Array, at: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value);
}

function u64(bytes: Uint8Array, at: number, value: number | bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(at, BigInt(value));
}

/** Re-seals a patched header (its xxh64 at bytes 184..191; README "Header"). */
function resealHeader(object: Uint8Array): void {
  u64(object, 184, checksumOf.xxh64(object.subarray(0, 184)));
}

/** A zstd frame of RLE blocks (RFC 8878): `size` zero bytes from 4 bytes per 128 KiB. */
function rleFrame(size: number): Uint8Array {
  const blocks = Math.ceil(size / 131072);
  const out = new Uint8Array(13 + 4 * blocks);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xfd2fb528, true);
  v.setUint8(4, 0xe0); // 8-byte content size, single segment, no checksum, no dictionary
  v.setBigUint64(5, BigInt(size), true);
  for (let b = 0; b < blocks; b++) {
    const n = Math.min(131072, size - b * 131072);
    const word = (n << 3) | (1 << 1) | (b === blocks - 1 ? 1 : 0);
    out[13 + 4 * b] = word & 0xff;
    out[14 + 4 * b] = (word >>> 8) & 0xff;
    out[15 + 4 * b] = (word >>> 16) & 0xff;
  }
  return out;
}

/**
 * Item 5: a level-0 segment of `transactions` txids that continues the chain, whose counts make an
 * index block of `indexRaw` bytes, stored as a frame of zero runs; `pad` bytes of filler stand where
 * data would be. Everything a planner reads (header, index block, trailer) has valid checksums.
 */
function indexBomb(options: { transactions: number; pages: number; pad: number }): { bytes: Uint8Array; key: (prefix: string) => string; first: number; indexRaw: number } {
  const { transactions, pages, pad } = options;
  const indexRaw = 16 + 40 * transactions + 4 * pages;
  const { bytes: model } = pageBomb(1);
  const header = model.slice(0, HEADER_SIZE);
  const first = latest.txid + 1;
  u64(header, 56, first + transactions - 1);
  u32(header, 68, transactions);
  u32(header, 72, pages);
  resealHeader(header);
  const frame = rleFrame(indexRaw);
  const object = new Uint8Array(HEADER_SIZE + pad + 32 + frame.length + 48);
  object.set(header, 0);
  const chunkAt = HEADER_SIZE + pad;
  u32(object, chunkAt, 0);
  object[chunkAt + 4] = 0x01;
  u32(object, chunkAt + 8, frame.length);
  u32(object, chunkAt + 12, indexRaw);
  u64(object, chunkAt + 16, checksumOf.xxh64(frame));
  u64(object, chunkAt + 24, checksumOf.xxh64(object.subarray(chunkAt, chunkAt + 24)));
  object.set(frame, chunkAt + 32);
  const trailerAt = chunkAt + 32 + frame.length;
  u32(object, trailerAt, 0);
  u32(object, trailerAt + 4, transactions);
  u32(object, trailerAt + 8, pages);
  u32(object, trailerAt + 12, 32 + frame.length);
  u64(object, trailerAt + 16, 0);
  u64(object, trailerAt + 24, chunkAt);
  object.set(new TextEncoder().encode('WSHIPEND'), trailerAt + 32);
  u64(object, trailerAt + 40, checksumOf.xxh64(object.subarray(0, trailerAt + 40)));
  return { bytes: object, key: (prefix) => segmentKey(prefix, first), first, indexRaw };
}

before(async () => {
  await loadFormat();
  checksumOf = ((await import(new URL('../../packages/format/dist/checksum.js', import.meta.url).href)) as { checksum: () => { xxh64(b: Uint8Array): bigint } }).checksum();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-attack-mem-'));
  base = newPrefix('attack-mem');
  storage = storageFor(server, '');
  const work = new Workload(7);
  const db = await openReplicated(join(dir, 'writer.db'), s3Options(server, base));
  work.setup(db);
  for (let i = 0; i < 30; i++) {
    work.step(db);
    if (i % 10 === 0) await sleep(10);
  }
  await db.close();
  latest = await plan({ ...source(server, base) });
  tipHeader = (latest.objects.at(-1) as RestorePlan['objects'][number]).header;
  const copy = join(dir, 'base.db');
  await restore({ ...source(server, base), path: copy });
  basePages = readFileSync(copy);
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('item 4: a segment whose pages decode to far more than its size', () => {
  const DECODED = 512 * MiB;

  test('restore and verify stream it: bounded memory, the chain error, no target', async () => {
    const bomb = pageBomb(DECODED);
    const prefix = await copyReplica('page-bomb');
    await storage.put(bomb.key(prefix), bomb.bytes);
    for (const op of ['restore', 'verify'] as const) {
      const t = target(`page-bomb-${op}`);
      const scratch = join(dir, `${op}-scratch`);
      mkdirSync(scratch, { recursive: true });
      const options: Record<string, unknown> = op === 'restore' ? { ...source(server, prefix), path: t.path } : { ...source(server, prefix), dir: scratch };
      const r = await runChild(op, options);
      assertBounded(r, `${op} of a ${bomb.bytes.length}-byte segment decoding to ${DECODED / MiB} MiB`);
      assert.equal(r.code, 'ERR_CHAIN_MISMATCH', `${op}: ${r.message}`);
      assert.equal(r.details?.['key'], bomb.key(prefix), `${op} names the object`);
      assert.equal(r.details?.['txid'], bomb.lastTxid, `${op}: every transaction before the last one applied`);
      t.check();
      assert.deepEqual(readdirSync(scratch), [], `${op}: no scratch directory is left`);
    }
  });

  test('the biggest chunks the format allows (16 MiB raw) stay within the bound', async () => {
    const bomb = pageBomb(DECODED, 16 * MiB);
    const prefix = await copyReplica('page-bomb-16m');
    await storage.put(bomb.key(prefix), bomb.bytes);
    const t = target('page-bomb-16m');
    const r = await runChild('restore', { ...source(server, prefix), path: t.path });
    assertBounded(r, `restore of a ${bomb.bytes.length}-byte segment of 16 MiB chunks decoding to ${DECODED / MiB} MiB`);
    assert.equal(r.code, 'ERR_CHAIN_MISMATCH', r.message ?? '');
    t.check();
  });

  test('follow decodes it without holding its pages', async () => {
    const bomb = pageBomb(DECODED);
    const prefix = await copyReplica('page-bomb-follow');
    const replica = join(dir, 'follow-replica', 'replica.db');
    const r = await runChild('follow', { ...source(server, prefix), path: replica, intervalMs: 50 }, async () => {
      await storage.put(bomb.key(prefix), bomb.bytes);
    });
    assertBounded(r, `follow of a ${bomb.bytes.length}-byte segment decoding to ${DECODED / MiB} MiB`);
    assert.equal(r.code, 'ERR_CHAIN_MISMATCH', r.message ?? '');
    assert.equal(r.details?.['key'], bomb.key(prefix));
    const left = readdirSync(join(dir, 'follow-replica')).filter((f) => f.includes('.walship-follow-') || f.includes('.walship-restore-'));
    assert.deepEqual(left, [], 'no follow scratch is left');
  });

  test('a header whose page count cannot fit the object is refused before anything is decoded', async () => {
    const bomb = pageBomb(DECODED);
    const lying = bomb.bytes.slice();
    u32(lying, 72, 0xffffffff);
    resealHeader(lying);
    const prefix = await copyReplica('page-count-lie');
    await storage.put(bomb.key(prefix), lying);
    const t = target('page-count-lie');
    const r = await runChild('restore', { ...source(server, prefix), path: t.path });
    assertBounded(r, 'restore of a header claiming 2^32-1 pages');
    assert.equal(r.code, 'ERR_CORRUPT_OBJECT', r.message ?? '');
    assert.equal(r.details?.['limit'], 'expansion', JSON.stringify(r.details));
    assert.equal(r.details?.['key'], bomb.key(prefix));
    t.check();
  });
});

describe('item 5: an object whose index block decodes to far more than its size', () => {
  test('restore --txid planning refuses a 32 KiB object whose counts make a 1 GiB index', async () => {
    const bomb = indexBomb({ transactions: 10, pages: (2 ** 30 - 16 - 400) / 4, pad: 0 });
    assert.ok(bomb.bytes.length <= 40 * 1024, `${bomb.bytes.length} bytes`);
    const prefix = await copyReplica('index-bomb');
    await storage.put(bomb.key(prefix), bomb.bytes);
    const t = target('index-bomb');
    const r = await runChild('restore', { ...source(server, prefix), path: t.path, txid: bomb.first + 4 });
    assertBounded(r, `planning with a ${bomb.bytes.length}-byte object whose index is ${bomb.indexRaw} bytes`);
    assert.equal(r.code, 'ERR_CORRUPT_OBJECT', r.message ?? '');
    assert.ok(['expansion', 'index'].includes(r.details?.['limit'] as string), JSON.stringify(r.details));
    assert.equal(r.details?.['key'], bomb.key(prefix));
    t.check();
  });

  test('an index block over the limit for its object size is refused before it is decompressed', async () => {
    // Counts that fit the object's size (the header check passes), an index of ~180 MB from a
    // frame of zero runs that zstd could really decode.
    const transactions = 4 * 1024 * 1024;
    const bomb = indexBomb({ transactions, pages: transactions, pad: 1100 * 1024 });
    const prefix = await copyReplica('index-limit');
    await storage.put(bomb.key(prefix), bomb.bytes);
    for (const op of ['restore', 'verify'] as const) {
      const t = target(`index-limit-${op}`);
      const options = op === 'restore' ? { ...source(server, prefix), path: t.path, txid: bomb.first + 4 } : { ...source(server, prefix), txid: bomb.first + 4 };
      const r = await runChild(op, options);
      assertBounded(r, `${op} --txid with a ${bomb.bytes.length}-byte object whose index is ${bomb.indexRaw} bytes`);
      assert.equal(r.code, 'ERR_CORRUPT_OBJECT', `${op}: ${r.message}`);
      assert.equal(r.details?.['limit'], 'index', `${op}: ${JSON.stringify(r.details)}`);
      assert.equal(r.details?.['key'], bomb.key(prefix));
      t.check();
    }
  });
});
