import { HEADER_SIZE, ObjectPages, decodeTrailer, indexTailSize, lockPageNumber, readIndex, type Keyring } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import type { PageSource } from '@walship/vfs';
import { changed, sameHeader } from './apply.js';
import { objectFailure, restoreError, storageFailure } from './errors.js';
import { missing, mapLimit } from './replica.js';
import type { PlannedObject } from './plan.js';
import type { FetchRange, SyncFetcher } from './page-fetch.js';

/** Objects up to this size are read whole when their index is read: one GET instead of two. */
const SMALL_OBJECT = 64 * 1024;
/** Chunks one read-ahead batch may hold. */
const READ_AHEAD_CHUNKS = 8;
/** Batches the fetch thread fetches ahead of a scan; with a batch at most cacheBytes / 8, they hold at most half of cacheBytes. */
const PREFETCH_BATCHES = 4;

export interface ReplicaObject {
  key: string;
  size: number;
  pages: ObjectPages;
}

/**
 * Reads the index of every planned object (its head and tail: two ranged GETs, one for small
 * objects), checks that its header is the one the planner chained, and keeps it for page reads.
 */
export async function loadObjects(
  storage: ObjectStorage,
  planned: readonly PlannedObject[],
  options: { keyring: Keyring | undefined; concurrency: number; signal?: AbortSignal | undefined },
): Promise<ReplicaObject[]> {
  const get = async (key: string, start: number, end: number): Promise<Uint8Array> => {
    let bytes: Uint8Array | null;
    try {
      bytes = await storage.get(key, { range: { start, end: end - 1 }, ...(options.signal ? { signal: options.signal } : {}) });
    } catch (e) {
      throw storageFailure(e, `reading the index of ${key}`);
    }
    if (bytes === null) throw missing(storage, key);
    return bytes;
  };
  return mapLimit(
    planned,
    options.concurrency,
    async (o) => {
      if (o.size < HEADER_SIZE) throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${o.key}: the object has ${o.size} bytes, less than a header (${HEADER_SIZE})`, { key: o.key, size: o.size });
      const small = o.size <= SMALL_OBJECT;
      const whole = small ? await get(o.key, 0, o.size) : null;
      const head = whole ? whole.subarray(0, HEADER_SIZE) : await get(o.key, 0, HEADER_SIZE);
      let tail = whole ?? (await get(o.key, o.size - SMALL_OBJECT, o.size));
      try {
        const needed = indexTailSize(decodeTrailer(tail, { name: o.key }));
        if (needed > o.size) throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${o.key}: its trailer says the index takes ${needed} bytes, but the object has ${o.size}`, { key: o.key });
        if (needed > tail.length) tail = await get(o.key, o.size - needed, o.size);
        const parts = await readIndex(head, tail, { name: o.key, objectSize: o.size, ...(options.keyring ? { keyring: options.keyring } : {}) });
        if (!sameHeader(parts.header, o.header)) throw changed(o.key);
        return { key: o.key, size: o.size, pages: new ObjectPages(head, parts, { name: o.key, ...(options.keyring ? { keyring: options.keyring } : {}) }) };
      } catch (e) {
        throw objectFailure(e, o.key, 'reading the index of');
      }
    },
    options.signal,
  );
}

export interface PageCounters {
  /** Page reads SQLite made. */
  reads: number;
  /** Reads served from a chunk already in memory. */
  cacheHits: number;
  /** Reads that needed a GET. */
  cacheMisses: number;
  /** Chunks evicted to stay within cacheBytes. */
  evictions: number;
  /** Distinct chunks fetched at least once, and the chunks the database's pages live in. */
  chunksFetched: number;
  chunksTotal: number;
}

/**
 * The replica's database file, page by page: a page index (page number -> object, record) built
 * from the planned transactions' indexes in apply order, and a memory cache of verified, decoded
 * chunks bounded by `cacheBytes`. A miss fetches the page's chunk by a ranged GET; after a miss on
 * the chunk following the previous miss (a sequential scan) it fetches a batch of chunks and has
 * the fetch thread start the next batch, so a scan keeps the store busy while SQLite works.
 */
export class ReplicaPages implements PageSource {
  readonly pageSize: number;
  readonly pageCount: number;
  readonly counters: PageCounters;
  readonly #objects: ReplicaObject[];
  readonly #objectOf: Uint32Array;
  readonly #positionOf: Uint32Array;
  readonly #fetcher: SyncFetcher;
  readonly #cacheBytes: number;
  readonly #cache = new Map<number, Uint8Array>();
  readonly #fetched = new Set<number>();
  #cached = 0;
  /** Cache key of the last chunk a miss fetched (null before the first). */
  #lastMiss: number | null = null;
  /** Consecutive misses, each on the chunk after the previous one's last. */
  #streak = 0;

