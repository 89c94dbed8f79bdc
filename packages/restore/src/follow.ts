import { constants as fsConstants, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import {
  decodeHeader,
  decodeObject,
  epochKey,
  formatGeneration,
  generationKey,
  hex64,
  logicalStreamBytes,
  loadFormat,
  parseGeneration,
  segmentKey,
  snapshotsPrefix,
  type Keyring,
  type ObjectHeader,
  type PageHashes,
  type TransactionEvent,
} from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { PAGES_PER_EVENT, PageFile, hashFile } from './apply.js';
import { objectFailure, restoreError, storageFailure } from './errors.js';
import { resolveSource } from './options.js';
import { planFromCatalog, type RestorePlan } from './plan.js';
import { acceptable, readEpochMarker, scanReplica, type ReplicaCatalog } from './replica.js';
import { buildDatabase, checkTarget, moveIntoPlace, removeScratch, scratchPath } from './restore.js';
import { DEFAULT_FILE_MODE, removeStaleScratch } from './scratch.js';
import { SpareCopy } from './follow-spare.js';
import { validateFollowOptions, type FollowHandle, type FollowOptions, type FollowState, type FollowStatus } from './follow-options.js';

export type { FollowApplyEvent, FollowHandle, FollowOptions, FollowState, FollowStatus } from './follow-options.js';

interface Tip {
  generation: string;
  databaseId: string;
  pageSize: number;
  txid: number;
  timestamp: number;
  checksum: bigint;
  commitSize: number;
  epochs: Map<number, number>;
  /** Highest epoch seen anywhere in the replica: a new writer takes the next one. */
  maxEpoch: number;
  hashes: PageHashes;
}

/**
 * Decoded page bytes one batch may hold. An object that would pass it is kept as its stored bytes
 * and decoded again while it is applied, and ends the batch: a few hundred KiB of zstd can stand
 * for gigabytes of pages.
 */
const BATCH_HOLD_BYTES = 16 * 1024 * 1024;

/** How long after an applied segment the follower polls every `activeIntervalMs`. */
const ACTIVE_FOR_MS = 5000;
const DEFAULT_ACTIVE_INTERVAL_MS = 50;

interface Fetched {
  key: string;
  header: ObjectHeader;
  /** Verified events, or null when they did not fit the batch's budget (then `bytes` is kept). */
  transactions: TransactionEvent[] | null;
  bytes: Uint8Array | null;
  /** Page bytes `transactions` holds. */
  held: number;
}

/**
 * Keeps a read replica file at `path` current. Starts with a restore to the latest state (or
 * keeps the file when it already is that state), then polls the predicted key of the next
 * segment with GET; applies whole verified segments to a copy of the file and renames the copy
 * into place, so every open of `path` sees the state after some committed transaction. Resolves
 * once the file is in place.
 */
export async function follow(options: FollowOptions): Promise<FollowHandle> {
  validateFollowOptions(options);
  await loadFormat();
  const follower = new Follower(options);
  await follower.start();
  return { stop: () => follower.stop(), status: () => follower.status() };
}

class Follower {
  readonly #o: FollowOptions;
  readonly #path: string;
  readonly #storage: ObjectStorage;
  readonly #prefix: string;
  readonly #keyring: Keyring | undefined;
  readonly #originalPrefix: string | undefined;
  readonly #closeSource: () => void;
  readonly #interval: number;
  readonly #activeInterval: number;
  readonly #probeEvery: number;
  readonly #rescanMs: number;
  readonly #maxBatch: number;
  readonly #concurrency: number;
  #state: FollowState = 'starting';
  #tip: Tip | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  /** performance.now() of the last applied segment, and of the last probe. */
  #appliedAt = -Infinity;
  #lastProbeAt = performance.now();
  #lastProgress = Date.now();
  #behind: number | null = null;
  #segmentsApplied = 0;
  #restores = 0;
  #lastPollAt: string | null = null;
  #lastApplyAt: string | null = null;
  #lastError: FollowStatus['lastError'] = null;
  #requests = { get: 0, head: 0, list: 0 };
  #needResync = false;
  #lastResyncAt = 0;
  /** A generation newer than the followed one whose snapshot had not landed at the last listing. */
  #pendingGeneration: string | null = null;
  /** The predicted next key when it last read short or failed its checksums, and since when. */
  #unsettled: { key: string; since: number; reads: number } | null = null;
  readonly #abort = new AbortController();
  /** The next batch's scratch file, copied ahead (see SpareCopy), and the state of the file it must copy. */
  readonly #spare: SpareCopy;
  #fileVersion = 0;

  constructor(o: FollowOptions) {
    this.#o = o;
    this.#path = resolve(o.path);
    this.#spare = new SpareCopy(this.#path, { mode: o.mode ?? DEFAULT_FILE_MODE });
    const source = resolveSource(o);
    this.#storage = source.storage;
    this.#prefix = source.prefix;
    this.#keyring = source.keyring;
    this.#originalPrefix = source.originalPrefix;
    this.#closeSource = source.close;
    this.#interval = o.intervalMs ?? 1000;
    this.#activeInterval = Math.min(o.activeIntervalMs ?? DEFAULT_ACTIVE_INTERVAL_MS, this.#interval);
    this.#probeEvery = o.probeEvery ?? 5;
    this.#rescanMs = o.rescanIntervalMs ?? 600_000;
    this.#maxBatch = o.maxBatch ?? 64;
    this.#concurrency = o.concurrency ?? 8;
  }

  async start(): Promise<void> {
    const signal = this.#o.signal;
    if (signal) {
      if (signal.aborted) throw restoreError('ERR_ABORTED', 'follow was aborted before it started', {}, signal.reason);
      signal.addEventListener('abort', () => void this.stop(), { once: true });
    }
    try {
      checkTarget(this.#path, true);
      await this.#resync(true);
    } catch (e) {
      this.#state = 'stopped';
      this.#closeSource();
      throw e;
    }
    this.#state = 'following';
    this.#spare.prepare(this.#fileVersion);
    // A follower started beside a writer that is shipping catches up at the active pace.
    this.#appliedAt = this.#lastProbeAt = performance.now();
    this.#schedule(this.#pollInterval());
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopping';
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort.abort();
    await this.#running?.catch(() => undefined);
    await this.#spare.close();
    this.#state = 'stopped';
    this.#closeSource();
  }

  status(): FollowStatus {
    const tip = this.#tip;
    const epoch = tip ? this.#epochFor(tip, tip.txid + 1) : null;
    return {
      state: this.#state,
      path: this.#path,
      location: this.#storage.location,
      generation: tip?.generation ?? null,
      epoch: epoch ?? null,
      txid: tip?.txid ?? 0,
      timestamp: tip?.timestamp ?? null,
      checksum: tip ? tip.checksum.toString(16).padStart(16, '0') : null,
      lagMs: tip ? Math.max(0, Date.now() - tip.timestamp) : null,
      behindTxids: this.#behind,
      segmentsApplied: this.#segmentsApplied,
      restores: this.#restores,
      lastPollAt: this.#lastPollAt,
      lastApplyAt: this.#lastApplyAt,
      lastError: this.#lastError,
      requests: { ...this.#requests },
      pollIntervalMs: this.#pollInterval(),
    };
  }

  /** `activeIntervalMs` for ACTIVE_FOR_MS after a segment was applied, `intervalMs` otherwise. */
  #pollInterval(): number {
    return this.#activeInterval > 0 && performance.now() - this.#appliedAt < ACTIVE_FOR_MS ? this.#activeInterval : this.#interval;
  }

  #schedule(ms: number): void {
    if (this.#state !== 'following') return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#tick().finally(() => {
        this.#running = null;
        this.#schedule(this.#pollInterval());
      });
    }, ms);
  }

  /** The epoch whose objects count for `txid`: the highest epoch started at or before it. */
  #epochFor(tip: Tip, txid: number): number | undefined {
    let best: number | undefined;
    for (const [e, start] of tip.epochs) if (start <= txid && (best === undefined || e > best)) best = e;
    return best;
  }

  async #tick(): Promise<void> {
    this.#lastPollAt = new Date().toISOString();
    try {
      // A damaged object that stays damaged must not turn every poll into a LIST, nor (at the
      // active pace) into a GET of the same object 20 times a second: only the resync repairs it.
      if (this.#needResync) {
        if (Date.now() - this.#lastResyncAt >= Math.max(5000, this.#interval * this.#probeEvery)) await this.#resync(false);
        return;
      }
      const applied = await this.#pollSegments();
      if (applied > 0) {
        this.#lastProgress = Date.now();
        this.#appliedAt = this.#lastProbeAt = performance.now();
        return;
      }
      // Probes are paced by time, not by polls: fast polls after a segment must not multiply them.
      const probeDue = performance.now() - this.#lastProbeAt >= this.#probeEvery * this.#interval - this.#interval / 2;
      if (probeDue) this.#lastProbeAt = performance.now();
      if (probeDue && (await this.#probe())) {
        await this.#resync(false);
        return;
      }
      if (this.#rescanMs > 0 && Date.now() - this.#lastProgress >= this.#rescanMs) {
        this.#lastProgress = Date.now();
        await this.#resync(false);
      }
    } catch (e) {
      if (this.#state !== 'following') return;
      const err = e instanceof Error ? e : new Error(String(e));
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN';
      this.#lastError = { code, message: err.message, at: new Date().toISOString() };
      // The object store failing is retried as it is; anything else (a broken chain, a damaged
      // object, a replica file that was changed or removed) is repaired from a fresh listing.
      if (!code.startsWith('ERR_STORAGE_') && code !== 'ERR_KEY_REQUIRED' && code !== 'ERR_UNKNOWN_KEY') this.#needResync = true;
      this.#o.onError?.(err);
    }
  }

  async #get(key: string): Promise<Uint8Array | null> {
    this.#requests.get++;
    try {
      return await this.#storage.get(key, { signal: this.#abort.signal });
    } catch (e) {
      throw storageFailure(e, `reading ${key}`);
    }
  }

  /** GETs the predicted next keys; applies what arrived, whole segments only, in one file swap. */
  async #pollSegments(): Promise<number> {
    const tip = this.#tip as Tip;
    const batch: Fetched[] = [];
    let txid = tip.txid;
    let checksum = tip.checksum;
    let held = 0;
    let full = false;
    while (batch.length < this.#maxBatch && !full) {
      const epoch = this.#epochFor(tip, txid + 1);
      if (epoch === undefined) break;
      const key = segmentKey(this.#prefix, { generation: tip.generation, level: 0, minTxid: txid + 1, epoch });
      const bytes = await this.#get(key);
      if (bytes === null) break;
      const fetched = await this.#decodeSettled(key, bytes, BATCH_HOLD_BYTES - held);
      if (fetched === null) break;
      const h = fetched.header;
      const problem =
        h.kind !== 'segment' || h.generation !== tip.generation || h.epoch !== epoch || h.minTxid !== txid + 1 || h.level !== 0
          ? 'its header does not match its key'
          : h.databaseId !== tip.databaseId
            ? `it belongs to database ${h.databaseId}, not ${tip.databaseId}`
            : h.pageSize !== tip.pageSize
              ? `its page size ${h.pageSize} is not the database's ${tip.pageSize}`
              : !acceptable(tip.epochs, h.epoch, h.minTxid, h.maxTxid)
                ? `epoch ${h.epoch} may not write txids ${h.minTxid}..${h.maxTxid}`
                : h.preChecksum !== checksum
                  ? `it expects checksum ${hex64(h.preChecksum)} before txid ${h.minTxid}, the replica file has ${hex64(checksum)}`
                  : null;
      if (problem !== null) {
        const code = h.databaseId !== tip.databaseId ? 'ERR_FOREIGN_OBJECT' : h.preChecksum !== checksum ? 'ERR_CHAIN_MISMATCH' : 'ERR_CORRUPT_OBJECT';
        throw restoreError(code, `${this.#storage.location}: ${key}: ${problem}; not applied`, { key, txid });
      }
      batch.push(fetched);
      txid = h.maxTxid;
      checksum = h.postChecksum;
      held += fetched.held;
      full = fetched.transactions === null;
    }
    if (batch.length === 0) return 0;
    this.#behind = batch.length === this.#maxBatch || full ? null : 0;
    await this.#applyBatch(batch);
    return batch.length;
  }

  /**
   * Decodes the predicted next object. One that reads short or fails its checksums may be caught
   * mid-write (object stores that are not atomic, a proxy that cut the body): it counts as not
   * there yet, and is read again on the next polls. Only when it stays that way for
   * max(2 s, 4 polls) and 3 reads is the error reported (and the follower lists again).
   */
  async #decodeSettled(key: string, bytes: Uint8Array, budget: number): Promise<Fetched | null> {
    try {
      const fetched = await this.#decode(key, bytes, budget);
      if (this.#unsettled?.key === key) this.#unsettled = null;
      return fetched;
    } catch (e) {
      const formatCode = (e as { details?: { formatCode?: unknown } }).details?.formatCode;
      if (formatCode !== 'ERR_TRUNCATED' && formatCode !== 'ERR_CHECKSUM_MISMATCH') throw e;
      const now = Date.now();
      if (this.#unsettled?.key !== key) this.#unsettled = { key, since: now, reads: 0 };
      const u = this.#unsettled;
      u.reads++;
      if (u.reads >= 3 && now - u.since >= Math.max(2000, 4 * this.#interval)) {
        this.#unsettled = null;
        throw e;
      }
      return null;
    }
  }

  /** Verifies an object to its end, keeping its events while they fit `budget` page bytes. */
  async #decode(key: string, bytes: Uint8Array, budget: number): Promise<Fetched> {
    let header: ObjectHeader | undefined;
    let transactions: TransactionEvent[] | null = [];
    let held = 0;
    let ended = false;
    try {
      // An object whose pages cannot fit is only verified now (its pages in one reused buffer).
      const reuseBuffers = logicalStreamBytes(decodeHeader(bytes, { name: key })) > budget;
      if (reuseBuffers) transactions = null;
      for await (const event of decodeObject(bytes, { name: key, maxPagesPerEvent: PAGES_PER_EVENT, reuseBuffers, ...(this.#keyring ? { keyring: this.#keyring } : {}) })) {
        if (event.type === 'header') header = event.header;
        else if (event.type === 'end') ended = true;
        else if (transactions !== null) {
          held += event.pages.length * (header as ObjectHeader).pageSize;
          if (held > budget) {
            transactions = null;
            held = 0;
          } else transactions.push(event);
        }
      }
    } catch (e) {
      throw objectFailure(e, key, 'decoding');
    }
    if (!header || !ended) throw restoreError('ERR_CORRUPT_OBJECT', `${key} ended before its trailer`, { key });
    return { key, header, transactions, bytes: transactions === null ? bytes : null, held };
  }

  /** A verified object's events again, decoded from its stored bytes while they are applied. */
  async *#events(f: Fetched): AsyncGenerator<TransactionEvent> {
    if (f.transactions !== null) {
      yield* f.transactions;
      return;
    }
    try {
      for await (const event of decodeObject(f.bytes as Uint8Array, { name: f.key, maxPagesPerEvent: PAGES_PER_EVENT, reuseBuffers: true, ...(this.#keyring ? { keyring: this.#keyring } : {}) })) {
        if (event.type === 'transaction') yield event;
      }
    } catch (e) {
      throw objectFailure(e, f.key, 'decoding');
    }
  }

  /**
   * Applies the verified segments to a copy of the file (the spare made after the last change, else
   * a copy made now) and renames it over the file.
   */
  async #applyBatch(batch: Fetched[]): Promise<void> {
    const tip = this.#tip as Tip;
    const spare = await this.#spare.take(this.#fileVersion);
    const scratch = spare ?? scratchPath(this.#path, 'follow');
    const fromTxid = tip.txid;
    let file: PageFile | null = null;
    let ok = false;
    try {
      // A reflink where the filesystem has them (btrfs, xfs), a kernel copy elsewhere.
      if (spare === null) copyFileSync(this.#path, scratch, fsConstants.COPYFILE_FICLONE);
      file = new PageFile(scratch, tip.pageSize, { create: false, hashes: tip.hashes, mode: this.#o.mode ?? DEFAULT_FILE_MODE });
      let txid = tip.txid;
      let commitSize = tip.commitSize;
      let timestamp = tip.timestamp;
      for (const f of batch) {
        for await (const t of this.#events(f)) {
          // A transaction split over several events (`more`) continues at the same txid.
          if (t.txid !== txid && t.txid !== txid + 1) throw restoreError('ERR_CHAIN_GAP', `${f.key}: txid ${t.txid} follows txid ${txid}`, { key: f.key, lastTxid: txid, nextTxid: t.txid });
          txid = t.txid;
          for (const p of t.pages) file.stagePage(p.pgno, p.data);
          if (t.more) continue;
          file.commit(t, f.key);
          commitSize = t.commitSize;
          timestamp = t.timestamp;
        }
      }
      file.finish(commitSize);
      file.close();
      file = null;
      if (this.#state !== 'following') return;
      moveIntoPlace(scratch, this.#path, { overwrite: true, keepWal: true });
      this.#fileVersion++;
      ok = true;
      tip.txid = txid;
      tip.checksum = tip.hashes.value;
      tip.commitSize = commitSize;
      tip.timestamp = timestamp;
      this.#segmentsApplied += batch.length;
      this.#lastApplyAt = new Date().toISOString();
      this.#o.onApply?.({ kind: 'segments', generation: tip.generation, fromTxid, txid, timestamp, keys: batch.map((f) => f.key), lagMs: Math.max(0, Date.now() - timestamp) });
    } finally {
      file?.close();
      if (!ok) {
        removeScratch(scratch);
        // The hashes may hold part of the batch: take them from the file, which did not change;
        // a file that cannot be read any more is rebuilt from the replica.
        try {
          tip.hashes = hashFile(this.#path, tip.pageSize).hashes;
        } catch {
          this.#needResync = true;
        }
      }
      if (this.#state === 'following') this.#spare.prepare(this.#fileVersion);
    }
  }

  /** Cheap checks for a new writer: an epoch marker after the newest known, or a new generation. */
  async #probe(): Promise<boolean> {
    const tip = this.#tip as Tip;
    if (this.#pendingGeneration !== null) {
      // A writer writes generation.json before its snapshot: wait for the snapshot with one small LIST.
      this.#requests.list++;
      try {
        for await (const found of this.#storage.list({ prefix: snapshotsPrefix(this.#prefix, this.#pendingGeneration), pageSize: 1, signal: this.#abort.signal })) {
          if (found) return true;
        }
      } catch (e) {
        throw storageFailure(e, `probing generation ${this.#pendingGeneration}`);
      }
    }
    const next = tip.maxEpoch + 1;
    const markerKey = epochKey(this.#prefix, tip.generation, next);
    this.#requests.get++;
    const marker = await readEpochMarker(
      this.#storage,
      { prefix: this.#prefix, key: markerKey, generation: tip.generation, epoch: next },
      { keyring: this.#keyring, originalPrefix: this.#originalPrefix, signal: this.#abort.signal },
    );
    // A marker without a MAC while keys are given is not one (scanReplica leaves it out too).
    if (marker !== null && marker !== 'unauthenticated') {
      tip.epochs.set(next, marker.startTxid);
      tip.maxEpoch = next;
      // Transactions this file has from an older epoch at or after the new epoch's start were
      // written by a writer that lost its lease: they are fenced out, so rebuild from the replica.
      return marker.startTxid <= tip.txid;
    }
    const own = parseGeneration(tip.generation);
    const candidates = [formatGeneration(next, 0)];
    if (own) candidates.push(formatGeneration(own.epoch, own.sequence + 1));
    for (const g of candidates) {
      this.#requests.head++;
      let found;
      try {
        found = await this.#storage.head(generationKey(this.#prefix, g), { signal: this.#abort.signal });
      } catch (e) {
        throw storageFailure(e, `probing generation ${g}`);
      }
      if (found) return true;
    }
    return false;
  }

  /**
   * LISTs the replica and plans the latest state. When it continues the file's state, only the
   * epochs are refreshed; otherwise the file is rebuilt by a full restore beside it and swapped in.
   */
  async #resync(initial: boolean): Promise<void> {
    this.#requests.list++;
    this.#lastResyncAt = Date.now();
    const catalog = await scanReplica(this.#storage, this.#prefix, {
      signal: this.#abort.signal,
      concurrency: this.#concurrency,
      keyring: this.#keyring,
      originalPrefix: this.#originalPrefix,
    });
    const plan = await planFromCatalog(catalog, { storage: this.#storage, keyring: this.#keyring, stop: { kind: 'latest' }, concurrency: this.#concurrency, signal: this.#abort.signal });
    const maxEpoch = maxEpochOf(catalog);
    const newest = catalog.generations[catalog.generations.length - 1]?.id ?? plan.generation;
    this.#pendingGeneration = newest > plan.generation ? newest : null;
    const tip = this.#tip;
    const epochs = new Map([...(catalog.generations.find((g) => g.id === plan.generation)?.epochs ?? new Map<number, { startTxid: number }>())].map(([e, m]) => [e, m.startTxid]));
    this.#needResync = false;
    // A new writer or generation (or a repair) was found: its next segments come at the active pace.
    if (!initial) this.#appliedAt = performance.now();
    if (tip && tip.generation === plan.generation && onChain(plan, tip.txid, tip.checksum)) {
      tip.epochs = epochs;
      tip.maxEpoch = maxEpoch;
      this.#behind = plan.txid - tip.txid;
      return;
    }
    if (initial && existsSync(this.#path)) {
      const disk = hashFile(this.#path, plan.pageSize);
      if (disk.checksum === plan.checksum && disk.size === plan.commitSize * plan.pageSize) {
        this.#tip = { ...tipOf(plan, epochs, maxEpoch), hashes: disk.hashes };
        this.#behind = 0;
        return;
      }
      if (!this.#o.overwrite) {
        throw restoreError(
          'ERR_TARGET_EXISTS',
          `${this.#path} exists and is not the replica's current state (txid ${plan.txid}); pass overwrite: true to replace it with a fresh restore`,
          { path: this.#path, txid: plan.txid },
        );
      }
    }
    mkdirSync(dirname(this.#path), { recursive: true });
    removeStaleScratch(dirname(this.#path), basename(this.#path));
    const scratch = scratchPath(this.#path, 'follow');
    try {
      await buildDatabase(plan, scratch, { storage: this.#storage, keyring: this.#keyring, concurrency: this.#concurrency, mode: this.#o.mode ?? DEFAULT_FILE_MODE, signal: this.#abort.signal });
      const hashes = hashFile(scratch, plan.pageSize).hashes;
      if (!initial && this.#state !== 'following') return;
      // At start the file being replaced may be any database, whose WAL must not survive it; later
      // the -wal and -shm beside the file are its readers'.
      moveIntoPlace(scratch, this.#path, { overwrite: true, keepWal: !initial });
      this.#fileVersion++;
      // At start, start() makes the first spare once the follower is running.
      if (!initial) this.#spare.prepare(this.#fileVersion);
      const fromTxid = tip?.txid ?? 0;
      this.#tip = { ...tipOf(plan, epochs, maxEpoch), hashes };
      this.#behind = 0;
      this.#restores++;
      this.#lastProgress = Date.now();
      this.#lastApplyAt = new Date().toISOString();
      this.#o.onApply?.({ kind: 'restore', generation: plan.generation, fromTxid, txid: plan.txid, timestamp: plan.timestamp, keys: plan.objects.map((o) => o.key), lagMs: Math.max(0, Date.now() - plan.timestamp) });
    } finally {
      removeScratch(scratch);
    }
  }
}

function tipOf(plan: RestorePlan, epochs: Map<number, number>, maxEpoch: number): Omit<Tip, 'hashes'> {
  return {
    generation: plan.generation,
    databaseId: plan.databaseId,
    pageSize: plan.pageSize,
    txid: plan.txid,
    timestamp: plan.timestamp,
    checksum: plan.checksum,
    commitSize: plan.commitSize,
    epochs,
    maxEpoch,
  };
}

function maxEpochOf(catalog: ReplicaCatalog): number {
  let max = 0;
  for (const g of catalog.generations) {
    max = Math.max(max, g.epoch);
    for (const e of g.epochs.keys()) max = Math.max(max, e);
  }
  return max;
}

/** Whether (txid, checksum) is a state the plan's chain passes through at an object boundary. */
function onChain(plan: RestorePlan, txid: number, checksum: bigint): boolean {
  return plan.objects.some((o) => o.applyThrough === txid && o.postChecksum === checksum) && txid <= plan.txid;
}
