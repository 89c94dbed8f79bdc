import { HEADER_SIZE, ObjectPages, decodeTrailer, indexTailSize, lockPageNumber, readIndex, type Keyring } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { WalshipError } from '@walship/vfs';
import type { PageSource } from '@walship/vfs';
import { changed, sameHeader } from './apply.js';
import { objectFailure, restoreError, storageFailure } from './errors.js';
import { missing, mapLimit } from './replica.js';
import type { PlannedObject } from './plan.js';
import type { FetchRange, SyncFetcher } from './page-fetch.js';
import type { DiskCache } from './replica-disk-cache.js';

/** Objects up to this size are read whole when their index is read: one GET instead of two. */
const SMALL_OBJECT = 64 * 1024;
/** Chunks one read-ahead batch may hold. */
const READ_AHEAD_CHUNKS = 8;
/** Evicted chunk buffers kept for reuse (a read-ahead batch is at most READ_AHEAD_CHUNKS). */
const SPARE_CHUNKS = READ_AHEAD_CHUNKS + 2;
/** Batches the fetch thread fetches ahead of a scan; with a batch at most cacheBytes / 8, they hold at most half of cacheBytes. */
const PREFETCH_BATCHES = 4;

export interface ReplicaObject {
  key: string;
  size: number;
  /** The ETag its index was read with: every later ranged GET must get the same version. */
  etag: string | undefined;
  pages: ObjectPages;
}

/**
 * Reads the index of every planned object (its head and tail: two ranged GETs, one for small
 * objects), checks that its header is the one the planner chained, and keeps it for page reads.
 */
function changedBetweenReads(storage: ObjectStorage, key: string, etags: (string | undefined)[]): Error {
  const distinct = [...new Set(etags)];
  return new WalshipError('ERR_STORAGE_OBJECT_CHANGED', `${storage.location}: ${key} was replaced while its index was read (ETags ${distinct.join(', ')}); open the replica again`, {
    details: { key, etags: distinct },
  });
}

