import { decodeObject, type ObjectHeader } from '@walship/format';
import { acceptable } from './lineage.js';
import {
  COMPACTION_LIST_LIMIT,
  checkAbort,
  headerOf,
  listSegments,
  mapLimit,
  signalOf,
  warnOnce,
  type GenerationView,
  type MaintenanceContext,
  type ResolvedCompaction,
  type SegmentEntry,
} from './compaction-context.js';
import { planRuns, type PlannedInput, type PlannedRun, type SkippedRange } from './compaction-plan.js';
import { RunRefused, compareStored, mergeRun, upload } from './compaction-merge.js';

export * from './compaction-context.js';
export * from './compaction-plan.js';
export * from './compaction-merge.js';


// Compaction merges runs of level-0 segments into level-1 objects, so that a restore reads one
// object per run instead of one per shipped batch.
//
// A level-1 object keeps every transaction of [minTxid, maxTxid] with its own page set, txid,
// timestamp, commit size and post-apply checksum (the level-0 records, concatenated): a restore
// can stop after any txid or millisecond inside it, so level 0 is not needed once the object is
// verified, and the level-0 inputs are deleted `level0RetentionMs` after (see dropCompactedInputs).
// Objects written before this rule (format 1.0 too) hold ONE record at their max txid with each
// page's last image: `transactionCount` 1 for a range of several txids. Readers tell them apart
// by that count; a restore uses such an object only to jump to its max txid, and the newest one
// is rewritten with every boundary by the next pass (its recheck no longer matches).

// Runs never hold both a snapshot's txid K and K + 1: a restore starting from snapshot K must be
// able to use the run that follows it, which therefore starts at K + 1 (a level-0 segment that
// holds K, usually the checkpoint's marker transaction, is clipped). Txid K itself is in no run: a
// restore to K or later starts from that snapshot.

// ---- the pass -------------------------------------------------------------------------------

export interface CompactionResult {
  /** Level-1 objects written and verified by this pass. */
  written: string[];
  /** Level-1 objects found in the bucket (written before a crash) and verified against their inputs. */
  verified: string[];
  /** Ranges left at level 0, with the reason. */
  skipped: SkippedRange[];
  /** Level-1 objects that did not match their inputs, deleted (and rewritten when possible). */
  deleted: string[];
  /** Level-0 segments deleted because a verified level-1 object holds each of their transactions. */
  dropped: string[];
  /** Why the pass stopped early (an I/O error; the next pass goes on). */
  stopped: string | null;
}

/**
 * One compaction pass over a generation, from `floorTxid` (retention's base snapshot, or the
 * generation's first one) on. Never deletes a level-0 segment; the only deletion is of a level-1
 * object that does not decode to exactly the merge of its inputs.
 */
