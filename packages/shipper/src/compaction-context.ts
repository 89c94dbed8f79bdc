import type { ObjectStorage } from '@walship/storage';
import { HEADER_SIZE, decodeHeader, formatTxid, verifyMarker, type Compression, type KeyFormatter, type Keyring, type ObjectHeader } from '@walship/format';
import { acceptable, getJson, type EpochMarker } from './lineage.js';
import type { Logger } from './log.js';

// Compaction's options, the state maintenance keeps between passes, and the listing helpers that
// compaction and retention share (generations, epoch markers, snapshots, segments, headers).

const MiB = 1024 * 1024;

/**
 * Level-0 keys one compaction pass lists at most. A truncated listing is harmless: its last run
 * has no listed successor, so it counts as open and the next pass picks it up.
 */
export const COMPACTION_LIST_LIMIT = 5000;

export interface CompactionOptions {
  /** Level-0 segments whose first commit falls in one bucket of this many ms merge (default 10 minutes). */
  bucketMs?: number;
  /** A run closes before its inputs' pages pass this many bytes (default 64 MiB); bounds memory and object size. */
  maxInputBytes?: number;
  /** Runs with fewer level-0 inputs are left alone: merging one object saves no request (default 2). */
  minInputs?: number;
  /** Level-1 objects written per pass at most (default 32); the next pass goes on from there. */
  maxObjectsPerPass?: number;
  /**
   * Level-0 segments whose every transaction a verified level-1 object holds are deleted once that
   * object is this old (by its LIST time; default 5 minutes, 0 at once): a restore or follower that
   * planned with them just before the object landed can still read them.
   */
  level0RetentionMs?: number;
}

export type ResolvedCompaction = Required<CompactionOptions>;

export const COMPACTION_DEFAULTS: ResolvedCompaction = {
  bucketMs: 10 * 60_000,
  maxInputBytes: 64 * MiB,
  minInputs: 2,
  maxObjectsPerPass: 32,
  level0RetentionMs: 5 * 60_000,
};

export function resolveCompaction(o: CompactionOptions = {}): ResolvedCompaction {
  const r = { ...COMPACTION_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as ResolvedCompaction;
  for (const [name, value] of Object.entries(r)) {
    const min = name === 'level0RetentionMs' ? 0 : 1;
    if (!Number.isSafeInteger(value) || value < min) throw new Error(`compaction option ${name} must be an integer >= ${min} (got ${String(value)})`);
  }
  return r;
}

/**
 * What one process remembers between maintenance passes. Objects are immutable once written, so
 * what was read or verified stays true; everything here is an optimisation or log de-duplication,
 * and a new process (a fresh state) re-derives it from the bucket.
 */
export class MaintenanceState {
  /** Epoch-marker key -> start txid. */
  readonly epochStarts = new Map<string, number>();
  /** Object headers read by ranged GETs, pruned once compaction or retention is done with the object. */
  readonly headers = new Map<string, ObjectHeader>();
  /** Level-1 keys whose bytes were decoded and compared with their inputs by this process. */
  readonly verifiedCompacted = new Set<string>();
  /** Snapshots decoded in full and proven to continue the level-0 chain by this process. */
  readonly verifiedBases = new Set<string>();
  /** Generation -> txid through which compaction has decided (merged, or left at level 0 for a logged reason). */
  readonly decided = new Map<string, number>();
  /** Problems logged once per process: a permanent gap would otherwise warn on every pass. */
  readonly reported = new Set<string>();
}

export interface MaintenanceContext {
  storage: ObjectStorage;
  keys: KeyFormatter;
  keyring: Keyring | undefined;
  compression: Compression;
  log: Logger;
  state: MaintenanceState;
  signal?: AbortSignal | undefined;
  /** Told of objects deleted (by retention, a level-1 object compaction replaced, level-0 segments a level-1 object holds) as each delete succeeds: a pass cut short still counts what it deleted. */
  onDeleted?: ((count: number) => void) | undefined;
}

export interface SnapshotEntry {
  key: string;
  txid: number;
  epoch: number;
  accepted: boolean;
}

export interface SegmentEntry {
  key: string;
  level: number;
  minTxid: number;
  /** From the key; level-0 keys do not carry it. */
  maxTxid: number | undefined;
  epoch: number;
  size: number;
  /** When the store says the object was written (ms), if it says. */
  modified?: number | undefined;
}

/** One generation as maintenance sees it: the fencing epochs and the snapshots. */
export interface GenerationView {
  generation: string;
  epochs: Map<number, number>;
  snapshots: SnapshotEntry[];
}

export function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw Object.assign(new Error('maintenance stopped'), { name: 'AbortError', code: 'ERR_CLOSED' });
}

/** Generation ids in creation order: one LIST of one key per generation (skips its contents). */
export async function listGenerations(ctx: MaintenanceContext): Promise<string[]> {
  const root = ctx.keys.root();
  const out: string[] = [];
  let startAfter: string | undefined;
  for (;;) {
    checkAbort(ctx.signal);
    let next: string | undefined;
    for await (const o of ctx.storage.list({ prefix: root, pageSize: 1, ...(startAfter !== undefined ? { startAfter } : {}), ...signalOf(ctx) })) {
      next = o.key;
      break;
    }
    if (next === undefined) return out;
    const parsed = ctx.keys.parse(next);
    if (parsed && parsed.kind !== 'database') {
      out.push(parsed.generation);
      // '0' sorts after '/', so this skips every key of the generation.
      startAfter = `${root}${parsed.generation}0`;
    } else {
      startAfter = next;
    }
  }
}

