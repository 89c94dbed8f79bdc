import type { ObjectStorage } from '@walship/storage';
import { decodeObject, formatKeys, hex64, type Compression, type Keyring, type ObjectHeader } from '@walship/format';
import type { ResolvedOptions } from './options.js';
import type { ShipperMetrics } from './metrics.js';
import { acceptable } from './lineage.js';
import { Logger, type LogEntry, type LogLevel } from './log.js';
import {
  MaintenanceState,
  checkAbort,
  compactGeneration,
  headerOf,
  listGenerations,
  listSegments,
  mapLimit,
  readGeneration,
  resolveCompaction,
  warnOnce,
  type CompactionOptions,
  type CompactionResult,
  type GenerationView,
  type MaintenanceContext,
  type SegmentEntry,
  type SnapshotEntry,
} from './compaction.js';

export { MaintenanceState } from './compaction.js';
export type { CompactionOptions, CompactionResult } from './compaction.js';

// Retention keeps every point of [now - retentionMs, now] restorable to the exact txid and deletes
// what no such restore needs.
//
// The base is the newest accepted snapshot whose header timestamp (when it was taken, which is at
// or after the commit of its txid K) is at or before the cutoff, so the state at the cutoff is K or
// later. A restore to any txid >= K needs that snapshot and the level-0 segments after K; nothing
// below K. Before deleting, the pass proves the base usable: the snapshot decodes (its pages hash
// to its checksum) and its checksum is the level-0 chain's at K. Then it deletes snapshots below
// K, level-0 segments whose header ends at or below K, level-1 objects whose key ends at or below
// K, and whole older generations once the base exists and nothing in them is newer than the
// cutoff. It never deletes epoch markers (the fencing rule of what is kept needs them) nor keys
// walship did not write. If anything to be deleted is a level-0 segment with a commit after the
// cutoff (a clock that stepped back), it falls back to an older base.

export interface RetentionResult {
  cutoff: number;
  /** The snapshot every point of the window is restored from, or null (nothing deleted). */
  base: { key: string; txid: number; timestamp: number } | null;
  deleted: { key: string; reason: string }[];
  /** Objects below the base kept on purpose, with the reason. */
  kept: { key: string; reason: string }[];
  /** Why nothing was deleted, when that is the case. */
  reason: string | null;
}

export interface MaintenanceResult {
  generation: string | null;
  retention: RetentionResult | null;
  compaction: CompactionResult | null;
  /** A step that failed (the other still ran); the next pass tries again. */
  errors: string[];
}

export interface MaintenancePassOptions {
  storage: ObjectStorage;
  /** The database prefix (as in `s3.prefix`). */
  prefix: string;
  /** Keep every point this far back restorable; 0 keeps everything (compaction still runs). */
  retentionMs: number;
  /** Default Date.now(): tests pass a clock of their own. */
  now?: number;
  /** Default: the newest generation that has an accepted snapshot. */
  generation?: string;
  /** Needed for encrypted replicas: compaction decodes segments, retention decodes its base snapshot. */
  keyring?: Keyring;
  /** Of level-1 objects (default zstd). */
  compression?: Compression;
  /** false: retention only. */
  compaction?: CompactionOptions | false;
  logger?: (entry: LogEntry) => void;
  logLevel?: LogLevel;
  /** Carries what one process learnt between passes; default: a fresh one (a new process). */
  state?: MaintenanceState;
  signal?: AbortSignal;
  /** Told of objects deleted (retention's, a level-1 object compaction replaced, level-0 segments a level-1 object holds) as each delete succeeds. */
  onDeleted?: (count: number) => void;
}

/** One maintenance pass now: retention, then compaction above retention's base. */
export async function runMaintenancePass(o: MaintenancePassOptions): Promise<MaintenanceResult> {
  const log = new Logger({ sink: o.logger, level: o.logLevel, base: { database: o.storage.location, component: 'maintenance' } });
  return maintenancePass(contextOf(o, log), o, o.now ?? Date.now(), o.generation);
}

/** Retention alone, now. */
export async function runRetention(o: Omit<MaintenancePassOptions, 'compaction' | 'compression'>): Promise<RetentionResult | null> {
  return (await runMaintenancePass({ ...o, compaction: false })).retention;
}

function contextOf(o: MaintenancePassOptions, log: Logger): MaintenanceContext {
  return {
    storage: o.storage,
    keys: formatKeys(o.prefix),
    keyring: o.keyring,
    compression: o.compression ?? 'zstd',
    log,
    state: o.state ?? new MaintenanceState(),
    signal: o.signal,
    onDeleted: o.onDeleted,
  };
}

