import type { ObjectStorage } from '@walship/storage';
import {
  HEADER_SIZE,
  SegmentEncoder,
  decodeHeader,
  decodeObject,
  decodeSegment,
  formatTxid,
  verifyMarker,
  type Compression,
  type KeyFormatter,
  type Keyring,
  type ObjectHeader,
  type ObjectHeaderInit,
} from '@walship/format';
import { acceptable, getJson, type EpochMarker } from './lineage.js';
import type { Logger } from './log.js';

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

function signalOf(ctx: { signal?: AbortSignal | undefined }): { signal?: AbortSignal } {
  return ctx.signal ? { signal: ctx.signal } : {};
}

// ---- planning -------------------------------------------------------------------------------

export interface PlannedInput {
  key: string;
  header: ObjectHeader;
  /** The txids of this segment that belong to the run (a segment holding a snapshot's txid is clipped). */
  from: number;
  to: number;
}

export interface PlannedRun {
  key: string;
  epoch: number;
  minTxid: number;
  maxTxid: number;
  inputs: PlannedInput[];
  /** Upper bound of the page bytes the merge holds in memory. */
  inputBytes: number;
}

export interface SkippedRange {
  minTxid: number;
  maxTxid: number;
  reason: string;
  keys: string[];
}

/**
 * The plan in txid order. `through` is how far compaction may consider itself done once the step
 * is carried out (null: not past this point; a later pass looks again).
 */
export type PlanStep = { kind: 'run'; run: PlannedRun; through: number } | { kind: 'skip'; skip: SkippedRange; through: number | null; quiet: boolean };

export interface PlanInput {
  keys: KeyFormatter;
  generation: string;
  epochs: Map<number, number>;
  /** Level-0 segments with their headers, any order; those the fencing rule rejects included. */
  segments: readonly { key: string; header: ObjectHeader }[];
  /** Txids of the generation's accepted snapshots. */
  snapshotTxids: readonly number[];
  /** Plan from this txid on. */
  startTxid: number;
  options: ResolvedCompaction;
}

interface Piece {
  input: PlannedInput;
  interval: number;
  bucket: number;
  bytes: number;
}

interface OpenRun {
  pieces: Piece[];
  bytes: number;
}

/**
 * Splits the level-0 chain from startTxid into runs. A run is a contiguous, chain-linked stretch
 * of accepted segments of one epoch, one snapshot interval and one time bucket, under the size
 * cap. Only closed runs are planned: one whose successor exists, so the newest run (still being
 * written to) is never merged. The partition is greedy from the start, so a later pass that starts
 * where a run ended plans the same runs again: a rerun after a crash writes the same keys.
 */