export async function compactGeneration(ctx: MaintenanceContext, view: GenerationView, floorTxid: number, options: ResolvedCompaction): Promise<CompactionResult> {
  // Level-1 ages are compared with the store's LIST times: the wall clock, not a pass's retention clock.
  const now = Date.now();
  const result: CompactionResult = { written: [], verified: [], skipped: [], deleted: [], dropped: [], stopped: null };
  const gen = view.generation;
  const log = ctx.log;
  const accepted = view.snapshots.filter((s) => s.accepted && s.txid >= floorTxid).map((s) => s.txid);
  const compacted = await listSegments(ctx, gen, 1);
  const existing = new Set(compacted.map((c) => c.key));
  let highest = newestAbove(compacted, floorTxid);
  // A crash can interrupt only the newest level-1 object (runs are written in txid order, each
  // verified before the next one starts), so a new process checks that one against its inputs.
  if (highest && !ctx.state.verifiedCompacted.has(highest.key)) {
    const problem = await recheck(ctx, view, highest);
    if (problem === 'stopped') {
      result.stopped = `could not recheck ${highest.key}`;
      return result;
    }
    if (problem === null) {
      result.verified.push(highest.key);
    } else {
      result.deleted.push(highest.key);
      existing.delete(highest.key);
      ctx.state.decided.delete(gen);
      highest = newestAbove(compacted.filter((c) => c.key !== highest?.key), floorTxid);
    }
  }
  const decided = Math.max(floorTxid - 1, ctx.state.decided.get(gen) ?? 0, highest?.maxTxid ?? 0);

  const start = decided + 1;
  const listed = await listSegments(ctx, gen, 0, start, Infinity, COMPACTION_LIST_LIMIT);
  const segments: { key: string; header: ObjectHeader }[] = [];
  const headers = await mapLimit(listed, 8, (s) => headerOf(ctx, s.key));
  listed.forEach((s, i) => {
    const h = headers[i] as ObjectHeader | string;
    if (typeof h === 'string') {
      warnOnce(ctx, `header:${s.key}`, 'compaction ignores an object it cannot use', { key: s.key, reason: h });
      return;
    }
    segments.push({ key: s.key, header: h });
  });
  const steps = planRuns({ keys: ctx.keys, generation: gen, epochs: view.epochs, segments, snapshotTxids: accepted, startTxid: start, options });
  let objects = 0;
  let through = decided;
  for (const step of steps) {
    if (step.kind === 'skip') {
      result.skipped.push(step.skip);
      if (step.quiet) log.debug('compaction leaves a range at level 0', { minTxid: step.skip.minTxid, maxTxid: step.skip.maxTxid, reason: step.skip.reason });
      else warnOnce(ctx, `skip:${gen}:${step.skip.minTxid}:${step.skip.reason}`, 'compaction leaves a range at level 0', { minTxid: step.skip.minTxid, maxTxid: step.skip.maxTxid, reason: step.skip.reason });
      if (step.through === null) break;
      through = step.through;
      continue;
    }
    if (objects >= options.maxObjectsPerPass) break;
    const run = step.run;
    try {
      if (existing.has(run.key) && ctx.state.verifiedCompacted.has(run.key)) {
        through = step.through;
        continue;
      }
      const merged = await mergeRun(ctx, run);
      if (existing.has(run.key)) {
        // Written by another pass that did not get to verify it (or by a concurrent compactor).
        const problem = await compareStored(ctx, run.key, merged);
        if (problem === null) {
          ctx.state.verifiedCompacted.add(run.key);
          result.verified.push(run.key);
          through = step.through;
          continue;
        }
        log.error('a level-1 object does not match its inputs; replacing it', { key: run.key, problem });
        await deleteCounted(ctx, [run.key]);
        result.deleted.push(run.key);
      }
      const size = await upload(ctx, run.key, merged);
      const problem = await compareStored(ctx, run.key, merged);
      if (problem !== null) {
        log.error('a level-1 object read back does not match what was written; deleting it', { key: run.key, problem });
        await deleteCounted(ctx, [run.key]);
        result.deleted.push(run.key);
        result.stopped = `verification of ${run.key} failed: ${problem}`;
        break;
      }
      ctx.state.verifiedCompacted.add(run.key);
      result.written.push(run.key);
      objects++;
      log.info('compacted level-0 segments into a level-1 object', {
        key: run.key,
        minTxid: run.minTxid,
        maxTxid: run.maxTxid,
        inputs: run.inputs.length,
        transactions: merged.transactions.length,
        pages: merged.header.pageCount,
        bytes: size,
      });
      through = step.through;
    } catch (e) {
      if (e instanceof RunRefused) {
        const skip = { minTxid: run.minTxid, maxTxid: run.maxTxid, reason: e.message, keys: run.inputs.map((i) => i.key) };
        result.skipped.push(skip);
        warnOnce(ctx, `refused:${run.key}:${e.message}`, 'compaction leaves a range at level 0', { minTxid: skip.minTxid, maxTxid: skip.maxTxid, reason: skip.reason });
        through = step.through;
        continue;
      }
      if ((e as Error).name === 'AbortError' || ctx.signal?.aborted) throw e;
      result.stopped = `${run.key}: ${(e as Error).message}`;
      log.warn('compaction pass stopped; the next pass goes on from here', { key: run.key, error: (e as Error).message });
      break;
    }
  }
  ctx.state.decided.set(gen, through);
  for (const s of segments) if (s.header.maxTxid <= through) ctx.state.headers.delete(s.key);
  if (result.stopped === null) {
    const l1 = [...compacted.filter((c) => existing.has(c.key)), ...result.written.map((key) => ({ key, modified: now }))];
    await dropCompactedInputs(ctx, view, l1, { floorTxid, now, options, result });
  }
  return result;
}

/**
 * Deletes the level-0 segments that level-1 objects make redundant: every transaction of the
 * segment is inside an object that keeps every boundary (transactionCount = maxTxid - minTxid + 1),
 * accepted by the fencing rule, old enough, and verified against its inputs by this process (an
 * object left by another process is merged again and compared first). A segment that reaches past
 * the object (a snapshot's txid clipped off the run) stays.
 */
