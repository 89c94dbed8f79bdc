import { PageHashes, loadFormat } from '@walship/format';
import type { RequestEvent } from '@walship/storage';
import { Database, loadSqlite, openPageDatabase, type DatabaseHandle, type DatabaseOptions } from '@walship/vfs';
import { abortedError, restoreError, storageFailure } from './errors.js';
import { bucketTip, isBehind, readMark, replicaBehind } from './mark.js';
import { bad, checkInteger, resolveSource, type ReplicaSource } from './options.js';
import { SyncFetcher } from './page-fetch.js';
import { planFromCatalog, validatePlanOptions, type PlanOptions, type RestorePlan } from './plan.js';
import { HeaderReader, missing, scanReplica, type KnownHeaders } from './replica.js';
import { DiskCache, type DiskCacheCounters } from './replica-disk-cache.js';
import { ReplicaFollower, type ReplicaFollowStatus } from './replica-follow.js';
import { Hydrator, type HydrationStatus } from './replica-hydrate.js';
import { ReplicaPages, buildView, dataPages, loadObjects } from './replica-pages.js';

export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
const MIN_CACHE_BYTES = 1024 * 1024;
export const DEFAULT_CACHE_DIR_BYTES = 1024 * 1024 * 1024;

export interface OpenReplicaOptions extends PlanOptions {
  /** Memory for verified, decoded chunks (default 64 MiB, at least 1 MiB). */
  cacheBytes?: number;
  /**
   * A directory for a disk cache of chunks as stored in S3 (created with mode 0700, files 0600),
   * kept across opens; a chunk read back is verified like one from S3. Default: no disk cache.
   */
  cacheDir?: string;
  /** With cacheDir: bytes the directory's chunk files may take (default 1 GiB, at least 1 MiB). */
  cacheDirBytes?: number;
  /**
   * With cacheDir: copy every chunk of the database's pages into the disk cache in the background
   * (4 GETs in flight), stopping when cacheDirBytes is reached. status().hydration. Default false.
   */
  hydrate?: boolean;
  /**
   * Keep the replica current: new objects are applied to the page index as they land (see
   * ReplicaFollower); each statement, and each explicit transaction, sees one state. Default false.
   */
  follow?: boolean;
  /** With follow: ms between polls (default 1000; each is one HEAD of the predicted next segment). */
  followIntervalMs?: number;
  /**
   * With follow: ms between polls for 5 s after the open and after each new state (default 50; 0:
   * always followIntervalMs), so a segment is seen about this long after it lands while the writer
   * ships. Costs up to 1000 / followActiveIntervalMs HEADs a second while it does.
   */
  followActiveIntervalMs?: number;
  /** With follow: a full listing (which finds new epochs and generations) every followProbeEvery x followIntervalMs (default 10). */
  followProbeEvery?: number;
}

export interface ReplicaStatus {
  location: string;
  generation: string;
  /** The state the database shows to new read transactions: after this txid. */
  txid: number;
  timestamp: number;
  pageSize: number;
  /** Database size in pages. */
  pageCount: number;
  /** Objects the page index was built from (the snapshot, then segments). */
  objects: number;
  /** Page reads SQLite made, and how many a cached chunk served. */
  reads: number;
  cacheHits: number;
  cacheMisses: number;
  evictions: number;
  /** Chunks opened into the buffer of an evicted chunk rather than a new one (a scan allocates little once the cache is full). */
  buffersReused: number;
  cacheBytes: number;
  /** Decoded chunk bytes in memory now (never above cacheBytes). */
  cachedBytes: number;
  /** GET requests (attempts, retries included) and bytes received: opening (listing, headers, indexes) and pages. */
  gets: number;
  bytes: number;
  /** Chunks fetched at least once out of the chunks holding the database's pages (hydration). */
  chunksFetched: number;
  chunksTotal: number;
  /** Where openReplica's time went (ms from its call): see OpenTimings. */
  openTimings: OpenTimings;
  /** Milliseconds statements spent waiting for page GETs since the open. */
  readWaitMs: number;
  /**
   * How the fetch thread reads: 'sigv4' (its own signed GETs: static credentials and an endpoint or
   * region were given), 'sdk' (the AWS SDK, slower to load: credentials from the environment or a
   * profile), null while it starts.
   */
  fetchClient: 'sigv4' | 'sdk' | null;
  /** With follow: the followed txid, lag, polls and the last error; null without. */
  follow: ReplicaFollowStatus | null;
  /** With cacheDir: hits (verified), rejected files, writes, evictions, bytes on disk; null without. */
  disk: (DiskCacheCounters & { dir: string; maxBytes: number }) | null;
  /** With hydrate: the background copy's progress; null without. */
  hydration: HydrationStatus | null;
}

