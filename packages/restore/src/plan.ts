import type { Keyring, ObjectHeader, ObjectIndex } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { abortedError, restoreError } from './errors.js';
import { bad, checkInteger, resolveSource, validateSource, type ReplicaSource } from './options.js';
import { acceptableStart, explainEnd, walkChain, type ChainState, type PlannedObject, type Stop, type Usable } from './chain.js';
import { HeaderReader, acceptable, mapLimit, readObjectIndex, scanReplica, type GenerationEntry, type ObjectEntry, type ReplicaCatalog } from './replica.js';

export type { PlannedObject } from './chain.js';

export interface PlanOptions extends ReplicaSource {
  /** Restore the state right after this transaction. */
  txid?: number;
  /** Restore the state after the last transaction committed at or before this time (ms since the epoch, or a Date). */
  timestamp?: number | Date;
  /** Only consider this generation (16 hex digits); default: chosen by the rules in README.md. */
  generation?: string;
  /** Parallel header and index reads (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface RestorablePoint {
  txid: number;
  /** Commit time (ms); for a snapshot alone, the time it was taken. */
  timestamp: number;
}

export interface RestorePlan {
  location: string;
  prefix: string;
  databaseId: string;
  pageSize: number;
  generation: string;
  /** What was asked for. */
  target: { kind: 'latest' } | { kind: 'txid'; txid: number } | { kind: 'timestamp'; timestamp: number };
  /** The state the plan produces: after this txid. */
  txid: number;
  timestamp: number;
  commitSize: number;
  checksum: bigint;
  /** The snapshot first, then segments in txid order. */
  objects: PlannedObject[];
  /** Bytes to download. */
  bytes: number;
  /** Key ids the objects are encrypted with. */
  keyIds: string[];
  /** Objects of this generation left out by the fencing rule (written by a writer that lost its epoch). */
  fenced: string[];
}

/** Checks the target options; returns the target as a stop rule. */
export function validatePlanOptions(o: PlanOptions): Stop {
  validateSource(o);
  if (o.txid !== undefined && o.timestamp !== undefined) bad('txid', 'and timestamp are exclusive: restore to one or the other', 'both');
  checkInteger('txid', o.txid, 1);
  checkInteger('concurrency', o.concurrency, 1, 256);
  if (o.generation !== undefined && (typeof o.generation !== 'string' || !/^[0-9a-f]{16}$/.test(o.generation))) bad('generation', 'must be 16 lowercase hex digits', o.generation);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) bad('signal', 'must be an AbortSignal', typeof o.signal);
  if (o.txid !== undefined) return { kind: 'txid', txid: o.txid };
  if (o.timestamp !== undefined) {
    const ms = o.timestamp instanceof Date ? o.timestamp.getTime() : o.timestamp;
    if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) bad('timestamp', 'must be a Date or integer milliseconds since the epoch', o.timestamp);
    return { kind: 'timestamp', timestamp: ms };
  }
  return { kind: 'latest' };
}

/**
 * Computes what a restore would do, touching nothing: lists the replica, chooses the generation,
 * the snapshot and the segments, and proves the chain from their headers (and, where a segment
 * starts inside what is already applied or the target is inside a segment, its index). Throws
 * the typed error a restore would throw before it downloads anything.
 */
export async function plan(options: PlanOptions): Promise<RestorePlan> {
  const stop = validatePlanOptions(options);
  const source = resolveSource(options);
  try {
    const catalog = await scanReplica(source.storage, source.prefix, { signal: options.signal, concurrency: options.concurrency ?? 8, keyring: source.keyring, originalPrefix: source.originalPrefix });
    return await planFromCatalog(catalog, { storage: source.storage, keyring: source.keyring, stop, generation: options.generation, concurrency: options.concurrency ?? 8, signal: options.signal });
  } catch (e) {
    if (options.signal?.aborted) throw abortedError(options.signal.reason);
    throw e;
  } finally {
    source.close();
  }
}

export interface PlanContext {
  storage: ObjectStorage;
  keyring: Keyring | undefined;
  stop: Stop;
  generation?: string | undefined;
  concurrency: number;
  signal?: AbortSignal | undefined;
  /** Share header reads with a caller that already read some (ls, status). */
  headers?: HeaderReader;
}

