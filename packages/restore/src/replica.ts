import {
  HEADER_SIZE,
  acceptable,
  databaseKey,
  decodeHeader,
  isFormatError,
  decodeTrailer,
  indexTailSize,
  loadFormat,
  parseGeneration,
  parseObjectKey,
  readIndex,
  verifyMarker,
  type Keyring,
  type ObjectHeader,
  type ObjectIndex,
  type ObjectTrailer,
} from '@walship/format';
import type { ObjectStorage } from '@walship/storage';

/** The fencing rule lives in @walship/format (part of the on-store contract). */
export { acceptable };
import { objectFailure, restoreError, storageFailure, type RestoreErrorCode } from './errors.js';

/** P/database.json as the shipper writes it (the fields restore uses). */
export interface DatabaseManifest {
  databaseId: string;
  pageSize: number;
  createdAt?: string;
  /** The writer had keys: every object is encrypted (restore without keys is refused). */
  encrypted: boolean;
  /** Its MAC verified under the keys given (false when no keys were given). */
  authenticated: boolean;
}

/** How markers are checked: with keys, every marker used must carry a MAC that verifies. */
export interface MarkerTrust {
  keyring?: Keyring | undefined;
  /** The prefix the replica was written under, when it was copied to another prefix since. */
  originalPrefix?: string | undefined;
}

/** One epoch-start marker: objects of `epoch` count for txids from startTxid up to the next epoch's start. */
export interface EpochInfo {
  epoch: number;
  startTxid: number;
  key: string;
  createdAt?: string;
  writer?: { host?: string; pid?: number };
}

/** A snapshot or segment as LIST and its key describe it; the header is read on demand. */
export interface ObjectEntry {
  key: string;
  kind: 'snapshot' | 'segment';
  generation: string;
  /** 0 for snapshots and writer segments; >= 1 for compacted segments. */
  level: number;
  minTxid: number;
  /** From the key for snapshots and compacted segments; a level-0 key has none (read the header). */
  keyMaxTxid: number | undefined;
  epoch: number;
  size: number;
  lastModified: Date | undefined;
  /** The listing's ETag, when the store gives one. */
  etag?: string;
}

export interface GenerationEntry {
  id: string;
  /** Epoch that created the generation (the first 8 hex digits of its id). */
  epoch: number;
  epochs: Map<number, EpochInfo>;
  /** Sorted by txid. */
  snapshots: ObjectEntry[];
  /** Sorted by minTxid, then level. */
  segments: ObjectEntry[];
  /** P/<generation>/generation.json exists. */
  hasMarker: boolean;
  /**
   * Epoch markers left out because keys were given and they carry no MAC (written before
   * authenticated markers, or planted): their epochs' objects are fenced out.
   */
  unauthenticated: string[];
}

export interface ReplicaCatalog {
  location: string;
  prefix: string;
  manifest: DatabaseManifest | null;
  /** Oldest first (generation ids sort by the epoch that created them, then sequence). */
  generations: GenerationEntry[];
  /** Keys under the prefix that walship does not write. */
  strangers: string[];
  objectCount: number;
}

const decoder = new TextDecoder();