  constructor(objects: ReplicaObject[], planned: readonly PlannedObject[], options: { pageSize: number; commitSize: number; fetcher: SyncFetcher; cacheBytes: number }) {
    this.pageSize = options.pageSize;
    this.pageCount = options.commitSize;
    this.#objects = objects;
    this.#fetcher = options.fetcher;
    this.#cacheBytes = options.cacheBytes;
    let max = 0;
    for (let o = 0; o < objects.length; o++) {
      const p = planned[o] as PlannedObject;
      for (const tx of (objects[o] as ReplicaObject).pages.index.transactions) if (tx.txid >= p.applyFrom && tx.txid <= p.applyThrough) max = Math.max(max, tx.commitSize);
    }
    this.#objectOf = new Uint32Array(max + 1);
    this.#positionOf = new Uint32Array(max + 1);
    let size = 0;
    for (let o = 0; o < objects.length; o++) {
      const p = planned[o] as PlannedObject;
      const { index } = (objects[o] as ReplicaObject).pages;
      for (const tx of index.transactions) {
        if (tx.txid < p.applyFrom || tx.txid > p.applyThrough) continue;
        for (let i = tx.firstPage; i < tx.firstPage + tx.pageCount; i++) {
          const pgno = index.pgnos[i] as number;
          if (pgno < 1 || pgno > tx.commitSize) {
            throw restoreError('ERR_CORRUPT_OBJECT', `${p.key}: txid ${tx.txid} lists page ${pgno}, outside its ${tx.commitSize} pages`, { key: p.key, txid: tx.txid, pgno });
          }
          this.#objectOf[pgno] = o + 1;
          this.#positionOf[pgno] = i;
        }
        // Pages beyond a shrunk database read as zeros, as in a restored file, if it grows again.
        if (tx.commitSize < size) this.#objectOf.fill(0, tx.commitSize + 1, size + 1);
        size = tx.commitSize;
      }
    }
    if (size !== options.commitSize) {
      throw restoreError('ERR_CORRUPT_OBJECT', `the planned objects end with ${size} pages, the plan with ${options.commitSize}; the replica changed while it was opened. Open it again`, { size, commitSize: options.commitSize });
    }
    const used = new Set<number>();
    for (let pgno = 1; pgno <= size; pgno++) used.add(this.#objectOf[pgno] as number);
    used.delete(0);
    let chunksTotal = 0;
    for (const o of used) chunksTotal += (objects[o - 1] as ReplicaObject).pages.chunkCount;
    this.counters = { reads: 0, cacheHits: 0, cacheMisses: 0, evictions: 0, chunksFetched: 0, chunksTotal };
  }

  get cachedBytes(): number {
    return this.#cached;
  }

  readPage(pgno: number, out: Uint8Array): void {
    this.counters.reads++;
    const o = pgno <= this.pageCount ? (this.#objectOf[pgno] ?? 0) : 0;
    if (o === 0) {
      // The lock page, or a page no transaction wrote within the database's size: zeros, as on disk.
      out.fill(0);
      return;
    }
    const object = this.#objects[o - 1] as ReplicaObject;
    const location = object.pages.locate(this.#positionOf[pgno] as number);
    const key = cacheKey(o - 1, location.chunk);
    let raw = this.#cache.get(key);
    if (raw !== undefined) {
      this.counters.cacheHits++;
      this.#cache.delete(key);
      this.#cache.set(key, raw);
    } else {
      this.counters.cacheMisses++;
      raw = this.#miss(o - 1, location.chunk);
    }
    try {
      out.set(object.pages.page(raw, location, pgno));
    } catch (e) {
      throw objectFailure(e, object.key, 'reading pages of');
    }
  }

  /** Fetches the chunk (and, on a sequential scan, the chunks after it); returns its raw bytes. */
  #miss(o: number, chunk: number): Uint8Array {
    const object = this.#objects[o] as ReplicaObject;
    const follows = this.#lastMiss !== null && ((chunk > 0 && this.#lastMiss === cacheKey(o, chunk - 1)) || this.#lastMiss === cacheKey(o, chunk));
    this.#streak = follows ? this.#streak + 1 : 0;
    // Two misses in a row on consecutive chunks are a scan; one may be a B-tree lookup whose pages
    // happen to sit in neighbouring chunks (a batch there would fetch megabytes for one row).
    const sequential = this.#streak >= 2;
    const batch = sequential ? this.#batch(o, chunk) : [chunk];
    const last = batch[batch.length - 1] as number;
    this.#lastMiss = cacheKey(o, last);
    const start = object.pages.chunkRange(chunk).start;
    const end = object.pages.chunkRange(last).end;
    const ranges: FetchRange[] = [{ key: object.key, start, end, at: 0 }];
    // The batches after this one, each its own GET, so that several are in flight while SQLite works.
    const prefetch: FetchRange[] = [];
    for (let after = last + 1, n = 0; sequential && n < PREFETCH_BATCHES && after < object.pages.chunkCount; n++) {
      const next = this.#batch(o, after);
      const until = next[next.length - 1] as number;
      prefetch.push({ key: object.key, start: object.pages.chunkRange(after).start, end: object.pages.chunkRange(until).end, at: 0 });
      after = until + 1;
    }
    const bytes = this.#fetcher.fetch(ranges, end - start, prefetch);
    let wanted: Uint8Array | undefined;
    for (const c of batch) {
      const range = object.pages.chunkRange(c);
      let raw: Uint8Array;
      try {
        raw = object.pages.openChunk(c, bytes.subarray(range.start - start, range.end - start));
      } catch (e) {
        throw objectFailure(e, object.key, 'reading pages of');
      }
      const key = cacheKey(o, c);
      if (!this.#fetched.has(key)) {
        this.#fetched.add(key);
        this.counters.chunksFetched++;
      }
      if (c === chunk) wanted = raw;
      this.#insert(key, raw);
    }
    return wanted as Uint8Array;
  }

  /** Chunks from `chunk` on for one read-ahead batch: up to READ_AHEAD_CHUNKS, an eighth of the cache at most, at least one. */
  #batch(o: number, chunk: number): number[] {
    const pages = (this.#objects[o] as ReplicaObject).pages;
    const out: number[] = [];
    let raw = 0;
    for (let c = chunk; c < pages.chunkCount && out.length < READ_AHEAD_CHUNKS; c++) {
      const range = pages.chunkRange(c);
      const size = range.rawEnd - range.rawStart;
      if (out.length > 0 && raw + size > this.#cacheBytes / 8) break;
      raw += size;
      out.push(c);
    }
    return out;
  }

  /**
   * Puts the chunk holding `pgno` in the cache with an asynchronous GET (`get`), so that SQLite's
   * first read (page 1: the header and schema) need not wait for the fetch thread to start.
   */
  async warm(pgno: number, get: (key: string, start: number, end: number) => Promise<Uint8Array>): Promise<void> {
    const o = pgno <= this.pageCount ? (this.#objectOf[pgno] ?? 0) : 0;
    if (o === 0) return;
    const object = this.#objects[o - 1] as ReplicaObject;
    const location = object.pages.locate(this.#positionOf[pgno] as number);
    const bytes = await get(object.key, location.start, location.end);
    let raw: Uint8Array;
    try {
      raw = object.pages.openChunk(location.chunk, bytes);
    } catch (e) {
      throw objectFailure(e, object.key, 'reading pages of');
    }
    const key = cacheKey(o - 1, location.chunk);
    if (!this.#fetched.has(key)) {
      this.#fetched.add(key);
      this.counters.chunksFetched++;
    }
    this.#insert(key, raw);
  }

  #insert(key: number, raw: Uint8Array): void {
    if (raw.length > this.#cacheBytes) return;
    const old = this.#cache.get(key);
    if (old !== undefined) {
      this.#cache.delete(key);
      this.#cached -= old.length;
    }
    while (this.#cached + raw.length > this.#cacheBytes) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cached -= (this.#cache.get(oldest.value) as Uint8Array).length;
      this.#cache.delete(oldest.value);
      this.counters.evictions++;
    }
    this.#cache.set(key, raw);
    this.#cached += raw.length;
  }

  /** Empties the cache (close). */
  clear(): void {
    this.#cache.clear();
    this.#cached = 0;
  }
}

/** Pages of a database of `pageCount` pages that hold data (every page but the lock page). */
export function* dataPages(pageSize: number, pageCount: number): Generator<number> {
  const lock = lockPageNumber(pageSize);
  for (let pgno = 1; pgno <= pageCount; pgno++) if (pgno !== lock) yield pgno;
}

function cacheKey(object: number, chunk: number): number {
  return object * 2 ** 32 + chunk;
}