export async function loadObjects(
  storage: ObjectStorage,
  planned: readonly PlannedObject[],
  options: { keyring: Keyring | undefined; concurrency: number; signal?: AbortSignal | undefined },
): Promise<ReplicaObject[]> {
  const get = async (key: string, start: number, end: number, version: { etag?: string; seen?: (string | undefined)[] }): Promise<Uint8Array> => {
    let bytes: Uint8Array | null;
    try {
      bytes = await storage.get(key, {
        range: { start, end: end - 1 },
        ...(options.signal ? { signal: options.signal } : {}),
        ...(version.etag !== undefined ? { etag: version.etag } : {}),
        onEtag: (etag) => version.seen?.push(etag),
      });
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
      const seen: (string | undefined)[] = [];
      const whole = small ? await get(o.key, 0, o.size, { seen }) : null;
      // The head and the tail in parallel; the tail sized for an index of 4 bytes per page the
      // object may hold (a snapshot of a 4 KiB-page database has a ~1 MiB index), so that it
      // usually takes one round trip instead of two.
      const guess = Math.min(o.size - HEADER_SIZE, Math.max(SMALL_OBJECT, SMALL_OBJECT + 4 * Math.ceil(o.size / Math.max(512, o.header.pageSize))));
      const [head, first] = whole ? [whole.subarray(0, HEADER_SIZE), whole] : await Promise.all([get(o.key, 0, HEADER_SIZE, { seen }), get(o.key, o.size - guess, o.size, { seen })]);
      // The head and the tail must be of one version of the object (it was not replaced between them).
      const etag = seen[0];
      if (seen.some((e) => e !== etag)) throw changedBetweenReads(storage, o.key, seen);
      let tail = first;
      try {
        const needed = indexTailSize(decodeTrailer(tail, { name: o.key }));
        if (needed > o.size) throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${o.key}: its trailer says the index takes ${needed} bytes, but the object has ${o.size}`, { key: o.key });
        if (needed > tail.length) tail = await get(o.key, o.size - needed, o.size, etag !== undefined ? { etag } : {});
        const parts = await readIndex(head, tail, { name: o.key, objectSize: o.size, ...(options.keyring ? { keyring: options.keyring } : {}) });
        if (!sameHeader(parts.header, o.header)) throw changed(o.key);
        return { key: o.key, size: o.size, etag, pages: new ObjectPages(head, parts, { name: o.key, ...(options.keyring ? { keyring: options.keyring } : {}) }) };
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
  /** Chunks opened into the buffer of an evicted one instead of a new buffer. */
  buffersReused: number;
  /** Distinct chunks fetched at least once, and the chunks the database's pages live in. */
  chunksFetched: number;
  chunksTotal: number;
}

/** Which object and page record hold each page of one state of the database. */
export interface PageView<Meta = unknown> {
  /** Database size in pages. */
  pageCount: number;
  objects: ReplicaObject[];
  /** Per page: 1 + the index in `objects`, or 0 (zeros). */
  objectOf: Uint32Array;
  /** Per page: the page record's position in its object's index. */
  positionOf: Uint32Array;
  /** Chunks the database's pages live in. */
  chunksTotal: number;
  /** What the owner keeps with the state (the plan). */
  meta: Meta;
}

/**
 * Builds the page index of the state after the planned transactions: page number -> (object, page
 * record), walking the transactions a restore would apply, in apply order.
 */
export function buildView<Meta>(objects: ReplicaObject[], planned: readonly PlannedObject[], options: { commitSize: number; meta: Meta }): PageView<Meta> {
  let max = 0;
  for (let o = 0; o < objects.length; o++) {
    const p = planned[o] as PlannedObject;
    for (const tx of (objects[o] as ReplicaObject).pages.index.transactions) if (tx.txid >= p.applyFrom && tx.txid <= p.applyThrough) max = Math.max(max, tx.commitSize);
  }
  const objectOf = new Uint32Array(max + 1);
  const positionOf = new Uint32Array(max + 1);
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
        objectOf[pgno] = o + 1;
        positionOf[pgno] = i;
      }
      // Pages beyond a shrunk database read as zeros, as in a restored file, if it grows again.
      if (tx.commitSize < size) objectOf.fill(0, tx.commitSize + 1, size + 1);
      size = tx.commitSize;
    }
  }
  if (size !== options.commitSize) {
    throw restoreError('ERR_CORRUPT_OBJECT', `the planned objects end with ${size} pages, the plan with ${options.commitSize}; the replica changed while it was opened. Open it again`, { size, commitSize: options.commitSize });
  }
  const used = new Set<number>();
  for (let pgno = 1; pgno <= size; pgno++) used.add(objectOf[pgno] as number);
  used.delete(0);
  let chunksTotal = 0;
  for (const o of used) chunksTotal += (objects[o - 1] as ReplicaObject).pages.chunkCount;
  return { pageCount: size, objects, objectOf, positionOf, chunksTotal, meta: options.meta };
}

/**
 * The replica's database file, page by page: a page index (PageView) and a memory cache of
 * verified, decoded chunks bounded by `cacheBytes`. A miss fetches the page's chunk by a ranged
 * GET; after a miss on the chunk following the previous miss (a sequential scan) it fetches a
 * batch of chunks and has the fetch thread start the next batch, so a scan keeps the store busy
 * while SQLite works.
 *
 * A followed replica stages newer views (stage()); a staged view becomes the current one only when
 * SQLite starts a read transaction (beginRead), never inside one.
 */
export class ReplicaPages<Meta = unknown> implements PageSource {
  readonly pageSize: number;
  /** Whether views are staged (a followed replica): SQLite then reads under its locks. */
  readonly changes: boolean;
  readonly counters: PageCounters;
  readonly #fetcher: SyncFetcher;
  readonly #disk: DiskCache | null;
  readonly #cacheBytes: number;
  readonly #cache = new Map<number, Uint8Array>();
  readonly #fetched = new Set<number>();
  /** A cache id per object key, so that chunks stay cached across views. */
  readonly #ids = new Map<string, number>();
  #view: PageView<Meta>;
  #staged: PageView<Meta> | null = null;
  #reading = false;
  #version = 1;
  #cached = 0;
  /** Cache key of the last chunk a miss fetched (null before the first). */
  #lastMiss: number | null = null;
  /**
   * The chunk the last read was served from: a scan reads every page of a chunk in a row (64 of
   * them in 256 KiB of 4 KiB pages), and those reads skip the cache's lookup and reordering (it is
   * the most recently used entry already). Holds at most one chunk beyond cacheBytes.
   */
  #recent: { object: ReplicaObject; chunk: number; raw: Uint8Array } | null = null;
  /**
   * Buffers of chunks this cache opened and then evicted, for the next chunks it opens: a scan of
   * 1 GiB opens 1 GiB of chunks, and a new buffer for each cost the scan GC and, on a VM, faulting
   * in fresh memory. Only buffers opened here (#owned) are reused: nobody else holds them.
   */
  readonly #spare: Uint8Array[] = [];
  readonly #owned = new WeakSet<Uint8Array>();
  /** Consecutive misses, each on the chunk after the previous one's last. */
  #streak = 0;
  /** Called when a staged view becomes the current one. */
  onSwitch: ((view: PageView<Meta>) => void) | null = null;

  constructor(view: PageView<Meta>, options: { pageSize: number; fetcher: SyncFetcher; cacheBytes: number; changes: boolean; disk?: DiskCache | null }) {
    this.pageSize = options.pageSize;
    this.#disk = options.disk ?? null;
    this.changes = options.changes;
    this.#fetcher = options.fetcher;
    this.#cacheBytes = options.cacheBytes;
    this.#view = view;
    this.counters = { reads: 0, cacheHits: 0, cacheMisses: 0, evictions: 0, buffersReused: 0, chunksFetched: 0, chunksTotal: view.chunksTotal };
  }

  get pageCount(): number {
    return this.#view.pageCount;
  }

  /** The view SQLite reads now. */
  get view(): PageView<Meta> {
    return this.#view;
  }

  /** A view staged for the next read transaction, if any. */
  get staged(): PageView<Meta> | null {
    return this.#staged;
  }

  get version(): number {
    return this.#version;
  }

  /** Makes `view` the current one at the start of the next read transaction (now, if none is open). */
  stage(view: PageView<Meta>): void {
    this.#staged = view;
    if (!this.#reading) this.#switch();
  }

  beginRead(): void {
    this.#reading = true;
    if (this.#staged !== null) this.#switch();
  }

  endRead(): void {
    this.#reading = false;
  }

  #switch(): void {
    const view = this.#staged as PageView<Meta>;
    this.#staged = null;
    this.#view = view;
    this.#version++;
    this.#lastMiss = null;
    this.#recent = null;
    this.#streak = 0;
    this.counters.chunksTotal = view.chunksTotal;
    this.onSwitch?.(view);
  }

  #id(object: ReplicaObject): number {
    let id = this.#ids.get(object.key);
    if (id === undefined) {
      id = this.#ids.size;
      this.#ids.set(object.key, id);
    }
    return id;
  }

  /** Puts verified raw chunk bytes of `object` in the cache (a followed replica's new segments). */
  keep(object: ReplicaObject, chunk: number, raw: Uint8Array): void {
    const key = cacheKey(this.#id(object), chunk);
    this.#insert(key, raw);
  }

  get cachedBytes(): number {
    return this.#cached;
  }

  readPage(pgno: number, out: Uint8Array): void {
    this.counters.reads++;
    const view = this.#view;
    const o = pgno <= view.pageCount ? (view.objectOf[pgno] ?? 0) : 0;
    if (o === 0) {
      // The lock page, or a page no transaction wrote within the database's size: zeros, as on disk.
      out.fill(0);
      return;
    }
    const object = view.objects[o - 1] as ReplicaObject;
    const location = object.pages.locate(view.positionOf[pgno] as number);
    const recent = this.#recent;
    let raw: Uint8Array | undefined;
    if (recent !== null && recent.object === object && recent.chunk === location.chunk) {
      this.counters.cacheHits++;
      raw = recent.raw;
    } else {
      const key = cacheKey(this.#id(object), location.chunk);
      raw = this.#cache.get(key);
      if (raw !== undefined) {
        this.counters.cacheHits++;
        this.#cache.delete(key);
        this.#cache.set(key, raw);
      } else {
        this.counters.cacheMisses++;
        raw = this.#miss(object, location.chunk);
      }
      this.#recent = { object, chunk: location.chunk, raw };
    }
    try {
      out.set(object.pages.page(raw, location, pgno));
    } catch (e) {
      throw objectFailure(e, object.key, 'reading pages of');
    }
  }

  /** Fetches the chunk (and, on a sequential scan, the chunks after it); returns its raw bytes. */
  #miss(object: ReplicaObject, chunk: number): Uint8Array {
    const o = this.#id(object);
    const fromDisk = this.#fromDisk(object, chunk);
    if (fromDisk !== null) return fromDisk;
    const follows = this.#lastMiss !== null && ((chunk > 0 && this.#lastMiss === cacheKey(o, chunk - 1)) || this.#lastMiss === cacheKey(o, chunk));
    this.#streak = follows ? this.#streak + 1 : 0;
    // Two misses in a row on consecutive chunks are a scan; one may be a B-tree lookup whose pages
    // happen to sit in neighbouring chunks (a batch there would fetch megabytes for one row).
    const sequential = this.#streak >= 2;
    const batch = sequential ? this.#batch(object, chunk) : [chunk];
    const last = batch[batch.length - 1] as number;
    this.#lastMiss = cacheKey(o, last);
    const start = object.pages.chunkRange(chunk).start;
    const end = object.pages.chunkRange(last).end;
    const etag = object.etag !== undefined ? { etag: object.etag } : {};
    const ranges: FetchRange[] = [{ key: object.key, start, end, at: 0, ...etag }];
    // The batches after this one, each its own GET, so that several are in flight while SQLite works.
    const prefetch: FetchRange[] = [];
    for (let after = last + 1, n = 0; sequential && n < PREFETCH_BATCHES && after < object.pages.chunkCount; n++) {
      const next = this.#batch(object, after);
      const until = next[next.length - 1] as number;
      prefetch.push({ key: object.key, start: object.pages.chunkRange(after).start, end: object.pages.chunkRange(until).end, at: 0, ...etag });
      after = until + 1;
    }
    const bytes = this.#fetcher.fetch(ranges, end - start, prefetch);
    let wanted: Uint8Array | undefined;
    for (const c of batch) {
      const range = object.pages.chunkRange(c);
      let raw: Uint8Array;
      try {
        raw = this.#open(object, c, bytes.subarray(range.start - start, range.end - start));
      } catch (e) {
        throw objectFailure(e, object.key, 'reading pages of');
      }
      this.#disk?.write(this.#disk.name(object, range.start, range.end), bytes.subarray(range.start - start, range.end - start));
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

  /**
   * The chunk from the disk cache, opened and verified exactly as a GET's bytes are; a file that
   * does not verify is removed (the chunk is then fetched from S3). Null when not there.
   */
  #fromDisk(object: ReplicaObject, chunk: number): Uint8Array | null {
    const disk = this.#disk;
    if (disk === null) return null;
    const range = object.pages.chunkRange(chunk);
    const name = disk.name(object, range.start, range.end);
    const stored = disk.read(name);
    if (stored === null) return null;
    let raw: Uint8Array;
    try {
      raw = this.#open(object, chunk, stored);
    } catch {
      disk.reject(name);
      return null;
    }
    disk.counters.hits++;
    const key = cacheKey(this.#id(object), chunk);
    if (!this.#fetched.has(key)) {
      this.#fetched.add(key);
      this.counters.chunksFetched++;
    }
    this.#lastMiss = key;
    this.#insert(key, raw);
    return raw;
  }

  /** Chunks from `chunk` on for one read-ahead batch: up to READ_AHEAD_CHUNKS, an eighth of the cache at most, at least one. */
  #batch(object: ReplicaObject, chunk: number): number[] {
    const pages = object.pages;
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
  async warm(pgno: number, get: (object: ReplicaObject, start: number, end: number) => Promise<Uint8Array>): Promise<void> {
    const view = this.#view;
    const o = pgno <= view.pageCount ? (view.objectOf[pgno] ?? 0) : 0;
    if (o === 0) return;
    const object = view.objects[o - 1] as ReplicaObject;
    const location = object.pages.locate(view.positionOf[pgno] as number);
    const bytes = await get(object, location.start, location.end);
    let raw: Uint8Array;
    try {
      raw = this.#open(object, location.chunk, bytes);
    } catch (e) {
      throw objectFailure(e, object.key, 'reading pages of');
    }
    const key = cacheKey(this.#id(object), location.chunk);
    if (!this.#fetched.has(key)) {
      this.#fetched.add(key);
      this.counters.chunksFetched++;
    }
    this.#insert(key, raw);
  }

  /** openChunk into a spare buffer of the chunk's raw length when there is one. */
  #open(object: ReplicaObject, chunk: number, bytes: Uint8Array): Uint8Array {
    const range = object.pages.chunkRange(chunk);
    const length = range.rawEnd - range.rawStart;
    const at = this.#spare.findIndex((b) => b.length === length);
    const into = at >= 0 ? (this.#spare.splice(at, 1)[0] as Uint8Array) : undefined;
    let raw: Uint8Array;
    try {
      raw = object.pages.openChunk(chunk, bytes, into);
    } catch (e) {
      if (into !== undefined) this.#spare.push(into);
      throw e;
    }
    if (raw === into) this.counters.buffersReused++;
    else if (into !== undefined) this.#spare.push(into);
    if (raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength) this.#owned.add(raw);
    return raw;
  }

  /** A buffer leaving the cache: kept for reuse when this cache made it (and the last read is not served from it). */
  #release(raw: Uint8Array): void {
    if (this.#recent !== null && this.#recent.raw === raw) this.#recent = null;
    if (this.#owned.has(raw) && this.#spare.length < SPARE_CHUNKS && !this.#spare.includes(raw)) this.#spare.push(raw);
  }

  #insert(key: number, raw: Uint8Array): void {
    if (raw.length > this.#cacheBytes) return;
    const old = this.#cache.get(key);
    if (old !== undefined) {
      this.#cache.delete(key);
      this.#cached -= old.length;
      if (old !== raw) this.#release(old);
    }
    while (this.#cached + raw.length > this.#cacheBytes) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      const evicted = this.#cache.get(oldest.value) as Uint8Array;
      this.#cached -= evicted.length;
      this.#cache.delete(oldest.value);
      this.counters.evictions++;
      this.#release(evicted);
    }
    this.#cache.set(key, raw);
    this.#cached += raw.length;
  }

  /** Empties the cache (close). */
  clear(): void {
    this.#recent = null;
    this.#spare.length = 0;
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