/** Runs fn over items with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      if (signal?.aborted) throw signal.reason;
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const workers = Array.from({ length: Math.min(Math.max(1, limit), items.length) }, () => worker());
  const settled = await Promise.allSettled(workers);
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (rejected) throw rejected.reason;
  return out;
}

function listPrefix(prefix: string): string {
  return prefix === '' ? '' : `${prefix}/`;
}

/** Reads a small JSON object; null when missing. */
export async function getJson(storage: ObjectStorage, key: string, signal?: AbortSignal): Promise<unknown> {
  let bytes: Uint8Array | null;
  try {
    bytes = await storage.get(key, signal ? { signal } : {});
  } catch (e) {
    throw storageFailure(e, `reading ${key}`);
  }
  if (bytes === null) return null;
  try {
    return JSON.parse(decoder.decode(bytes)) as unknown;
  } catch (e) {
    throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${key} is not valid JSON; it was not written by walship or is damaged. Move it aside or restore it from a copy`, { key }, e);
  }
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/**
 * Checks a marker's MAC under the keys given: 'authenticated', 'unchecked' (no keys), or
 * 'unauthenticated' (keys given, no MAC). A MAC that does not verify, or names a key not given,
 * is an error (ERR_AUTHENTICATION_FAILED, ERR_UNKNOWN_KEY).
 */
function checkMarker(storage: ObjectStorage, prefix: string, key: string, m: Record<string, unknown>, trust: MarkerTrust): 'authenticated' | 'unchecked' | 'unauthenticated' {
  try {
    return verifyMarker(m, { prefix, key, keyring: trust.keyring, originalPrefix: trust.originalPrefix });
  } catch (e) {
    if (isFormatError(e, 'ERR_UNAUTHENTICATED')) return 'unauthenticated';
    if (isFormatError(e)) throw restoreError(e.code as RestoreErrorCode, `${storage.location}: ${e.message}`, { key, ...e.details }, e);
    throw e;
  }
}

/**
 * P/database.json, or null when missing. With keys it must carry a MAC that verifies: a missing or
 * unauthenticated manifest is ERR_UNAUTHENTICATED once the prefix holds anything, since it is what
 * pins the database id that every object must carry.
 */
export async function readManifest(storage: ObjectStorage, prefix: string, options: MarkerTrust & { signal?: AbortSignal | undefined } = {}): Promise<DatabaseManifest | null> {
  const key = databaseKey(prefix);
  const raw = await getJson(storage, key, options.signal);
  if (raw === null) return null;
  const m = record(raw);
  if (!m || typeof m['databaseId'] !== 'string' || !/^[0-9a-f]{32}$/.test(m['databaseId']) || typeof m['pageSize'] !== 'number') {
    throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${key} lacks a databaseId (32 hex digits) or pageSize; it was not written by walship or is damaged`, { key });
  }
  const trust = checkMarker(storage, prefix, key, m, options);
  if (trust === 'unauthenticated') throw unauthenticatedManifest(storage, key, 'carries no MAC');
  return {
    databaseId: m['databaseId'],
    pageSize: m['pageSize'],
    ...(typeof m['createdAt'] === 'string' ? { createdAt: m['createdAt'] } : {}),
    encrypted: m['encrypted'] === true,
    authenticated: trust === 'authenticated',
  };
}

function unauthenticatedManifest(storage: ObjectStorage, key: string, why: string): Error {
  return restoreError(
    'ERR_UNAUTHENTICATED',
    `${storage.location}: keys were given but ${key} ${why}. Either the replica was written by walship before authenticated markers (open the database once with the writer and its encryption keys: it seals database.json and starts an authenticated generation; history before it is then not restorable with keys), or someone with write access to the bucket planted or removed it. Nothing was restored`,
    { key },
  );
}

/** Reads and checks one epoch marker: its fields must agree with its key. */
export async function readEpochMarker(
  storage: ObjectStorage,
  where: { prefix: string; key: string; generation: string; epoch: number },
  options: MarkerTrust & { signal?: AbortSignal | undefined } = {},
): Promise<EpochInfo | 'unauthenticated' | null> {
  const { prefix, key, generation, epoch } = where;
  const raw = await getJson(storage, key, options.signal);
  if (raw === null) return null;
  const m = record(raw);
  const startTxid = m?.['startTxid'];
  if (!m || typeof startTxid !== 'number' || !Number.isSafeInteger(startTxid) || startTxid < 0 || m['epoch'] !== epoch || (m['generation'] !== undefined && m['generation'] !== generation)) {
    throw restoreError(
      'ERR_CORRUPT_OBJECT',
      `${storage.location}: epoch marker ${key} does not say { epoch: ${epoch}, generation: '${generation}', startTxid: <integer> }; it was not written by walship or is damaged. Without it the objects of epoch ${epoch} cannot be fenced`,
      { key },
    );
  }
  if (checkMarker(storage, prefix, key, m, options) === 'unauthenticated') return 'unauthenticated';
  const writer = record(m['writer']);
  return {
    epoch,
    startTxid,
    key,
    ...(typeof m['createdAt'] === 'string' ? { createdAt: m['createdAt'] } : {}),
    ...(writer ? { writer: { ...(typeof writer['host'] === 'string' ? { host: writer['host'] } : {}), ...(typeof writer['pid'] === 'number' ? { pid: writer['pid'] } : {}) } } : {}),
  };
}