async function maintenancePass(ctx: MaintenanceContext, o: Pick<MaintenancePassOptions, 'retentionMs' | 'compaction'>, now: number, generation: string | undefined): Promise<MaintenanceResult> {
  const result: MaintenanceResult = { generation: null, retention: null, compaction: null, errors: [] };
  const compaction = o.compaction === false ? null : resolveCompaction(o.compaction);
  const view = generation !== undefined ? await readGeneration(ctx, generation) : await newestRestorable(ctx);
  if (!view) return result;
  result.generation = view.generation;
  ctx.log.with({ generation: view.generation });
  if (o.retentionMs > 0) {
    try {
      result.retention = await retention(ctx, view, now, o.retentionMs);
    } catch (e) {
      if (isAbort(e, ctx)) throw e;
      result.errors.push(`retention: ${(e as Error).message}`);
      ctx.log.warn('retention pass failed; nothing more is deleted until the next pass', { error: (e as Error).message });
    }
  }
  if (compaction) {
    const deleted = new Set(result.retention?.deleted.map((d) => d.key) ?? []);
    const remaining = { ...view, snapshots: view.snapshots.filter((s) => !deleted.has(s.key)) };
    const first = remaining.snapshots.find((s) => s.accepted);
    const floor = result.retention?.base?.txid ?? first?.txid;
    if (floor !== undefined) {
      try {
        result.compaction = await compactGeneration(ctx, remaining, floor, compaction);
      } catch (e) {
        if (isAbort(e, ctx)) throw e;
        result.errors.push(`compaction: ${(e as Error).message}`);
        ctx.log.warn('compaction pass failed; the next pass goes on', { error: (e as Error).message });
      }
    }
  }
  return result;
}

async function newestRestorable(ctx: MaintenanceContext): Promise<GenerationView | null> {
  const generations = await listGenerations(ctx);
  for (let i = generations.length - 1; i >= 0; i--) {
    const view = await readGeneration(ctx, generations[i] as string);
    if (view.snapshots.some((s) => s.accepted)) return view;
  }
  return null;
}

function isAbort(e: unknown, ctx: MaintenanceContext): boolean {
  return ctx.signal?.aborted === true || (e as Error)?.name === 'AbortError';
}

/** Level-0 keys one retention pass lists at most (a backlog is deleted over several passes). */
export const RETENTION_LIST_LIMIT = 50_000;

interface Doomed {
  key: string;
  reason: string;
}