/** Milliseconds from openReplica's call to the end of each step (steps run in this order). */
export interface OpenTimings {
  /** Epoch marker (when a mark is configured), LIST of the replica, generation and epoch files. */
  listed: number;
  /** The plan: headers of the chosen objects, the chain of checksums. */
  planned: number;
  /** The index of every planned object (head and tail GETs). */
  indexed: number;
  /** The chunk holding page 1 (the schema), fetched by the opening thread. */
  firstPage: number;
  /** SQLite's WASM loaded and the database opened (its schema read). */
  opened: number;
  /** When the fetch thread had loaded the S3 client and could serve reads (may be after `opened`). */
  fetchThreadReady: number | null;
}

interface ReplicaState {
  pages: ReplicaPages<RestorePlan>;
  disk: DiskCache | null;
  hydrator: Hydrator | null;
  follower: ReplicaFollower | null;
  fetcher: SyncFetcher;
  opening: { gets: number; bytes: number };
  cacheBytes: number;
  timings: Omit<OpenTimings, 'fetchThreadReady'>;
  /** performance.timeOrigin + performance.now() at openReplica's call. */
  startedAt: number;
}

/**
 * A read-only database opened straight from a replica: the query API of a walship database
 * (prepare/get/all/iterate/pragma/close), pages read on demand. See openReplica().
 */
export class ReplicaDatabase extends Database {
  readonly #state: ReplicaState;

  /** @internal Use openReplica(). */
  constructor(handle: DatabaseHandle, options: DatabaseOptions, state: ReplicaState) {
    super(handle, options);
    this.#state = state;
  }

  /** The txid whose state the database shows (to new read transactions, when followed). */
  get txid(): number {
    return this.#state.pages.view.meta.txid;
  }

  /**
   * With follow: checks for new objects now instead of at the next interval, and resolves when that
   * poll is done (a failure is in status().follow.lastError; the state shown stays the last good one).
   */
  async poll(): Promise<void> {
    const follower = this.#state.follower;
    if (follower === null) throw restoreError('ERR_INVALID_OPTION', 'poll() needs a replica opened with follow: true', { option: 'follow' });
    await follower.poll();
  }