/**
 * Lists the whole replica once (LIST pages through every key under the prefix) and reads the
 * database manifest and the epoch markers. Restore, ls, verify and status start here; follow
 * mode only at start and when the generation changes. Keys are sorted here: some stores (s3rver)
 * do not list in byte order.
 */
export async function scanReplica(
  storage: ObjectStorage,
  prefix: string,
  options: MarkerTrust & { signal?: AbortSignal | undefined; concurrency?: number } = {},
): Promise<ReplicaCatalog> {
  await loadFormat();
  const signal = options.signal;
  const generations = new Map<string, GenerationEntry>();
  const strangers: string[] = [];
  const epochKeys: { key: string; generation: string; epoch: number }[] = [];
  let objectCount = 0;
  const entry = (id: string): GenerationEntry => {
    let g = generations.get(id);
    if (!g) {
      g = { id, epoch: parseGeneration(id)?.epoch ?? 0, epochs: new Map(), snapshots: [], segments: [], hasMarker: false, unauthenticated: [] };
      generations.set(id, g);
    }
    return g;
  };
  try {
    for await (const info of storage.list({ prefix: listPrefix(prefix), ...(signal ? { signal } : {}) })) {
      objectCount++;
      const parsed = parseObjectKey(prefix, info.key);
      if (!parsed) {
        strangers.push(info.key);
        continue;
      }
      switch (parsed.kind) {
        case 'database':
          break;
        case 'generation':
          entry(parsed.generation).hasMarker = true;
          break;
        case 'epoch':
          entry(parsed.generation);
          epochKeys.push({ key: info.key, generation: parsed.generation, epoch: parsed.epoch });
          break;
        case 'snapshot':
          entry(parsed.generation).snapshots.push({
            key: info.key,
            kind: 'snapshot',
            generation: parsed.generation,
            level: 0,
            minTxid: parsed.txid,
            keyMaxTxid: parsed.txid,
            epoch: parsed.epoch,
            size: info.size,
            lastModified: info.lastModified,
            ...(info.etag !== undefined ? { etag: info.etag } : {}),
          });
          break;
        case 'segment':
          entry(parsed.generation).segments.push({
            key: info.key,
            kind: 'segment',
            generation: parsed.generation,
            level: parsed.level,
            minTxid: parsed.minTxid,
            keyMaxTxid: parsed.maxTxid,
            epoch: parsed.epoch,
            size: info.size,
            lastModified: info.lastModified,
            ...(info.etag !== undefined ? { etag: info.etag } : {}),
          });
          break;
      }
    }
  } catch (e) {
    throw storageFailure(e, `listing ${storage.location}`);
  }
  const trust = { keyring: options.keyring, originalPrefix: options.originalPrefix, signal };
  const manifest = await readManifest(storage, prefix, trust);
  if (manifest === null && options.keyring && generations.size > 0) throw unauthenticatedManifest(storage, databaseKey(prefix), 'is missing');
  const markers = await mapLimit(epochKeys, options.concurrency ?? 8, (k) => readEpochMarker(storage, { prefix, ...k }, trust), signal);
  markers.forEach((m, i) => {
    const k = epochKeys[i];
    if (!k || m === null) return;
    if (m === 'unauthenticated') generations.get(k.generation)?.unauthenticated.push(k.key);
    else generations.get(k.generation)?.epochs.set(m.epoch, m);
  });
  const sorted = [...generations.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const g of sorted) {
    g.snapshots.sort((a, b) => a.minTxid - b.minTxid || a.epoch - b.epoch);
    g.segments.sort((a, b) => a.minTxid - b.minTxid || a.level - b.level || a.epoch - b.epoch);
  }
  strangers.sort();
  return { location: storage.location, prefix, manifest, generations: sorted, strangers, objectCount };
}

