// openReplica({ follow: true }): keeps a replica's page index current as the writer's objects land.
// Each update is a full plan of the latest state (the same listing, planner, chain, fencing and key
// checks as an open), whose new objects are read and verified before the state is staged; the page
// source switches to it when SQLite next starts a read transaction (ReplicaPages.stage).
import { segmentKey } from '@walship/format';
import { objectFailure, restoreError, storageFailure } from './errors.js';
import type { ResolvedSource } from './options.js';
import { planFromCatalog, type RestorePlan } from './plan.js';
import { HeaderReader, missing, scanReplica, type KnownHeaders } from './replica.js';
import { buildView, loadObjects, type ReplicaObject, type ReplicaPages } from './replica-pages.js';

/** Bytes one GET of a new segment's chunks may hold while they are verified. */
const VERIFY_PIECE_BYTES = 4 * 1024 * 1024;
/** How long after the open or a new state the follower polls every `activeIntervalMs` (as follow()). */
const ACTIVE_FOR_MS = 5000;

export interface ReplicaFollowStatus {
  state: 'following' | 'stopped';
  /** Generation and txid of the state new read transactions see. */
  generation: string;
  txid: number;
  /** A newer state, verified and waiting for the read transaction open now to end (null: none). */
  stagedTxid: number | null;
  /** Milliseconds from the commit of `txid` (the writer's clock) to now. */
  lagMs: number;
  polls: number;
  /** The current time between polls: `activeIntervalMs` for 5 s after the open or a new state, else `intervalMs`. */
  pollIntervalMs: number;
  /** States switched to since the open. */
  updates: number;
  lastPollAt: string | null;
  lastUpdateAt: string | null;
  /** The last failed poll (the state shown stays the last good one); null after a good poll. */
  lastError: { code: string; message: string; at: string } | null;
}

export interface ReplicaFollowerOptions {
  source: ResolvedSource;
  pages: ReplicaPages<RestorePlan>;
  /** The objects whose indexes are read, by key (those of the current state). */
  objects: ReplicaObject[];
  /** Headers the open read (the follower adds to it). */
  knownHeaders: KnownHeaders;
  intervalMs: number;
  /** Time between polls for 5 s after the open or a new state (0: always intervalMs). */
  activeIntervalMs: number;
  /** A full listing every probeEvery x intervalMs (by time) when the predicted next segment is not there (a new epoch or generation). */
  probeEvery: number;
  /** Follow this generation only (the open's `generation` option). */
  generation: string | undefined;
  concurrency: number;
}

export class ReplicaFollower {
  readonly #o: ReplicaFollowerOptions;
  readonly #abort = new AbortController();
  #objects: Map<string, ReplicaObject>;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  #polls = 0;
  #updates = 0;
  #lastPollAt: string | null = null;
  #lastUpdateAt: string | null = null;
  #lastError: ReplicaFollowStatus['lastError'] = null;
  /** When the open or the last new state was (performance.now()): the active pace runs for ACTIVE_FOR_MS after it. */
  #activeSince = performance.now();
  #lastListAt = performance.now();
  /** Headers of the objects planned so far: a full plan GETs only the headers of new objects. */
  readonly #knownHeaders: KnownHeaders;

  constructor(o: ReplicaFollowerOptions) {
    this.#o = o;
    this.#objects = new Map(o.objects.map((x) => [x.key, x]));
    this.#knownHeaders = o.knownHeaders;
    o.pages.onSwitch = () => {
      this.#updates++;
      this.#lastUpdateAt = new Date().toISOString();
    };
  }

  start(): void {
    this.#activeSince = this.#lastListAt = performance.now();
    this.#schedule();
  }