async function retention(ctx: MaintenanceContext, view: GenerationView, now: number, retentionMs: number): Promise<RetentionResult> {
  const cutoff = now - retentionMs;
  const out: RetentionResult = { cutoff, base: null, deleted: [], kept: [], reason: null };
  const log = ctx.log;
  const gen = view.generation;
  const accepted = view.snapshots.filter((s) => s.accepted).reverse();
  let candidates: { entry: SnapshotEntry; header: ObjectHeader }[] = [];
  for (const s of accepted) {
    const h = await headerOf(ctx, s.key);
    if (typeof h === 'string') {
      warnOnce(ctx, `header:${s.key}`, 'retention cannot use a snapshot', { key: s.key, reason: h });
      continue;
    }
    if (h.lastTimestamp <= cutoff) candidates.push({ entry: s, header: h });
  }
  if (candidates.length === 0) {
    out.reason = `no accepted snapshot of generation ${gen} was taken at or before the cutoff ${iso(cutoff)}`;
    log.debug('retention deletes nothing', { reason: out.reason });
    return out;
  }
  const newestBase = (candidates[0] as { entry: SnapshotEntry }).entry.txid;
  // Level-0 segments up to the one holding newestBase + 1: the doomed ones and the base's successor.
  // A long backlog goes over several passes; a pass then only considers bases whose neighbourhood
  // it listed in full, so everything it deletes was checked against that base.
  const l0 = await listSegments(ctx, gen, 0, 0, newestBase + 1, RETENTION_LIST_LIMIT + 1);
  if (l0.length > RETENTION_LIST_LIMIT) {
    l0.length = RETENTION_LIST_LIMIT;
    const horizon = (l0[RETENTION_LIST_LIMIT - 1] as SegmentEntry).minTxid;
    candidates = candidates.filter((c) => c.entry.txid + 1 < horizon);
    log.info('retention works through a backlog over several passes', { listed: RETENTION_LIST_LIMIT, upToTxid: horizon - 1 });
    if (candidates.length === 0) {
      out.reason = `the oldest ${RETENTION_LIST_LIMIT} level-0 segments reach no snapshot taken before the cutoff; take snapshots more often (snapshotIntervalMs)`;
      warnOnce(ctx, `backlog:${gen}`, 'retention deletes nothing', { reason: out.reason });
      return out;
    }
  }
  const l1 = await listSegments(ctx, gen, 1);

  let plan: { base: (typeof candidates)[number]; doomed: Doomed[]; kept: Doomed[] } | null = null;
  for (const candidate of candidates) {
    checkAbort(ctx.signal);
    const attempt = await planBelow(ctx, view, candidate, l0, l1, cutoff);
    if (typeof attempt === 'string') {
      warnOnce(ctx, `base:${candidate.entry.key}:${attempt}`, 'retention cannot use a snapshot as its base; trying an older one', { key: candidate.entry.key, txid: candidate.entry.txid, reason: attempt });
      continue;
    }
    plan = { base: candidate, ...attempt };
    break;
  }
  if (!plan) {
    out.reason = 'no snapshot at or before the cutoff could be proven to restore the window; nothing deleted';
    log.warn('retention deletes nothing', { reason: out.reason, cutoff: iso(cutoff) });
    return out;
  }
  const base = plan.base;
  out.base = { key: base.entry.key, txid: base.entry.txid, timestamp: base.header.lastTimestamp };
  out.kept.push(...plan.kept);

  const older = await olderGenerations(ctx, gen, cutoff);
  out.kept.push(...older.kept);
  // Below-base snapshots first (oldest first), then the segments below the base, then older
  // generations. A pass cut short (close() aborts it, a delete fails) so never leaves a snapshot
  // whose level-0 chain to the tip has a hole: what is left below the base is either a snapshot
  // that still restores every txid after it, or segments no snapshot starts, which no restore picks
  // and the next pass deletes.
  const groups = [plan.doomed.filter((d) => d.key.endsWith('.snap')), plan.doomed.filter((d) => !d.key.endsWith('.snap')), ...older.groups];
  for (const group of groups) {
    if (group.length === 0) continue;
    checkAbort(ctx.signal);
    await ctx.storage.delete(
      group.map((d) => d.key),
      ctx.signal ? { signal: ctx.signal } : {},
    );
    ctx.onDeleted?.(group.length);
    for (const d of group) {
      ctx.state.headers.delete(d.key);
      log.debug('retention deleted an object', { key: d.key, reason: d.reason });
    }
    out.deleted.push(...group);
  }
  const counts: Record<string, number> = {};
  for (const d of out.deleted) {
    const kind = d.reason.split(':')[0] as string;
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  if (out.deleted.length > 0) {
    log.info('retention deleted objects no restore inside the window needs', {
      count: out.deleted.length,
      byReason: counts,
      cutoff: iso(cutoff),
      baseSnapshot: base.entry.key,
      baseTxid: base.entry.txid,
      baseTakenAt: iso(base.header.lastTimestamp),
    });
  }
  for (const k of out.kept) warnOnce(ctx, `kept:${k.key}`, 'retention keeps an object below its base', k);
  return out;
}

/**
 * What can go once `candidate` is the base, or why it cannot be the base. Proves the snapshot
 * (decoded in full once per process) and its link to the level-0 chain first.
 */
async function planBelow(
  ctx: MaintenanceContext,
  view: GenerationView,
  candidate: { entry: SnapshotEntry; header: ObjectHeader },
  l0: readonly SegmentEntry[],
  l1: readonly SegmentEntry[],
  cutoff: number,
): Promise<{ doomed: Doomed[]; kept: Doomed[] } | string> {
  const k = candidate.entry.txid;
  const doomed: Doomed[] = [];
  const kept: Doomed[] = [];
  for (const s of view.snapshots) {
    if (s.txid < k) doomed.push({ key: s.key, reason: `snapshot: txid ${s.txid} is below the base snapshot's ${k}` });
  }
  const around = l0.filter((s) => s.minTxid <= k + 1);
  const headers = await mapLimit(around, 8, (s) => headerOf(ctx, s.key));
  let successor: { entry: SegmentEntry; header: ObjectHeader } | null = null;
  for (let i = 0; i < around.length; i++) {
    const s = around[i] as SegmentEntry;
    const h = headers[i] as ObjectHeader | string;
    if (typeof h === 'string') {
      if (s.minTxid < k) kept.push({ key: s.key, reason: `level-0 below the base, kept: ${h}` });
      continue;
    }
    const ok = acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid);
    if (ok && h.minTxid <= k + 1 && h.maxTxid >= k + 1) successor = { entry: s, header: h };
    if (s.minTxid >= k) continue;
    if (h.maxTxid > k) {
      kept.push({ key: s.key, reason: `level-0 ${h.minTxid}..${h.maxTxid} reaches past the base txid ${k}` });
      continue;
    }
    if (ok && h.lastTimestamp > cutoff) return `level-0 ${s.key} below txid ${k} has a commit at ${iso(h.lastTimestamp)}, after the cutoff ${iso(cutoff)} (the clock stepped back?)`;
    doomed.push({ key: s.key, reason: `level-0: txids ${h.minTxid}..${h.maxTxid} end at or below the base txid ${k}${ok ? '' : ' (rejected by the fencing rule)'}` });
  }
  for (const s of l1) {
    if ((s.maxTxid as number) <= k) doomed.push({ key: s.key, reason: `level-1: txids ${s.minTxid}..${s.maxTxid} end at or below the base txid ${k}` });
  }
  // Proven even when nothing below it goes: deleting older generations relies on it too.
  const proof = await proveBase(ctx, candidate, successor);
  return proof ?? { doomed, kept };
}

