// Fixtures and byte-level tools shared by this package's tests (not exported by index.ts).
import { PageHashes, decodeObject, isFormatError, loadChecksum, lockPageNumber } from './index.js';
import type { ByteSource, DecodeEvent, DecodeOptions, ObjectHeaderInit, TransactionInput } from './index.js';
import { CHUNK, CHUNK_FLAG_FINAL, CHUNK_HEADER_SIZE, HEADER, HEADER_SIZE, TRAILER, TRAILER_SIZE, viewOf } from './format.js';

/** mulberry32: a small seeded PRNG, so every failure reproduces. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInt(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/** A page: `noise` of it random bytes, the rest a repeated pattern (so it compresses partly). */
export function makePage(rand: () => number, pageSize: number, noise = 0.3): Uint8Array {
  const page = new Uint8Array(pageSize);
  const random = Math.floor(pageSize * noise);
  for (let i = 0; i < random; i++) page[i] = randomInt(rand, 256);
  for (let i = random; i < pageSize; i++) page[i] = (i * 7) & 0x3f;
  return page;
}

export const DATABASE_ID = '00112233445566778899aabbccddeeff';
export const GENERATION = '0000000100000002';

export interface Fixture {
  header: ObjectHeaderInit;
  transactions: TransactionInput[];
}

/**
 * A level-0 segment over a simulated database: the pre/post checksums are real rolling checksums
 * (PageHashes), so tests can check a chain. Requires loadFormat().
 */
export function segmentFixture(options: {
  seed: number;
  pageSize?: number;
  transactions?: number;
  maxPagesPerTransaction?: number;
  databasePages?: number;
  minTxid?: number;
  noise?: number;
}): Fixture {
  const rand = prng(options.seed);
  const pageSize = options.pageSize ?? 1024;
  const count = options.transactions ?? 5;
  const maxPages = options.maxPagesPerTransaction ?? 4;
  let size = options.databasePages ?? 8;
  const minTxid = options.minTxid ?? 1;
  const hashes = new PageHashes(pageSize);
  for (let p = 1; p <= size; p++) hashes.set(p, makePage(rand, pageSize, options.noise));
  const preChecksum = hashes.value;
  const transactions: TransactionInput[] = [];
  let timestamp = 1764115200000;
  for (let i = 0; i < count; i++) {
    if (rand() < 0.3) size += 1 + randomInt(rand, 3);
    else if (rand() < 0.1 && size > 2) size -= 1;
    const pgnos = new Set<number>();
    const n = 1 + randomInt(rand, maxPages);
    for (let k = 0; k < n; k++) pgnos.add(1 + randomInt(rand, size));
    for (let p = hashes.pageCount + 1; p <= size; p++) pgnos.add(p);
    const pages = [...pgnos].map((pgno) => ({ pgno, data: makePage(rand, pageSize, options.noise) }));
    for (const p of pages) hashes.set(p.pgno, p.data);
    hashes.truncate(size);
    timestamp += randomInt(rand, 3);
    transactions.push({ txid: minTxid + i, timestamp, commitSize: size, postChecksum: hashes.value, pages });
  }
  const last = transactions[transactions.length - 1] as TransactionInput;
  return {
    header: {
      kind: 'segment',
      databaseId: DATABASE_ID,
      generation: GENERATION,
      epoch: 3,
      level: 0,
      minTxid,
      maxTxid: last.txid,
      pageSize,
      commitSize: last.commitSize,
      firstTimestamp: (transactions[0] as TransactionInput).timestamp,
      lastTimestamp: last.timestamp,
      preChecksum,
      postChecksum: last.postChecksum,
      transactionCount: transactions.length,
      pageCount: transactions.reduce((n, t) => n + t.pages.length, 0),
    },
    transactions,
  };
}

/** A snapshot of `commitSize` pages (every page but the lock page) at `txid`. */
export function snapshotFixture(options: { seed: number; pageSize?: number; commitSize?: number; txid?: number; noise?: number }): Fixture {
  const rand = prng(options.seed);
  const pageSize = options.pageSize ?? 1024;
  const commitSize = options.commitSize ?? 20;
  const txid = options.txid ?? 42;
  const lock = lockPageNumber(pageSize);
  const hashes = new PageHashes(pageSize);
  const pages = [];
  for (let pgno = 1; pgno <= commitSize; pgno++) {
    if (pgno === lock) continue;
    const data = makePage(rand, pageSize, options.noise);
    hashes.set(pgno, data);
    pages.push({ pgno, data });
  }
  const timestamp = 1764115299000;
  return {
    header: {
      kind: 'snapshot',
      databaseId: DATABASE_ID,
      generation: GENERATION,
      epoch: 3,
      level: 0,
      minTxid: txid,
      maxTxid: txid,
      pageSize,
      commitSize,
      firstTimestamp: timestamp,
      lastTimestamp: timestamp,
      preChecksum: 0n,
      postChecksum: hashes.value,
      transactionCount: 1,
      pageCount: pages.length,
    },
    transactions: [{ txid, timestamp, commitSize, postChecksum: hashes.value, pages }],
  };
}

export async function collect(source: ByteSource, options: DecodeOptions = {}): Promise<DecodeEvent[]> {
  const events: DecodeEvent[] = [];
  for await (const event of decodeObject(source, options)) events.push(event);
  return events;
}

/** The FormatError code decoding fails with, or 'ok'. Throws anything that is not a FormatError. */
export async function decodeCode(source: ByteSource, options: DecodeOptions = {}): Promise<string> {
  try {
    await collect(source, options);
    return 'ok';
  } catch (e) {
    if (isFormatError(e)) return e.code;
    throw e;
  }
}

export async function* splitInto(bytes: Uint8Array, rand: () => number, maxPiece: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + randomInt(rand, maxPiece);
    yield bytes.slice(at, at + n);
    at += n;
  }
}

export interface ChunkSpan {
  offset: number;
  length: number;
  index: number;
  flags: number;
}

/** The chunks of an object (data chunks, then the index block), from their headers. */
export function walkChunks(bytes: Uint8Array): ChunkSpan[] {
  const v = viewOf(bytes);
  const spans: ChunkSpan[] = [];
  for (let at = HEADER_SIZE; ; ) {
    const flags = v.getUint8(at + CHUNK.flags);
    const length = CHUNK_HEADER_SIZE + v.getUint32(at + CHUNK.storedLength);
    spans.push({ offset: at, length, index: v.getUint32(at + CHUNK.index), flags });
    at += length;
    if (flags & CHUNK_FLAG_FINAL) return spans;
  }
}

/**
 * Recomputes every xxh64 in an object (header, chunk headers and data, object checksum), as a
 * forger without the key could: what is left to catch a change is the content checks and GCM.
 */
export async function reseal(bytes: Uint8Array): Promise<Uint8Array> {
  const sums = await loadChecksum();
  const out = bytes.slice();
  const v = viewOf(out);
  v.setBigUint64(HEADER.checksum, sums.xxh64(out.subarray(0, HEADER.checksum)));
  for (const c of walkChunks(out)) {
    v.setBigUint64(c.offset + CHUNK.dataChecksum, sums.xxh64(out.subarray(c.offset + CHUNK_HEADER_SIZE, c.offset + c.length)));
    v.setBigUint64(c.offset + CHUNK.headerChecksum, sums.xxh64(out.subarray(c.offset, c.offset + CHUNK.headerChecksum)));
  }
  const sumAt = out.length - TRAILER_SIZE + TRAILER.checksum;
  v.setBigUint64(sumAt, sums.xxh64(out.subarray(0, sumAt)));
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