function markerVerifies(marker: object, prefix: string, key: string, keyring: Keyring): boolean {
  try {
    return verifyMarker(marker as Record<string, unknown>, { prefix, key, keyring }) === 'authenticated';
  } catch {
    return false;
  }
}

/** The epoch markers and snapshots of a generation. */
export async function readGeneration(ctx: MaintenanceContext, generation: string): Promise<GenerationView> {
  const epochs = new Map<number, number>();
  for await (const o of ctx.storage.list({ prefix: ctx.keys.epochDir(generation), ...signalOf(ctx) })) {
    const parsed = ctx.keys.parse(o.key);
    if (parsed?.kind !== 'epoch') continue;
    let start = ctx.state.epochStarts.get(o.key);
    if (start === undefined) {
      const marker = await getJson<EpochMarker>(ctx.storage, o.key);
      if (!marker || !Number.isSafeInteger(marker.startTxid)) continue;
      // With keys, an epoch marker must carry a MAC that verifies: a planted one would let compaction
      // fold a fenced writer's objects into a level-1 object. Its epoch's objects then stay as they are.
      if (ctx.keyring && !markerVerifies(marker, ctx.keys.prefix, o.key, ctx.keyring)) continue;
      start = marker.startTxid;
      ctx.state.epochStarts.set(o.key, start);
    }
    epochs.set(parsed.epoch, start);
  }
  const snapshots: SnapshotEntry[] = [];
  for await (const o of ctx.storage.list({ prefix: ctx.keys.snapshotDir(generation), ...signalOf(ctx) })) {
    const parsed = ctx.keys.parse(o.key);
    if (parsed?.kind !== 'snapshot') continue;
    snapshots.push({ key: o.key, txid: parsed.txid, epoch: parsed.epoch, accepted: acceptable(epochs, parsed.epoch, parsed.txid, parsed.txid) });
  }
  snapshots.sort((a, b) => a.txid - b.txid || a.epoch - b.epoch);
  return { generation, epochs, snapshots };
}

/** Segments of one level in key (= min txid) order, from `fromTxid` on; stops after `throughTxid` or `limit` entries. */
export async function listSegments(ctx: MaintenanceContext, generation: string, level: number, fromTxid = 0, throughTxid = Infinity, limit = Infinity): Promise<SegmentEntry[]> {
  const dir = ctx.keys.levelDir(generation, level);
  // '/' sorts after '.' and '-', so this starts right after every key whose min txid is fromTxid - 1.
  const startAfter = fromTxid > 0 ? `${dir}${formatTxid(fromTxid - 1)}/` : undefined;
  const out: SegmentEntry[] = [];
  for await (const o of ctx.storage.list({ prefix: dir, ...(startAfter !== undefined ? { startAfter } : {}), ...signalOf(ctx) })) {
    const parsed = ctx.keys.parse(o.key);
    if (parsed?.kind !== 'segment' || parsed.generation !== generation || parsed.level !== level) continue;
    if (parsed.minTxid > throughTxid) break;
    out.push({ key: o.key, level, minTxid: parsed.minTxid, maxTxid: parsed.maxTxid, epoch: parsed.epoch, size: o.size, modified: o.lastModified?.getTime() });
    if (out.length >= limit) break;
  }
  return out;
}

/**
 * An object's header by a ranged GET (cached), or a reason it cannot be used: gone, or a header
 * that disagrees with its key (an object walship did not write there).
 */
export async function headerOf(ctx: MaintenanceContext, key: string): Promise<ObjectHeader | string> {
  const cached = ctx.state.headers.get(key);
  if (cached) return cached;
  checkAbort(ctx.signal);
  const bytes = await ctx.storage.get(key, { range: { start: 0, end: HEADER_SIZE - 1 }, ...signalOf(ctx) });
  if (bytes === null) return 'gone';
  let header: ObjectHeader;
  try {
    header = decodeHeader(bytes, { name: key });
  } catch (e) {
    return `unreadable header: ${(e as Error).message}`;
  }
  const parsed = ctx.keys.parse(key);
  const problem =
    !parsed || parsed.kind === 'database' || parsed.kind === 'generation' || parsed.kind === 'epoch'
      ? 'not an object key'
      : header.generation !== parsed.generation || header.epoch !== parsed.epoch
        ? `header says generation ${header.generation} epoch ${header.epoch}`
        : parsed.kind === 'snapshot'
          ? header.kind !== 'snapshot' || header.maxTxid !== parsed.txid
            ? `header says ${header.kind} at txid ${header.maxTxid}`
            : null
          : header.kind !== 'segment' || header.level !== parsed.level || header.minTxid !== parsed.minTxid || (parsed.maxTxid !== undefined && header.maxTxid !== parsed.maxTxid)
            ? `header says level-${header.level} ${header.kind} ${header.minTxid}..${header.maxTxid}`
            : null;
  if (problem) return `header disagrees with the key (${problem})`;
  ctx.state.headers.set(key, header);
  return header;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function signalOf(ctx: { signal?: AbortSignal | undefined }): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}

export function warnOnce(ctx: MaintenanceContext, id: string, msg: string, fields: Record<string, unknown>): void {
  if (ctx.state.reported.has(id)) {
    ctx.log.debug(msg, fields);
    return;
  }
  ctx.state.reported.add(id);
  ctx.log.warn(msg, fields);
}