async function dropCompactedInputs(
  ctx: MaintenanceContext,
  view: GenerationView,
  l1: readonly { key: string; modified?: number | undefined }[],
  o: { floorTxid: number; now: number; options: ResolvedCompaction; result: CompactionResult },
): Promise<void> {
  const dense: { entry: SegmentEntry; header: ObjectHeader }[] = [];
  for (const c of l1) {
    const parsed = ctx.keys.parse(c.key);
    if (parsed?.kind !== 'segment' || parsed.maxTxid === undefined || parsed.maxTxid < o.floorTxid) continue;
    if (c.modified !== undefined && o.now - c.modified < o.options.level0RetentionMs) continue;
    const h = await headerOf(ctx, c.key);
    if (typeof h === 'string' || h.transactionCount !== h.maxTxid - h.minTxid + 1 || !acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid)) continue;
    dense.push({ entry: { key: c.key, level: 1, minTxid: h.minTxid, maxTxid: h.maxTxid, epoch: h.epoch, size: 0 }, header: h });
  }
  if (dense.length === 0) return;
  dense.sort((a, b) => a.header.minTxid - b.header.minTxid);
  const from = (dense[0] as (typeof dense)[number]).header.minTxid;
  const through = (dense[dense.length - 1] as (typeof dense)[number]).header.maxTxid;
  const listed = await listSegments(ctx, view.generation, 0, from, through);
  let rechecked = 0;
  for (const d of dense) {
    checkAbort(ctx.signal);
    const inside = listed.filter((s) => s.minTxid >= d.header.minTxid && s.minTxid <= d.header.maxTxid);
    if (inside.length === 0) continue;
    if (!ctx.state.verifiedCompacted.has(d.entry.key)) {
      if (rechecked++ >= o.options.maxObjectsPerPass) break;
      const problem = await recheck(ctx, view, d.entry);
      if (problem !== null) {
        if (problem !== 'stopped') o.result.deleted.push(d.entry.key);
        continue;
      }
    }
    const doomed: string[] = [];
    for (const s of inside) {
      const h = await headerOf(ctx, s.key);
      if (typeof h === 'string' || h.maxTxid > d.header.maxTxid || !acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid)) continue;
      doomed.push(s.key);
    }
    if (doomed.length === 0) continue;
    await deleteCounted(ctx, doomed);
    for (const key of doomed) ctx.state.headers.delete(key);
    o.result.dropped.push(...doomed);
    ctx.log.info('deleted level-0 segments a level-1 object holds transaction by transaction', { key: d.entry.key, minTxid: d.header.minTxid, maxTxid: d.header.maxTxid, segments: doomed.length });
  }
}

/** Rebuilds the run of an existing level-1 object from its inputs and compares; deletes it when it differs. Null when it matches. */
async function recheck(ctx: MaintenanceContext, view: GenerationView, l1: SegmentEntry): Promise<string | null | 'stopped'> {
  const minTxid = l1.minTxid;
  const maxTxid = l1.maxTxid as number;
  // Its first input starts at minTxid, or at minTxid - 1 when that is a snapshot's txid.
  const listed = await listSegments(ctx, view.generation, 0, Math.max(0, minTxid - 1), maxTxid);
  const inputs: PlannedInput[] = [];
  for (const s of listed) {
    const h = await headerOf(ctx, s.key);
    if (typeof h === 'string') continue;
    if (h.maxTxid < minTxid || h.minTxid > maxTxid || !acceptable(view.epochs, h.epoch, h.minTxid, h.maxTxid)) continue;
    inputs.push({ key: s.key, header: h, from: Math.max(minTxid, h.minTxid), to: Math.min(maxTxid, h.maxTxid) });
  }
  for (const s of listed) ctx.state.headers.delete(s.key);
  const run: PlannedRun = { key: l1.key, epoch: l1.epoch, minTxid, maxTxid, inputs, inputBytes: 0 };
  let problem: string | null;
  try {
    const merged = await mergeRun(ctx, run);
    problem = await compareStored(ctx, l1.key, merged);
  } catch (e) {
    if (!(e instanceof RunRefused)) {
      if ((e as Error).name === 'AbortError' || ctx.signal?.aborted) throw e;
      ctx.log.warn('could not recheck a level-1 object; the next pass tries again', { key: l1.key, error: (e as Error).message });
      return 'stopped';
    }
    // Its inputs are incomplete now (a level-0 object lost since): the object may be the only way
    // across that loss, so it stays if it is whole (every checksum, the trailer and index).
    problem = await decodesWhole(ctx, l1.key);
    if (problem === null) {
      ctx.state.verifiedCompacted.add(l1.key);
      warnOnce(ctx, `unmergeable:${l1.key}`, 'a level-1 object cannot be compared with its inputs; it decodes whole and is kept', { key: l1.key, reason: e.message });
      return null;
    }
  }
  if (problem === null) {
    ctx.state.verifiedCompacted.add(l1.key);
    ctx.log.info('a level-1 object left by an earlier process matches its inputs', { key: l1.key });
    return null;
  }
  ctx.log.error('a level-1 object does not match its inputs; deleting it (restore falls back to level 0)', { key: l1.key, problem });
  await deleteCounted(ctx, [l1.key]);
  return problem;
}

/** Deletes objects and reports them to ctx.onDeleted (the objects-deleted metric) once the delete succeeds. */
async function deleteCounted(ctx: MaintenanceContext, keys: string[]): Promise<void> {
  await ctx.storage.delete(keys, signalOf(ctx));
  ctx.onDeleted?.(keys.length);
}

async function decodesWhole(ctx: MaintenanceContext, key: string): Promise<string | null> {
  const bytes = await ctx.storage.get(key, signalOf(ctx));
  if (bytes === null) return 'the object is not there';
  try {
    // Verified to its end without holding its pages.
    for await (const event of decodeObject(bytes, { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: key, maxPagesPerEvent: 256, reuseBuffers: true })) void event;
    return null;
  } catch (e) {
    return `it does not decode: ${(e as Error).message}`;
  }
}

function newestAbove(compacted: readonly SegmentEntry[], floorTxid: number): SegmentEntry | undefined {
  return compacted.filter((c) => (c.maxTxid ?? 0) >= floorTxid).sort((a, b) => (a.maxTxid ?? 0) - (b.maxTxid ?? 0)).at(-1);
}