/**
 * Reads object headers with ranged GETs and checks each against its key and the database
 * manifest, caching them: a plan reads each header at most once.
 */
/** Headers kept across plans (a follower's polls), by key. */
export type KnownHeaders = Map<string, { etag: string; size: number; header: ObjectHeader }>;

export class HeaderReader {
  readonly #storage: ObjectStorage;
  readonly #manifest: DatabaseManifest | null;
  readonly #signal: AbortSignal | undefined;
  readonly #headers = new Map<string, Promise<ObjectHeader>>();
  /** The database id objects must carry: the manifest's, else the first header read. */
  databaseId: string | null;
  /** Page size per generation: a writer starts a new generation when the page size changes. */
  readonly #pageSizes = new Map<string, number>();
  /** Ranged GETs made (for tests and cost accounting). */
  requests = 0;

  readonly #known: KnownHeaders | undefined;

  /**
   * `known`: headers read by earlier readers (a follower's polls). One is reused only for the same
   * key, size and listing ETag (objects are write-once; a replaced one has another ETag), and is
   * checked again against its key and this database; headers read here are added to it.
   */
  constructor(storage: ObjectStorage, manifest: DatabaseManifest | null, signal?: AbortSignal, known?: KnownHeaders) {
    this.#storage = storage;
    this.#manifest = manifest;
    this.#signal = signal;
    this.#known = known;
    this.databaseId = manifest?.databaseId ?? null;
  }

  header(entry: ObjectEntry): Promise<ObjectHeader> {
    let p = this.#headers.get(entry.key);
    if (!p) {
      const seen = entry.etag !== undefined ? this.#known?.get(entry.key) : undefined;
      if (seen && seen.etag === entry.etag && seen.size === entry.size) {
        p = Promise.resolve().then(() => {
          this.check(entry, seen.header);
          return seen.header;
        });
      } else {
        p = this.#read(entry);
        if (this.#known && entry.etag !== undefined) {
          const known = this.#known;
          const etag = entry.etag;
          p.then((header) => known.set(entry.key, { etag, size: entry.size, header }), () => undefined);
        }
      }
      this.#headers.set(entry.key, p);
      // A failed read is reported once, to whoever awaits it; do not let the cache hold a rejection unobserved.
      p.catch(() => undefined);
    }
    return p;
  }

  async #read(entry: ObjectEntry): Promise<ObjectHeader> {
    let bytes: Uint8Array | null;
    try {
      // An empty object has no byte range to ask for (S3 answers 416, s3rver drops the
      // connection): the listing's size already says it is truncated.
      if (entry.size === 0) bytes = new Uint8Array(0);
      else {
        this.requests++;
        bytes = await this.#storage.get(entry.key, { range: { start: 0, end: HEADER_SIZE - 1 }, ...(this.#signal ? { signal: this.#signal } : {}) });
      }
    } catch (e) {
      throw storageFailure(e, `reading the header of ${entry.key}`);
    }
    if (bytes === null) throw missing(this.#storage, entry.key);
    let header: ObjectHeader;
    try {
      header = decodeHeader(bytes, { name: entry.key, objectSize: entry.size });
    } catch (e) {
      throw objectFailure(e, entry.key, 'decoding the header of');
    }
    this.check(entry, header);
    return header;
  }