  /** `activeIntervalMs` for ACTIVE_FOR_MS after the open or a new state, `intervalMs` otherwise. */
  #interval(): number {
    const { activeIntervalMs, intervalMs } = this.#o;
    return activeIntervalMs > 0 && performance.now() - this.#activeSince < ACTIVE_FOR_MS ? Math.min(activeIntervalMs, intervalMs) : intervalMs;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort.abort();
  }

  status(): ReplicaFollowStatus {
    const plan = this.#o.pages.view.meta;
    return {
      state: this.#stopped ? 'stopped' : 'following',
      generation: plan.generation,
      txid: plan.txid,
      stagedTxid: this.#o.pages.staged?.meta.txid ?? null,
      lagMs: Math.max(0, Date.now() - plan.timestamp),
      polls: this.#polls,
      pollIntervalMs: this.#interval(),
      updates: this.#updates,
      lastPollAt: this.#lastPollAt,
      lastUpdateAt: this.#lastUpdateAt,
      lastError: this.#lastError,
    };
  }

  /** Polls now (after a poll in progress ends); resolves when done. A failure is in status().lastError. */
  async poll(): Promise<void> {
    while (this.#running) await this.#running;
    if (this.#stopped) return;
    this.#running = this.#tick(true).finally(() => {
      this.#running = null;
    });
    await this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const run = async (): Promise<void> => {
        while (this.#running) await this.#running;
        if (this.#stopped) return;
        this.#running = this.#tick(false).finally(() => {
          this.#running = null;
        });
        await this.#running;
      };
      void run().finally(() => this.#schedule());
    }, this.#interval());
    // A replica that is only followed must not keep the process alive.
    this.#timer.unref();
  }

  async #tick(force: boolean): Promise<void> {
    this.#polls++;
    this.#lastPollAt = new Date().toISOString();
    try {
      await this.#update(force);
      this.#lastError = null;
    } catch (e) {
      if (this.#stopped) return;
      const err = e instanceof Error ? e : new Error(String(e));
      this.#lastError = { code: (err as { code?: string }).code ?? 'ERR_UNKNOWN', message: err.message, at: new Date().toISOString() };
    }
  }

  /** The state the next plan must continue from: the staged one, else the current one. */
  #latest(): RestorePlan {
    return (this.#o.pages.staged ?? this.#o.pages.view).meta;
  }

  async #update(force: boolean): Promise<void> {
    const { source, pages } = this.#o;
    const signal = this.#abort.signal;
    const cur = this.#latest();
    // Full listings are paced by time, so the active pace does not multiply them.
    let replan = force || performance.now() - this.#lastListAt >= this.#o.probeEvery * this.#o.intervalMs - this.#o.intervalMs / 2;
    if (!replan) {
      // The cheap check: one HEAD of the key the writer's next segment will have.
      const last = cur.objects[cur.objects.length - 1];
      const key = segmentKey(source.prefix, { generation: cur.generation, level: 0, minTxid: cur.txid + 1, epoch: last?.epoch ?? 0 });
      try {
        replan = (await source.storage.head(key, { signal })) !== null;
      } catch (e) {
        throw storageFailure(e, `probing ${key}`);
      }
    }
    if (!replan) return;
    this.#lastListAt = performance.now();
    const catalog = await scanReplica(source.storage, source.prefix, { signal, concurrency: this.#o.concurrency, keyring: source.keyring, originalPrefix: source.originalPrefix });
    const headers = new HeaderReader(source.storage, catalog.manifest, signal, this.#knownHeaders);
    const plan = await planFromCatalog(catalog, {
      storage: source.storage,
      keyring: source.keyring,
      stop: { kind: 'latest' },
      generation: this.#o.generation,
      concurrency: this.#o.concurrency,
      signal,
      headers,
    });
    if (plan.generation === cur.generation && plan.txid === cur.txid && plan.checksum === cur.checksum) return;
    if (plan.generation < cur.generation || (plan.generation === cur.generation && plan.txid < cur.txid)) {
      throw restoreError(
        'ERR_REPLICA_BEHIND',
        `${source.storage.location}: the replica's latest state (txid ${plan.txid} of generation ${plan.generation}) is older than the one shown (txid ${cur.txid} of generation ${cur.generation}): objects were removed or rolled back. The replica keeps showing txid ${cur.txid}; open it again to take the older state`,
        { generation: plan.generation, txid: plan.txid, shownGeneration: cur.generation, shownTxid: cur.txid },
      );
    }
    const fresh = plan.objects.filter((o) => !this.#objects.has(o.key));
    const loaded = await loadObjects(source.storage, fresh, { keyring: source.keyring, concurrency: this.#o.concurrency, signal });
    // A new segment is read whole and every chunk verified before the state can be shown, so a
    // damaged one leaves the replica at its last good state; a new generation's snapshot is
    // verified chunk by chunk as it is read, as at open.
    for (let i = 0; i < fresh.length; i++) {
      if ((fresh[i] as RestorePlan['objects'][number]).kind === 'segment') await this.#verify(loaded[i] as ReplicaObject);
    }
    const objects = new Map<string, ReplicaObject>();
    for (const o of [...this.#objects.values(), ...loaded]) objects.set(o.key, o);
    const inPlan = plan.objects.map((o) => objects.get(o.key) as ReplicaObject);
    const view = buildView(inPlan, plan.objects, { commitSize: plan.commitSize, meta: plan });
    if (this.#stopped) return;
    this.#objects = new Map(inPlan.map((o) => [o.key, o]));
    // Only headers of objects still in the listing are kept.
    const listed = new Set(catalog.generations.flatMap((g) => [...g.snapshots, ...g.segments].map((e) => e.key)));
    for (const key of this.#knownHeaders.keys()) if (!listed.has(key)) this.#knownHeaders.delete(key);
    pages.stage(view);
    // The writer is shipping: poll at the active pace, its next segment is likely a window away.
    this.#activeSince = performance.now();
  }

  /** GETs every chunk of `object` (pieces of up to 4 MiB), verifies each and keeps it in the cache. */
  async #verify(object: ReplicaObject): Promise<void> {
    const { source, pages } = this.#o;
    const count = object.pages.chunkCount;
    for (let first = 0; first < count; ) {
      let last = first;
      const start = object.pages.chunkRange(first).start;
      while (last + 1 < count && object.pages.chunkRange(last + 1).end - start <= VERIFY_PIECE_BYTES) last++;
      const end = object.pages.chunkRange(last).end;
      let bytes: Uint8Array | null;
      try {
        bytes = await source.storage.get(object.key, { range: { start, end: end - 1 }, signal: this.#abort.signal, ...(object.etag !== undefined ? { etag: object.etag } : {}) });
      } catch (e) {
        throw storageFailure(e, `reading ${object.key}`);
      }
      if (bytes === null) throw missing(source.storage, object.key);
      for (let c = first; c <= last; c++) {
        const range = object.pages.chunkRange(c);
        let raw: Uint8Array;
        try {
          raw = object.pages.openChunk(c, bytes.subarray(range.start - start, range.end - start));
        } catch (e) {
          throw objectFailure(e, object.key, 'verifying the pages of');
        }
        pages.keep(object, c, raw);
      }
      first = last + 1;
    }
  }
}