/** The planning rules over a listed replica (follow mode and the CLI reuse the listing). */
export async function planFromCatalog(catalog: ReplicaCatalog, ctx: PlanContext): Promise<RestorePlan> {
  return new Planner(catalog, ctx).run();
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

class Planner {
  readonly #catalog: ReplicaCatalog;
  readonly #ctx: PlanContext;
  readonly #headers: HeaderReader;
  readonly #indexes = new Map<string, Promise<ObjectIndex>>();

  constructor(catalog: ReplicaCatalog, ctx: PlanContext) {
    this.#catalog = catalog;
    this.#ctx = ctx;
    this.#headers = ctx.headers ?? new HeaderReader(ctx.storage, catalog.manifest, ctx.signal);
  }

  get #where(): string {
    return this.#catalog.location;
  }

  #checkAbort(): void {
    if (this.#ctx.signal?.aborted) throw abortedError(this.#ctx.signal.reason);
  }

  async run(): Promise<RestorePlan> {
    const stop = this.#ctx.stop;
    this.#checkTrust();
    const candidates = this.#restorable();
    if (candidates.length === 0) throw this.#noReplica();
    let generation: GenerationEntry;
    if (stop.kind === 'txid') generation = await this.#generationForTxid(candidates, stop.txid);
    else if (stop.kind === 'timestamp') generation = await this.#generationForTimestamp(candidates, stop.timestamp);
    else generation = candidates[candidates.length - 1] as GenerationEntry;
    const result = await this.#chain(generation, stop);
    await this.#checkKeys(result.objects);
    return result;
  }

  /**
   * database.json says the writer encrypted: without keys nothing can be authenticated, and a
   * plaintext object would be a plant. With keys, markers without a MAC were left out (their
   * epochs fenced): if that leaves nothing restorable, say why rather than "no replica".
   */
  #checkTrust(): void {
    const manifest = this.#catalog.manifest;
    if (manifest?.encrypted && !this.#ctx.keyring) {
      throw restoreError(
        'ERR_KEY_REQUIRED',
        `${this.#where}: database.json says every object of this replica is encrypted, and no keys were given. Pass the keys with \`keys\` (CLI: WALSHIP_KEYS=id:base64,...)`,
        { location: this.#where },
      );
    }
    const generations = this.#catalog.generations;
    const firstTrusted = generations.find((g) => g.epochs.size > 0);
    // Markers without MACs older than every authenticated one are history from before the writer
    // had keys (left out); one beside or after authenticated history was planted.
    const untrusted = generations.filter((g) => g.unauthenticated.length > 0);
    const planted = untrusted.some((g) => firstTrusted !== undefined && g.id >= firstTrusted.id);
    if (this.#ctx.keyring && untrusted.length > 0 && (planted || this.#restorable().length === 0)) {
      const markers = untrusted.flatMap((g) => g.unauthenticated);
      throw restoreError(
        'ERR_UNAUTHENTICATED',
        `${this.#where}: keys were given but the epoch markers of generation ${untrusted.map((g) => g.id).join(', ')} carry no MAC (${markers.slice(0, 3).join(', ')}${markers.length > 3 ? ', ...' : ''}). They were written by walship before authenticated markers (open the database once with the writer and its keys: it starts an authenticated generation), or planted. Nothing was restored`,
        { location: this.#where, markers },
      );
    }
  }

  /** Generations with at least one snapshot that survives fencing, oldest first. */
  #restorable(): GenerationEntry[] {
    const wanted = this.#ctx.generation;
    return this.#catalog.generations.filter((g) => (wanted === undefined || g.id === wanted) && this.#snapshots(g).length > 0);
  }

  #snapshots(g: GenerationEntry): ObjectEntry[] {
    return g.snapshots.filter((s) => acceptable(g.epochs, s.epoch, s.minTxid, s.minTxid));
  }

  #noReplica(): Error {
    const c = this.#catalog;
    const wanted = this.#ctx.generation;
    if (wanted !== undefined) {
      const known = c.generations.map((g) => g.id);
      return restoreError(
        'ERR_NO_REPLICA',
        `${this.#where}: generation ${wanted} has no restorable snapshot${known.includes(wanted) ? '' : ' (it is not in the replica)'}; generations: ${known.join(', ') || 'none'}`,
        { location: this.#where, generation: wanted, generations: known },
      );
    }
    if (c.generations.length === 0) {
      return restoreError(
        'ERR_NO_REPLICA',
        `no walship replica at ${this.#where}: ${c.objectCount === 0 ? 'nothing is stored under this prefix' : `${c.objectCount} keys under the prefix, none of them a generation's object`}. Check the bucket and prefix`,
        { location: this.#where, keys: c.objectCount },
      );
    }
    return restoreError(
      'ERR_NO_REPLICA',
      `${this.#where} has generations (${c.generations.map((g) => g.id).join(', ')}) but none has a snapshot with a valid epoch marker; the first snapshot of a generation never landed or its epoch marker is missing`,
      { location: this.#where, generations: c.generations.map((g) => g.id) },
    );
  }

  /** The highest txid a generation's objects reach (a cheap bound: the chain is proven later). */
  async #tipBound(g: GenerationEntry): Promise<number> {
    let tip = Math.max(...this.#snapshots(g).map((s) => s.minTxid));
    for (const s of g.segments) {
      if (s.keyMaxTxid !== undefined && acceptable(g.epochs, s.epoch, s.minTxid, s.keyMaxTxid)) tip = Math.max(tip, s.keyMaxTxid);
    }
    // `>=`: the segment holding a checkpoint's marker starts at the txid of the snapshot taken there.
    const l0 = g.segments.filter((s) => s.level === 0 && s.minTxid >= tip && acceptableStart(g, s)).reverse();
    for (const s of l0) {
      const h = await this.#headers.header(s);
      if (acceptable(g.epochs, h.epoch, h.minTxid, h.maxTxid)) return Math.max(tip, h.maxTxid);
    }
    return tip;
  }

  async #generationForTxid(candidates: GenerationEntry[], txid: number): Promise<GenerationEntry> {
    const ranges: { generation: string; fromTxid: number; toTxid: number }[] = [];
    for (let i = candidates.length - 1; i >= 0; i--) {
      this.#checkAbort();
      const g = candidates[i] as GenerationEntry;
      const from = (this.#snapshots(g)[0] as ObjectEntry).minTxid;
      const to = await this.#tipBound(g);
      ranges.unshift({ generation: g.id, fromTxid: from, toTxid: to });
      if (from <= txid && txid <= to) return g;
    }
    throw restoreError(
      'ERR_TXID_NOT_FOUND',
      `${this.#where}: txid ${txid} is not restorable; restorable txids: ${ranges.map((r) => `${r.fromTxid}..${r.toTxid} (generation ${r.generation})`).join(', ')}`,
      { txid, ranges },
    );
  }

  async #generationForTimestamp(candidates: GenerationEntry[], timestamp: number): Promise<GenerationEntry> {
    let first: { generation: string; txid: number; timestamp: number } | null = null;
    for (let i = candidates.length - 1; i >= 0; i--) {
      this.#checkAbort();
      const g = candidates[i] as GenerationEntry;
      const snap = this.#snapshots(g)[0] as ObjectEntry;
      const at = await this.#snapshotTime(g, snap);
      first = { generation: g.id, txid: snap.minTxid, timestamp: at };
      if (at <= timestamp) return g;
    }
    const f = first as { generation: string; txid: number; timestamp: number };
    throw restoreError(
      'ERR_TIMESTAMP_BEFORE_FIRST',
      `${this.#where}: ${iso(timestamp)} is before the first restorable point (txid ${f.txid} at ${iso(f.timestamp)}, generation ${f.generation}); restore to that time or later`,
      { timestamp, first: f },
    );
  }

  /**
   * The earliest time a snapshot's state is known to hold. A snapshot header carries the time it
   * was taken, which is after its txid committed; the segment that starts at its txid (a
   * checkpoint's) or right after it bounds that commit time from above too, and more tightly.
   */
  async #snapshotTime(g: GenerationEntry, snap: ObjectEntry): Promise<number> {
    let at = (await this.#headers.header(snap)).lastTimestamp;
    for (const s of g.segments) {
      if (s.level !== 0 || (s.minTxid !== snap.minTxid && s.minTxid !== snap.minTxid + 1) || !acceptableStart(g, s)) continue;
      const h = await this.#headers.header(s);
      if (acceptable(g.epochs, h.epoch, h.minTxid, h.maxTxid)) at = Math.min(at, h.firstTimestamp);
    }
    return at;
  }

  #index(entry: ObjectEntry): Promise<ObjectIndex> {
    let p = this.#indexes.get(entry.key);
    if (!p) {
      p = readObjectIndex(this.#ctx.storage, entry, this.#ctx.keyring, this.#ctx.signal).then((r) => {
        this.#headers.check(entry, r.header);
        return r.index;
      });
      this.#indexes.set(entry.key, p);
      p.catch(() => undefined);
    }
    return p;
  }

  async #chain(g: GenerationEntry, stop: Stop): Promise<RestorePlan> {
    const snapshots = this.#snapshots(g);
    let base: ObjectEntry;
    let baseHeader: ObjectHeader;
    if (stop.kind === 'timestamp') {
      const times = await mapLimit(snapshots, this.#ctx.concurrency, (s) => this.#snapshotTime(g, s), this.#ctx.signal);
      let i = times.length - 1;
      while (i > 0 && (times[i] as number) > stop.timestamp) i--;
      base = snapshots[i] as ObjectEntry;
      baseHeader = await this.#headers.header(base);
    } else {
      const limit = stop.kind === 'txid' ? stop.txid : Infinity;
      base = [...snapshots].reverse().find((s) => s.minTxid <= limit) as ObjectEntry;
      baseHeader = await this.#headers.header(base);
    }
    const objects: PlannedObject[] = [
      {
        key: base.key,
        kind: 'snapshot',
        level: 0,
        epoch: base.epoch,
        minTxid: base.minTxid,
        maxTxid: base.minTxid,
        size: base.size,
        applyFrom: base.minTxid,
        applyThrough: base.minTxid,
        preChecksum: 0n,
        postChecksum: baseHeader.postChecksum,
        commitSize: baseHeader.commitSize,
        header: baseHeader,
      },
    ];
    const state: ChainState = { txid: base.minTxid, checksum: baseHeader.postChecksum, commitSize: baseHeader.commitSize, timestamp: await this.#snapshotTime(g, base), lastKey: base.key };

    const limit = stop.kind === 'txid' ? stop.txid : Infinity;
    // Writer segments never straddle a snapshot's txid, but the one holding a checkpoint's txid K
    // starts at K; the last level-0 segment starting at or before the snapshot covers that case.
    const before = g.segments.filter((s) => s.level === 0 && s.minTxid <= state.txid && acceptableStart(g, s));
    const lastBefore = before.length > 0 ? (before[before.length - 1] as ObjectEntry).minTxid : -1;
    const pool = g.segments.filter(
      (s) =>
        acceptableStart(g, s) &&
        s.minTxid <= limit &&
        (s.level === 0 ? s.minTxid > state.txid || s.minTxid === lastBefore : (s.keyMaxTxid as number) > state.txid),
    );
    const headers = await mapLimit(pool, this.#ctx.concurrency, (s) => this.#headers.header(s), this.#ctx.signal);
    const usable: Usable[] = [];
    const fenced: string[] = [];
    pool.forEach((entry, i) => {
      const header = headers[i] as ObjectHeader;
      if (acceptable(g.epochs, header.epoch, header.minTxid, header.maxTxid)) usable.push({ entry, header });
      else fenced.push(entry.key);
    });
    for (const s of g.segments) if (!acceptableStart(g, s) && s.minTxid > base.minTxid) fenced.push(s.key);
    for (const s of g.snapshots) if (!snapshots.includes(s)) fenced.push(s.key);

    const walk = await walkChain(state, usable, stop, { where: this.#where, index: (entry) => this.#index(entry), checkAbort: () => this.#checkAbort() });
    objects.push(...walk.segments);
    if (walk.ended === 'exhausted') explainEnd(g, { state, firstTxid: (snapshots[0] as ObjectEntry).minTxid, usable, unusable: walk.unusable, fenced, stop, where: this.#where });
    const { txid, timestamp, commitSize, checksum } = state;

    const databaseId = this.#headers.databaseId as string;
    const keyIds = [...new Set(objects.map((o) => o.header.keyId).filter((k): k is string => k !== null))];
    return {
      location: this.#where,
      prefix: this.#catalog.prefix,
      databaseId,
      pageSize: baseHeader.pageSize,
      generation: g.id,
      target: stop,
      txid,
      timestamp,
      commitSize,
      checksum,
      objects,
      bytes: objects.reduce((n, o) => n + o.size, 0),
      keyIds,
      fenced: [...new Set(fenced)].sort(),
    };
  }

  async #checkKeys(objects: PlannedObject[]): Promise<void> {
    const keyring = this.#ctx.keyring;
    for (const o of objects) {
      const id = o.header.keyId;
      if (id === null && keyring) {
        // Planted plaintext: whoever holds keys expects every object to be sealed under one.
        throw restoreError(
          'ERR_NOT_ENCRYPTED',
          `${this.#where}: ${o.key} is not encrypted but keys were given: it was written before encryption was enabled, or planted by someone who can write to the bucket. Nothing was restored`,
          { key: o.key },
        );
      }
      if (id === null) continue;
      if (!keyring) {
        throw restoreError(
          'ERR_KEY_REQUIRED',
          `${this.#where}: ${o.key} is encrypted with key id '${id}' and no keys were given. Pass the keys with \`keys\` (CLI: WALSHIP_KEYS=${id}:<base64>)`,
          { key: o.key, keyId: id },
        );
      }
      if (!keyring.has(id)) {
        throw restoreError(
          'ERR_UNKNOWN_KEY',
          `${this.#where}: ${o.key} is encrypted with key id '${id}', which is not among the keys given (${keyring.ids().join(', ')}). Add that key (old objects keep needing old keys)`,
          { key: o.key, keyId: id, known: keyring.ids() },
        );
      }
    }
  }
}