  status(): ReplicaStatus {
    const { pages, fetcher, opening, follower } = this.#state;
    const plan = pages.view.meta;
    const c = pages.counters;
    return {
      location: plan.location,
      generation: plan.generation,
      txid: plan.txid,
      timestamp: plan.timestamp,
      pageSize: plan.pageSize,
      pageCount: plan.commitSize,
      objects: plan.objects.length,
      reads: c.reads,
      cacheHits: c.cacheHits,
      cacheMisses: c.cacheMisses,
      evictions: c.evictions,
      buffersReused: c.buffersReused,
      cacheBytes: this.#state.cacheBytes,
      cachedBytes: pages.cachedBytes,
      gets: opening.gets + fetcher.gets,
      bytes: opening.bytes + fetcher.bytes,
      chunksFetched: c.chunksFetched,
      chunksTotal: c.chunksTotal,
      openTimings: { ...this.#state.timings, fetchThreadReady: fetcher.readyAt > 0 ? round(fetcher.readyAt - this.#state.startedAt) : null },
      readWaitMs: round(fetcher.waitedMs),
      fetchClient: fetcher.lightClient === null ? null : fetcher.lightClient ? 'sigv4' : 'sdk',
      follow: follower?.status() ?? null,
      hydration: this.#state.hydrator?.status() ?? null,
      disk: this.#state.disk ? { ...this.#state.disk.counters, dir: this.#state.disk.dir, maxBytes: this.#state.disk.maxBytes } : null,
    };
  }

  /**
   * Reads every page (hydrating the whole database through the cache) and checks the rolling
   * checksum a full restore checks: the pages equal the state the writer recorded at this txid.
   * Throws ERR_VERIFY_FAILED otherwise. Page reads alone are authenticated chunk by chunk; this
   * also proves that the page index holds no stale or missing page.
   */
  verify(): { checksum: string; pages: number } {
    const { pages } = this.#state;
    const plan = pages.view.meta;
    const hashes = new PageHashes(plan.pageSize);
    const page = new Uint8Array(plan.pageSize);
    let n = 0;
    for (const pgno of dataPages(plan.pageSize, plan.commitSize)) {
      pages.readPage(pgno, page);
      hashes.set(pgno, page);
      n++;
    }
    const checksum = hashes.value.toString(16).padStart(16, '0');
    if (hashes.value !== plan.checksum) {
      const expected = plan.checksum.toString(16).padStart(16, '0');
      throw restoreError('ERR_VERIFY_FAILED', `${plan.location}: the replica's pages at txid ${plan.txid} hash to ${checksum}, the chain says ${expected}; do not trust this replica, run walship verify`, {
        txid: plan.txid,
        actual: checksum,
        expected,
      });
    }
    return { checksum, pages: n };
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

function validate(o: OpenReplicaOptions): ReturnType<typeof validatePlanOptions> {
  const stop = validatePlanOptions(o);
  if (o.storage !== undefined) bad('storage', 'is not supported by openReplica: pages are read by a worker thread that builds its own S3 client; pass `s3`', 'storage');
  if (o.s3?.client !== undefined) bad('s3.client', 'is not supported by openReplica: pages are read by a worker thread that builds its own S3 client from endpoint, region and credentials', 'client');
  checkInteger('cacheBytes', o.cacheBytes, MIN_CACHE_BYTES);
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir === '')) bad('cacheDir', 'must be the path of a directory', o.cacheDir);
  checkInteger('cacheDirBytes', o.cacheDirBytes, MIN_CACHE_BYTES);
  if (o.hydrate !== undefined && typeof o.hydrate !== 'boolean') bad('hydrate', 'must be a boolean', o.hydrate);
  if (o.hydrate === true && o.cacheDir === undefined) bad('hydrate', 'copies the replica into the disk cache: give cacheDir (and a cacheDirBytes that holds the database)', o.hydrate);
  if (o.follow !== undefined && typeof o.follow !== 'boolean') bad('follow', 'must be a boolean', o.follow);
  checkInteger('followIntervalMs', o.followIntervalMs, 10, 3_600_000);
  checkInteger('followActiveIntervalMs', o.followActiveIntervalMs, 0, 3_600_000);
  if (o.followActiveIntervalMs !== undefined && o.followActiveIntervalMs > 0 && o.followActiveIntervalMs < 10) bad('followActiveIntervalMs', 'must be 0 (off) or at least 10 ms', o.followActiveIntervalMs);
  checkInteger('followProbeEvery', o.followProbeEvery, 1, 1_000_000);
  if (o.follow === true && stop.kind !== 'latest') bad('follow', 'shows the latest state: it cannot be combined with txid or timestamp', o.follow);
  return stop;
}

/**
 * Opens a replica as a read-only database without downloading it: plans exactly as restore does
 * (generation, snapshot, segments, chain of checksums, epoch fencing, keys), reads the index of
 * every planned object, and builds a page index (page number -> object, chunk, record) from the
 * transactions a restore would apply. Each page SQLite reads is then served from a verified,
 * decrypted chunk fetched by a ranged GET and kept in a memory cache of `cacheBytes`. A damaged,
 * planted or foreign chunk is a typed error from the statement that read it, never a wrong row.
 */
export async function openReplica(options: OpenReplicaOptions): Promise<ReplicaDatabase> {
  const startedAt = performance.timeOrigin + performance.now();
  const at = (): number => round(performance.timeOrigin + performance.now() - startedAt);
  const stop = validate(options);
  const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  const concurrency = options.concurrency ?? 8;
  const signal = options.signal;
  const opening = { gets: 0, bytes: 0 };
  const userOnRequest = options.onRequest;
  const counted: ReplicaSource = {
    ...options,
    onRequest: (e: RequestEvent) => {
      if (e.operation === 'get' || e.operation === 'list' || e.operation === 'head') {
        opening.gets++;
        opening.bytes += e.bytes;
      }
      userOnRequest?.(e);
    },
  };
  const source = resolveSource(counted);
  // The fetch thread (it loads the AWS SDK) and SQLite's WASM start while the replica is planned.
  let fetcher: SyncFetcher | null = new SyncFetcher(options.s3 as NonNullable<ReplicaSource['s3']>, { location: source.storage.location });
  const sqlite = loadSqlite();
  sqlite.catch(() => undefined);
  let keepSource = false;
  try {
    await loadFormat();
    const mark = await readMark(options);
    const catalog = await scanReplica(source.storage, source.prefix, { signal, concurrency, keyring: source.keyring, originalPrefix: source.originalPrefix });
    const listed = at();
    // Headers read here are the follower's first known ones: its first plan GETs only new objects.
    const knownHeaders: KnownHeaders = new Map();
    const headers = new HeaderReader(source.storage, catalog.manifest, signal, knownHeaders);
    const plan = await planFromCatalog(catalog, { storage: source.storage, keyring: source.keyring, stop, generation: options.generation, concurrency, signal, headers });
    if (mark && isBehind(mark, { generation: plan.generation, txid: plan.txid })) {
      const latest = stop.kind === 'latest' && options.generation === undefined;
      const found = latest ? { generation: plan.generation, txid: plan.txid } : await bucketTip(catalog, headers);
      if (isBehind(mark, found)) throw replicaBehind(catalog.location, mark, found);
    }
    const planned = at();
    const objects = await loadObjects(source.storage, plan.objects, { keyring: source.keyring, concurrency, signal });
    if (signal?.aborted) throw abortedError(signal.reason);
    const indexed = at();
    const f = fetcher;
    const follow = options.follow === true;
    let disk: DiskCache | null = null;
    if (options.cacheDir !== undefined) {
      try {
        disk = new DiskCache(options.cacheDir, { maxBytes: options.cacheDirBytes ?? DEFAULT_CACHE_DIR_BYTES, location: source.storage.location });
      } catch (e) {
        throw restoreError('ERR_INVALID_OPTION', `cacheDir ${options.cacheDir} cannot be used (${(e as Error).message}); give a directory this process can create, read and write`, { option: 'cacheDir', path: options.cacheDir }, e);
      }
    }
    const pages = new ReplicaPages(buildView(objects, plan.objects, { commitSize: plan.commitSize, meta: plan }), { pageSize: plan.pageSize, fetcher: f, cacheBytes, changes: follow, disk });
    await pages.warm(1, async ({ key, etag }, start, end) => {
      let bytes: Uint8Array | null;
      try {
        bytes = await source.storage.get(key, { range: { start, end: end - 1 }, ...(signal ? { signal } : {}), ...(etag !== undefined ? { etag } : {}) });
      } catch (e) {
        throw storageFailure(e, `reading pages of ${key}`);
      }
      if (bytes === null) throw missing(source.storage, key);
      return bytes;
    });
    const firstPage = at();
    await sqlite;
    const timings = { listed, planned, indexed, firstPage, opened: 0 };
    const follower = follow
      ? new ReplicaFollower({
          source,
          pages,
          objects,
          knownHeaders,
          intervalMs: options.followIntervalMs ?? 1000,
          activeIntervalMs: options.followActiveIntervalMs ?? 50,
          probeEvery: options.followProbeEvery ?? 10,
          generation: options.generation,
          concurrency,
        })
      : null;
    const hydrator = options.hydrate === true && disk !== null ? new Hydrator(pages.view, { disk, storage: source.storage }) : null;
    const state: ReplicaState = { pages, disk, hydrator, follower, fetcher: f, opening, cacheBytes, timings, startedAt };
    const db = await openPageDatabase(pages, {
      construct: (handle, dbOptions) => new ReplicaDatabase(handle, dbOptions, state),
      onClose: () => {
        hydrator?.stop();
        follower?.stop();
        pages.clear();
        f.close();
        if (follower || hydrator) source.close();
      },
    });
    fetcher = null;
    timings.opened = at();
    // A followed replica keeps its storage client for the polls; it is closed with the database.
    if (follower || hydrator) keepSource = true;
    follower?.start();
    void hydrator?.run(4);
    return db;
  } catch (e) {
    if (signal?.aborted) throw abortedError(signal.reason);
    throw e;
  } finally {
    fetcher?.close();
    if (!keepSource) source.close();
  }
}