export function planRuns(p: PlanInput): PlanStep[] {
  const snaps = [...new Set(p.snapshotTxids)].sort((a, b) => a - b);
  const intervalOf = (txid: number): number => {
    let lo = 0;
    let hi = snaps.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((snaps[mid] as number) < txid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const isSnapshot = new Set(snaps);
  const accepted: { key: string; header: ObjectHeader }[] = [];
  const fenced: { key: string; header: ObjectHeader }[] = [];
  for (const s of p.segments) {
    if (s.header.maxTxid < p.startTxid) continue;
    (acceptable(p.epochs, s.header.epoch, s.header.minTxid, s.header.maxTxid) ? accepted : fenced).push(s);
  }
  accepted.sort((a, b) => a.header.minTxid - b.header.minTxid);

  const pieces: Piece[] = [];
  for (const s of accepted) {
    const h = s.header;
    const bytes = h.pageCount * h.pageSize;
    const bucket = Math.floor(h.firstTimestamp / p.options.bucketMs);
    let from = Math.max(h.minTxid, p.startTxid);
    const cuts = snaps.filter((k) => k >= from && k <= h.maxTxid);
    for (const k of [...cuts, h.maxTxid + 1]) {
      if (k > from) pieces.push({ input: { key: s.key, header: h, from, to: k - 1 }, interval: intervalOf(from), bucket, bytes });
      from = k + 1;
    }
  }

  const steps: PlanStep[] = [];
  const closed: OpenRun[] = [];
  let run: OpenRun | null = null;
  // Where the chain stands before the first piece: a snapshot's txid is covered by no run.
  let lastTo = isSnapshot.has(p.startTxid) ? p.startTxid : p.startTxid - 1;
  let lastInterval = intervalOf(lastTo + 1);
  let lastHeader: ObjectHeader | null = null;
  let skipInterval = -1;
  const flush = (): void => {
    for (const r of closed.splice(0)) steps.push(finishRun(p, r, fenced));
  };
  for (const piece of pieces) {
    if (piece.interval === skipInterval) continue;
    const h = piece.input.header;
    const opening = piece.interval !== lastInterval ? (snaps[piece.interval - 1] ?? 0) : lastTo;
    let broken: string | null = null;
    if (piece.input.from !== opening + 1) {
      broken = `txids ${opening + 1}..${piece.input.from - 1} are missing (no accepted level-0 segment holds them) before ${piece.input.key}`;
    } else if (lastHeader !== null && piece.interval === lastInterval && piece.input.from === h.minTxid && lastTo === lastHeader.maxTxid && h.preChecksum !== lastHeader.postChecksum) {
      broken = `${piece.input.key} expects checksum ${hex(h.preChecksum)} before txid ${h.minTxid}, the segment before it leaves ${hex(lastHeader.postChecksum)}`;
    }
    if (broken !== null) {
      // Runs closed before the break are whole and chained; the open one in this interval is not
      // merged, nor is anything after it here: no restore can cross the break.
      let lostFrom = opening + 1;
      if (run && runInterval(run) === piece.interval) lostFrom = (run.pieces[0] as Piece).input.from;
      else if (run) closed.push(run);
      run = null;
      flush();
      const next = snaps[piece.interval];
      const rest = pieces.filter((x) => x.interval === piece.interval).at(-1) as Piece;
      steps.push({
        kind: 'skip',
        skip: { minTxid: lostFrom, maxTxid: rest.input.to, reason: `chain broken: ${broken}; the rest of this snapshot interval stays at level 0`, keys: [piece.input.key] },
        through: next !== undefined ? next : null,
        quiet: false,
      });
      skipInterval = piece.interval;
      lastInterval = piece.interval;
      continue;
    }
    if (run) {
      const first = run.pieces[0] as Piece;
      if (piece.interval !== first.interval || h.epoch !== first.input.header.epoch || piece.bucket !== first.bucket || run.bytes + piece.bytes > p.options.maxInputBytes) {
        closed.push(run);
        run = null;
      }
    }
    flush();
    run ??= { pieces: [], bytes: 0 };
    run.pieces.push(piece);
    run.bytes += piece.bytes;
    lastTo = piece.input.to;
    lastInterval = piece.interval;
    lastHeader = piece.input.to === h.maxTxid ? h : null;
  }
  return steps;
}

function runInterval(r: OpenRun): number {
  return (r.pieces[0] as Piece).interval;
}

function finishRun(p: PlanInput, r: OpenRun, fenced: readonly { key: string; header: ObjectHeader }[]): PlanStep {
  const inputs = r.pieces.map((x) => x.input);
  const minTxid = (inputs[0] as PlannedInput).from;
  const maxTxid = (inputs[inputs.length - 1] as PlannedInput).to;
  const epoch = (inputs[0] as PlannedInput).header.epoch;
  const keys = inputs.map((i) => i.key);
  const overlapping = fenced.filter((f) => f.header.minTxid <= maxTxid && f.header.maxTxid >= minTxid).map((f) => f.key);
  if (overlapping.length > 0) {
    return {
      kind: 'skip',
      skip: { minTxid, maxTxid, reason: `objects rejected by the fencing rule overlap these txids (${overlapping.join(', ')}); left at level 0`, keys: [...keys, ...overlapping] },
      through: maxTxid,
      quiet: false,
    };
  }
  if (inputs.length < p.options.minInputs) {
    return { kind: 'skip', skip: { minTxid, maxTxid, reason: `${inputs.length} level-0 input(s), fewer than ${p.options.minInputs}`, keys }, through: maxTxid, quiet: true };
  }
  const key = p.keys.segment({ generation: p.generation, level: 1, minTxid, maxTxid, epoch });
  return { kind: 'run', run: { key, epoch, minTxid, maxTxid, inputs, inputBytes: r.bytes }, through: maxTxid };
}

// ---- merging --------------------------------------------------------------------------------

export interface MergedTransaction {
  txid: number;
  timestamp: number;
  commitSize: number;
  postChecksum: bigint;
  pages: { pgno: number; data: Uint8Array }[];
}

export interface MergedRun {
  header: ObjectHeaderInit;
  /** Every transaction of the run in txid order, each with its own pages (as level 0 shipped them). */
  transactions: MergedTransaction[];
}

/** A run the data itself refuses (found while decoding the inputs): it stays at level 0. */
export class RunRefused extends Error {
  override readonly name = 'RunRefused';
}

/**
 * Downloads and decodes the inputs (every chunk, the trailer and index checked) and concatenates
 * their transactions in [minTxid, maxTxid]. Checks on the way: txids contiguous, each input's
 * pre-apply checksum equal to the post-apply checksum before it, timestamps not decreasing.
 */
export async function mergeRun(ctx: MaintenanceContext, run: PlannedRun): Promise<MergedRun> {
  const transactions: MergedTransaction[] = [];
  let pre: bigint | null = null;
  let post = 0n;
  let expected = run.minTxid;
  let first: ObjectHeader | null = null;
  for (const input of run.inputs) {
    checkAbort(ctx.signal);
    const bytes = await ctx.storage.get(input.key, signalOf(ctx));
    if (bytes === null) throw new RunRefused(`${input.key} is gone`);
    const decoded = await decodeSegment(bytes, { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: input.key });
    const h = decoded.header;
    const planned = input.header;
    if (h.minTxid !== planned.minTxid || h.maxTxid !== planned.maxTxid || h.epoch !== planned.epoch || h.preChecksum !== planned.preChecksum || h.postChecksum !== planned.postChecksum) {
      throw new RunRefused(`${input.key} changed since its header was read`);
    }
    first ??= h;
    if (h.databaseId !== first.databaseId || h.pageSize !== first.pageSize) throw new RunRefused(`${input.key} belongs to another database or page size`);
    if (input.from === h.minTxid) {
      if (pre === null) pre = h.preChecksum;
      else if (h.preChecksum !== post) {
        throw new RunRefused(`${input.key} expects checksum ${hex(h.preChecksum)} before txid ${h.minTxid}, the run leaves ${hex(post)}`);
      }
    }
    for (const t of decoded.transactions) {
      if (t.txid < input.from) {
        if (t.txid === input.from - 1 && pre === null) pre = t.postChecksum;
        continue;
      }
      if (t.txid > input.to) break;
      if (t.txid !== expected) throw new RunRefused(`${input.key}: txid ${t.txid} where ${expected} belongs`);
      const previous = transactions.at(-1);
      if (previous && t.timestamp < previous.timestamp) throw new RunRefused(`${input.key}: txid ${t.txid} has a timestamp before txid ${previous.txid}'s`);
      transactions.push({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages.map((p) => ({ pgno: p.pgno, data: p.data })) });
      post = t.postChecksum;
      expected++;
    }
  }
  if (first === null || pre === null || expected !== run.maxTxid + 1) {
    throw new RunRefused(`the inputs hold txids ${run.minTxid}..${expected - 1}, not ${run.minTxid}..${run.maxTxid}`);
  }
  const head = transactions[0] as MergedTransaction;
  const last = transactions[transactions.length - 1] as MergedTransaction;
  const header: ObjectHeaderInit = {
    kind: 'segment',
    databaseId: first.databaseId,
    generation: first.generation,
    epoch: run.epoch,
    level: 1,
    minTxid: run.minTxid,
    maxTxid: run.maxTxid,
    pageSize: first.pageSize,
    commitSize: last.commitSize,
    firstTimestamp: head.timestamp,
    lastTimestamp: last.timestamp,
    preChecksum: pre,
    postChecksum: post,
    transactionCount: transactions.length,
    pageCount: transactions.reduce((n, t) => n + t.pages.length, 0),
    compression: ctx.compression,
  };
  return { header, transactions };
}

/** Why the stored object is not exactly `merged`, or null when it is. */
export async function compareStored(ctx: MaintenanceContext, key: string, merged: MergedRun): Promise<string | null> {
  const bytes = await ctx.storage.get(key, signalOf(ctx));
  if (bytes === null) return 'the object is not there';
  const want = merged.header;
  let i = 0;
  try {
    // The header is compared before any page is decoded: an object planted under this key cannot
    // make the writer hold more pages than the run it compares with. Transactions are compared as
    // they stream, so only one chunk of the stored object is held.
    for await (const event of decodeObject(bytes, { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: key })) {
      if (event.type === 'header') {
        const h = event.header;
        for (const field of ['kind', 'databaseId', 'generation', 'epoch', 'level', 'minTxid', 'maxTxid', 'pageSize', 'commitSize', 'firstTimestamp', 'lastTimestamp', 'preChecksum', 'postChecksum', 'transactionCount', 'pageCount'] as const) {
          if (h[field] !== want[field]) return `header ${field} is ${String(h[field])}, expected ${String(want[field])}`;
        }
      } else if (event.type === 'transaction') {
        const t = event;
        const exp = merged.transactions[i++];
        if (!exp) return `more transactions than the ${merged.transactions.length} of the run`;
        if (t.txid !== exp.txid || t.timestamp !== exp.timestamp || t.postChecksum !== exp.postChecksum || t.commitSize !== exp.commitSize) return `its record of txid ${exp.txid} does not match the run`;
        if (t.pages.length !== exp.pages.length) return `txid ${exp.txid}: ${t.pages.length} pages, expected ${exp.pages.length}`;
        for (let j = 0; j < t.pages.length; j++) {
          const got = t.pages[j] as { pgno: number; data: Uint8Array };
          const p = exp.pages[j] as { pgno: number; data: Uint8Array };
          if (got.pgno !== p.pgno || Buffer.compare(got.data, p.data) !== 0) return `txid ${exp.txid}: page ${p.pgno} differs from its input`;
        }
      }
    }
  } catch (e) {
    return `it does not decode: ${(e as Error).message}`;
  }
  if (i !== merged.transactions.length) return `${i} transactions, expected ${merged.transactions.length}`;
  return null;
}

async function upload(ctx: MaintenanceContext, key: string, merged: MergedRun): Promise<number> {
  const keyring = ctx.keyring;
  const body = async function* (): AsyncGenerator<Uint8Array> {
    const enc = new SegmentEncoder(merged.header, keyring ? { keyring } : {});
    for (const t of merged.transactions) {
      enc.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pages.length });
      for (const p of t.pages) enc.writePage(p.pgno, p.data);
      enc.endTransaction();
      yield* enc.take();
    }
    enc.finish();
    yield* enc.take();
  };
  const res = await ctx.storage.putStream(key, body(), signalOf(ctx));
  return res.size;
}

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
        await ctx.storage.delete([run.key], signalOf(ctx));
        result.deleted.push(run.key);
      }
      const size = await upload(ctx, run.key, merged);
      const problem = await compareStored(ctx, run.key, merged);
      if (problem !== null) {
        log.error('a level-1 object read back does not match what was written; deleting it', { key: run.key, problem });
        await ctx.storage.delete([run.key], signalOf(ctx));
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
    await ctx.storage.delete(doomed, signalOf(ctx));
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
  await ctx.storage.delete([l1.key], signalOf(ctx));
  return problem;
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

export function warnOnce(ctx: MaintenanceContext, id: string, msg: string, fields: Record<string, unknown>): void {
  if (ctx.state.reported.has(id)) {
    ctx.log.debug(msg, fields);
    return;
  }
  ctx.state.reported.add(id);
  ctx.log.warn(msg, fields);
}

export function hex(value: bigint): string {
  return `0x${value.toString(16).padStart(16, '0')}`;
}