  /** The header must describe what its key says, and belong to this database. */
  check(entry: ObjectEntry, h: ObjectHeader): void {
    const key = entry.key;
    const problems: string[] = [];
    if (h.kind !== entry.kind) problems.push(`kind ${h.kind}, key says ${entry.kind}`);
    if (h.generation !== entry.generation) problems.push(`generation ${h.generation}, key says ${entry.generation}`);
    if (h.epoch !== entry.epoch) problems.push(`epoch ${h.epoch}, key says ${entry.epoch}`);
    if (h.level !== entry.level) problems.push(`level ${h.level}, key says ${entry.level}`);
    if (h.minTxid !== entry.minTxid) problems.push(`min txid ${h.minTxid}, key says ${entry.minTxid}`);
    if (entry.keyMaxTxid !== undefined && h.maxTxid !== entry.keyMaxTxid) problems.push(`max txid ${h.maxTxid}, key says ${entry.keyMaxTxid}`);
    if (problems.length > 0) {
      throw restoreError(
        'ERR_CORRUPT_OBJECT',
        `${this.#storage.location}: ${key}: the header does not match the key (${problems.join('; ')}); the object was renamed or planted. Do not apply it: move it out of the prefix`,
        { key, problems },
      );
    }
    if (this.databaseId === null) this.databaseId = h.databaseId;
    if (h.databaseId !== this.databaseId) {
      throw restoreError(
        'ERR_FOREIGN_OBJECT',
        `${this.#storage.location}: ${key} belongs to database ${h.databaseId}, not ${this.databaseId}${this.#manifest ? ' (database.json)' : ''}; two databases share this prefix. Move the foreign objects out, and give each database its own prefix`,
        { key, found: h.databaseId, expected: this.databaseId },
      );
    }
    const pageSize = this.#pageSizes.get(h.generation);
    if (pageSize === undefined) this.#pageSizes.set(h.generation, h.pageSize);
    else if (h.pageSize !== pageSize) {
      throw restoreError(
        'ERR_CORRUPT_OBJECT',
        `${this.#storage.location}: ${key} has page size ${h.pageSize}, but generation ${h.generation} has ${pageSize}; it does not belong to this generation. Move it out of the prefix`,
        { key, pageSize: h.pageSize, expected: pageSize },
      );
    }
  }
}

export function missing(storage: ObjectStorage, key: string): Error {
  return restoreError(
    'ERR_OBJECT_MISSING',
    `${storage.location}: ${key} was listed but is gone; retention or another process is deleting objects under this prefix. Run the restore again`,
    { key },
  );
}

/**
 * The index of an object from two ranged GETs (its header and its tail), without its body: the
 * per-transaction txids, timestamps, commit sizes and post-apply checksums.
 */
export async function readObjectIndex(
  storage: ObjectStorage,
  entry: ObjectEntry,
  keyring: Keyring | undefined,
  signal?: AbortSignal,
): Promise<{ header: ObjectHeader; trailer: ObjectTrailer; index: ObjectIndex }> {
  const key = entry.key;
  const get = async (start: number, end: number): Promise<Uint8Array> => {
    let bytes: Uint8Array | null;
    try {
      bytes = await storage.get(key, { range: { start, end }, ...(signal ? { signal } : {}) });
    } catch (e) {
      throw storageFailure(e, `reading the index of ${key}`);
    }
    if (bytes === null) throw missing(storage, key);
    return bytes;
  };
  if (entry.size < HEADER_SIZE) throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${key}: the object has ${entry.size} bytes, less than a header (${HEADER_SIZE})`, { key, size: entry.size });
  try {
    const head = await get(0, HEADER_SIZE - 1);
    let want = Math.min(entry.size, 64 * 1024);
    let tail = await get(entry.size - want, entry.size - 1);
    const needed = indexTailSize(decodeTrailer(tail, { name: key }));
    if (needed > entry.size) throw restoreError('ERR_CORRUPT_OBJECT', `${storage.location}: ${key}: its trailer says the index takes ${needed} bytes, but the object has ${entry.size}`, { key });
    if (needed > want) {
      want = needed;
      tail = await get(entry.size - want, entry.size - 1);
    }
    return await readIndex(head, tail, { name: key, objectSize: entry.size, ...(keyring ? { keyring } : {}) });
  } catch (e) {
    throw objectFailure(e, key, 'reading the index of');
  }
}