/**
 * Decodes an object to its end without holding its pages (a snapshot can be the whole database; an
 * object planted in the bucket can decode to far more than its size): its header and the
 * post-apply checksum of `txid`, if it holds that transaction.
 */
async function checksumAt(bytes: Uint8Array, options: { keyring?: Keyring; name: string }, txid: number): Promise<{ header: ObjectHeader; at: bigint | undefined }> {
  let at: bigint | undefined;
  for await (const event of decodeObject(bytes, { ...options, maxPagesPerEvent: 256, reuseBuffers: true })) {
    if (event.type === 'transaction' && event.txid === txid) at = event.postChecksum;
    else if (event.type === 'end') return { header: event.header, at };
  }
  throw new Error('the object ended before its trailer');
}

/** Null when the snapshot decodes and continues the level-0 chain; otherwise what is wrong. */
async function proveBase(
  ctx: MaintenanceContext,
  candidate: { entry: SnapshotEntry; header: ObjectHeader },
  successor: { entry: SegmentEntry; header: ObjectHeader } | null,
): Promise<string | null> {
  const key = candidate.entry.key;
  const k = candidate.entry.txid;
  const post = candidate.header.postChecksum;
  const proofId = `${key}>${successor?.entry.key ?? ''}`;
  if (ctx.state.verifiedBases.has(proofId)) return null;
  const options = { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: key };
  if (!ctx.state.verifiedBases.has(key)) {
    const bytes = await ctx.storage.get(key, ctx.signal ? { signal: ctx.signal } : {});
    if (bytes === null) return 'the snapshot is gone';
    try {
      // The decoder recomputes a snapshot's checksum from its pages and checks every chunk.
      const decoded = await checksumAt(bytes, options, k);
      if (decoded.header.postChecksum !== post) return 'the snapshot changed since its header was read';
    } catch (e) {
      return `the snapshot does not decode: ${(e as Error).message}`;
    }
    ctx.state.verifiedBases.add(key);
  }
  if (successor) {
    const h = successor.header;
    if (h.minTxid === k + 1) {
      if (h.preChecksum !== post) return `${successor.entry.key} expects checksum ${hex64(h.preChecksum)} before txid ${k + 1}, the snapshot has ${hex64(post)}`;
    } else {
      const bytes = await ctx.storage.get(successor.entry.key, ctx.signal ? { signal: ctx.signal } : {});
      if (bytes === null) return `${successor.entry.key} is gone`;
      let at: bigint | undefined;
      try {
        at = (await checksumAt(bytes, { ...options, name: successor.entry.key }, k)).at;
      } catch (e) {
        return `${successor.entry.key}, which continues the snapshot, does not decode: ${(e as Error).message}`;
      }
      if (at !== post) return `${successor.entry.key} has checksum ${at === undefined ? 'none' : hex64(at)} after txid ${k}, the snapshot has ${hex64(post)}`;
    }
  }
  ctx.state.verifiedBases.add(proofId);
  return null;
}

/**
 * Whole generations older than the current one, once nothing in them is newer than the cutoff:
 * their objects (segments, then snapshots, then markers) in deletion order, and those kept.
 */
async function olderGenerations(ctx: MaintenanceContext, current: string, cutoff: number): Promise<{ groups: Doomed[][]; kept: Doomed[] }> {
  const groups: Doomed[][] = [[], [], []];
  const kept: Doomed[] = [];
  const generations = (await listGenerations(ctx)).filter((g) => g < current);
  for (const g of generations) {
    checkAbort(ctx.signal);
    const keys: { key: string; kind: string; epoch: number; minTxid: number; level: number }[] = [];
    for await (const o of ctx.storage.list({ prefix: ctx.keys.generationDir(g), ...(ctx.signal ? { signal: ctx.signal } : {}) })) {
      const parsed = ctx.keys.parse(o.key);
      if (!parsed || parsed.kind === 'database' || parsed.generation !== g) continue;
      keys.push({
        key: o.key,
        kind: parsed.kind,
        epoch: parsed.kind === 'epoch' || parsed.kind === 'snapshot' || parsed.kind === 'segment' ? parsed.epoch : 0,
        minTxid: parsed.kind === 'segment' ? parsed.minTxid : parsed.kind === 'snapshot' ? parsed.txid : 0,
        level: parsed.kind === 'segment' ? parsed.level : -1,
      });
    }
    // The newest write of a generation is a snapshot, a level-1 object, or the last level-0
    // segment of one of its writers (each writer ships in txid order).
    const lastOfEpoch = new Map<number, string>();
    for (const k of keys) if (k.kind === 'segment' && k.level === 0) lastOfEpoch.set(k.epoch, k.key);
    const probe = keys.filter((k) => k.kind === 'snapshot' || (k.kind === 'segment' && k.level > 0)).map((k) => k.key);
    probe.push(...lastOfEpoch.values());
    const headers = await mapLimit(probe, 8, (key) => headerOf(ctx, key));
    let newest = -Infinity;
    let unreadable: string | null = null;
    probe.forEach((key, i) => {
      const h = headers[i] as ObjectHeader | string;
      if (typeof h === 'string') unreadable ??= `${key}: ${h}`;
      else newest = Math.max(newest, h.lastTimestamp);
    });
    if (unreadable !== null || newest > cutoff) {
      const why = unreadable !== null ? `cannot read ${unreadable}` : `it has a commit at ${iso(newest)}, after the cutoff ${iso(cutoff)}`;
      kept.push({ key: ctx.keys.generationDir(g), reason: `older generation ${g} kept: ${why}` });
      continue;
    }
    const reason = `generation: ${g} is older than ${current}, whose base snapshot covers the window; its newest commit is ${iso(newest)}`;
    for (const k of keys) {
      const group = k.kind === 'segment' ? 0 : k.kind === 'snapshot' ? 1 : 2;
      (groups[group] as Doomed[]).push({ key: k.key, reason });
    }
  }
  return { groups, kept };
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

/** What the shipper hands its maintenance: its settings and a way to read its current generation. */
export interface MaintenanceHost {
  storage: ObjectStorage;
  options: ResolvedOptions;
  keyring: Keyring | undefined;
  log: Logger;
  metrics: ShipperMetrics;
  /** The generation the shipper writes now (null before the first one). */
  generation(): string | null;
}

/**
 * Retention and compaction from inside the shipper: at most every maintenanceIntervalMs, after an
 * upload, one pass at a time. It is the only place a writer LISTs after start-up.
 */
export class Maintenance {
  private lastRun = Date.now();
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly state = new MaintenanceState();
  private readonly log: Logger;

  constructor(private readonly ctx: MaintenanceHost) {
    this.log = ctx.log.child({ component: 'maintenance' });
  }

  poke(): void {
    const o = this.ctx.options;
    if (this.stopped || this.running) return;
    if (Date.now() - this.lastRun < o.maintenanceIntervalMs) return;
    this.lastRun = Date.now();
    this.running = this.run()
      .then(() => undefined)
      .catch((e: unknown) => {
        if (!this.stopped) this.log.warn('maintenance pass failed; the next one tries again', { error: (e as Error).message });
      })
      .finally(() => {
        this.running = null;
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
  }

  /** One pass over the shipper's generation. */
  async run(now = Date.now()): Promise<MaintenanceResult> {
    const { storage, options, keyring } = this.ctx;
    const generation = this.ctx.generation();
    if (!generation) return { generation: null, retention: null, compaction: null, errors: [] };
    const ctx: MaintenanceContext = {
      storage,
      keys: formatKeys(options.prefix),
      keyring,
      compression: options.compression,
      log: this.log,
      state: this.state,
      signal: this.abort.signal,
      // Counted as each delete succeeds, not when the pass ends: a pass that close() cuts short, or
      // whose compaction fails after retention deleted, still counts what is gone.
      onDeleted: (count) => this.ctx.metrics.deletedObjects.inc(count),
    };
    return maintenancePass(ctx, { retentionMs: options.retentionMs, compaction: options.compaction }, now, generation);
  }
}
