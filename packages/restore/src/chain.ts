// The chain walk of a restore plan: from the chosen snapshot, one segment after another, each
// proven to continue the rolling checksum where the last left off, until the target, the time
// limit, or the end of what the generation holds; then, when it ended short, the error that says
// why. The planner (plan.ts) chooses the generation and the snapshot and reads the headers.

import { hex64, type ObjectHeader, type ObjectIndex } from '@walship/format';
import { restoreError } from './errors.js';
import type { GenerationEntry, ObjectEntry } from './replica.js';

export type Stop = { kind: 'latest' } | { kind: 'txid'; txid: number } | { kind: 'timestamp'; timestamp: number };

/** One object of a plan: which of its transactions are applied and what the chain expects around them. */
export interface PlannedObject {
  key: string;
  kind: 'snapshot' | 'segment';
  level: number;
  epoch: number;
  minTxid: number;
  maxTxid: number;
  size: number;
  /** Transactions outside applyFrom..applyThrough are decoded and verified but not applied. */
  applyFrom: number;
  applyThrough: number;
  /** Rolling checksum of the database before applyFrom (0 for the snapshot). */
  preChecksum: bigint;
  /** Rolling checksum after applyThrough. */
  postChecksum: bigint;
  /** Commit size in pages after applyThrough. */
  commitSize: number;
  header: ObjectHeader;
}

/** A segment the fencing rule accepts, with its header. */
export interface Usable {
  entry: ObjectEntry;
  header: ObjectHeader;
}

/** Where the chain stands: the state after `txid`, last applied from `lastKey`. */
export interface ChainState {
  txid: number;
  checksum: bigint;
  commitSize: number;
  timestamp: number;
  lastKey: string;
}

export interface ChainDeps {
  /** The replica's location, for messages. */
  where: string;
  /** An object's index (transaction boundaries), read once per object. */
  index(entry: ObjectEntry): Promise<ObjectIndex>;
  checkAbort(): void;
}

export interface ChainWalk {
  segments: PlannedObject[];
  /** 'target': reached the txid; 'time': stopped at the timestamp; 'exhausted': nothing continues. */
  ended: 'target' | 'time' | 'exhausted';
  /** In the last step: segments that overlap the chain but have no boundary where it stands. */
  unusable: string[];
}

/** A segment with every transaction boundary: level 0, or a level-1 object that keeps each transaction (not a jump). */
export function everyBoundary(h: ObjectHeader): boolean {
  return h.level === 0 || h.transactionCount === h.maxTxid - h.minTxid + 1;
}

/** Whether a stop rule wants every transaction of an object (so a jump over it is exact). */
export function wholeWanted(h: ObjectHeader, stop: Stop): boolean {
  if (stop.kind === 'txid') return h.maxTxid <= stop.txid;
  if (stop.kind === 'timestamp') return h.lastTimestamp <= stop.timestamp;
  return true;
}

/** An object's epoch has a marker and its key's first txid is not before that epoch's start. */
export function acceptableStart(g: GenerationEntry, s: ObjectEntry): boolean {
  const start = g.epochs.get(s.epoch)?.startTxid;
  return start !== undefined && s.minTxid >= start;
}

/** Walks from `state` (updated in place) through `usable` towards `stop`. */
export async function walkChain(state: ChainState, usable: Usable[], stop: Stop, deps: ChainDeps): Promise<ChainWalk> {
  const limit = stop.kind === 'txid' ? stop.txid : Infinity;
  const segments: PlannedObject[] = [];
  let unusable: string[] = [];
  for (;;) {
    deps.checkAbort();
    if (state.txid >= limit) return { segments, ended: 'target', unusable };
    const next = state.txid + 1;
    const found = await continuation(state, usable, stop, deps);
    unusable = found.unusable;
    if (!found.chosen) return { segments, ended: 'exhausted', unusable };
    const chosen = found.chosen;
    const h = chosen.header;
    const end = await endInside(state, chosen, found.index, stop, deps);
    if (end === 'time') return { segments, ended: 'time', unusable };
    segments.push({
      key: chosen.entry.key,
      kind: 'segment',
      level: h.level,
      epoch: h.epoch,
      minTxid: h.minTxid,
      maxTxid: h.maxTxid,
      size: chosen.entry.size,
      applyFrom: next,
      applyThrough: end.through,
      preChecksum: state.checksum,
      postChecksum: end.post,
      commitSize: end.size,
      header: h,
    });
    state.txid = end.through;
    state.checksum = end.post;
    state.commitSize = end.size;
    state.timestamp = end.at;
    state.lastKey = chosen.entry.key;
    if (end.stopHere) return { segments, ended: 'time', unusable };
  }
}

/**
 * The segment that continues the chain from `state`. Fewest objects: the one that reaches furthest
 * towards the target (a level-1 object over the level-0 segments it merged); on a tie, one that
 * starts right here (no index read), then level 0, then the longest. A jump (a level-1 object
 * written before boundaries were kept) only when the whole of it is wanted.
 */
async function continuation(state: ChainState, usable: Usable[], stop: Stop, deps: ChainDeps): Promise<{ chosen: Usable | null; index: ObjectIndex | null; unusable: string[] }> {
  const { txid, checksum, lastKey } = state;
  const limit = stop.kind === 'txid' ? stop.txid : Infinity;
  const next = txid + 1;
  const reach = (u: Usable): number => Math.min(u.header.maxTxid, limit);
  const continuing = usable
    .filter((u) => u.header.minTxid <= next && u.header.maxTxid > txid)
    .filter((u) => everyBoundary(u.header) || (u.header.minTxid === next && wholeWanted(u.header, stop)))
    .sort(
      (a, b) =>
        reach(b) - reach(a) ||
        Number(a.header.minTxid !== next) - Number(b.header.minTxid !== next) ||
        Number(a.header.level !== 0) - Number(b.header.level !== 0) ||
        b.header.maxTxid - a.header.maxTxid,
    );
  const unusable: string[] = [];
  for (const u of continuing) {
    if (u.header.minTxid === next) {
      if (u.header.preChecksum !== checksum) {
        throw restoreError(
          'ERR_CHAIN_MISMATCH',
          `${deps.where}: ${u.entry.key} (txids ${u.header.minTxid}..${u.header.maxTxid}) expects checksum ${hex64(u.header.preChecksum)} before txid ${next}, but ${lastKey} leaves ${hex64(checksum)} after txid ${txid}; the objects are not one lineage. Do not restore past txid ${txid} until the object is explained`,
          { key: u.entry.key, previousKey: lastKey, txid, expected: hex64(u.header.preChecksum), actual: hex64(checksum) },
        );
      }
      return { chosen: u, index: null, unusable };
    }
    // The segment starts inside what is applied: it continues the chain only if one of its
    // transactions ends exactly at `txid` with the checksum the chain has there.
    const idx = await deps.index(u.entry);
    const at = idx.transactions.find((t) => t.txid === txid);
    if (!at) {
      unusable.push(u.entry.key);
      continue;
    }
    if (at.postChecksum !== checksum) {
      throw restoreError(
        'ERR_CHAIN_MISMATCH',
        `${deps.where}: ${u.entry.key} has checksum ${hex64(at.postChecksum)} after txid ${txid}, but ${lastKey} has ${hex64(checksum)}; the objects are not one lineage. Do not restore past txid ${txid} until the object is explained`,
        { key: u.entry.key, previousKey: lastKey, txid, expected: hex64(at.postChecksum), actual: hex64(checksum) },
      );
    }
    return { chosen: u, index: idx, unusable };
  }
  return { chosen: null, index: null, unusable };
}

/**
 * How much of `chosen` the chain applies: all of it, up to the target txid inside it, or up to the
 * last transaction committed by the target time ('time': none of it).
 */
async function endInside(
  state: ChainState,
  chosen: Usable,
  known: ObjectIndex | null,
  stop: Stop,
  deps: ChainDeps,
): Promise<{ through: number; post: bigint; size: number; at: number; stopHere: boolean } | 'time'> {
  const { txid } = state;
  const next = txid + 1;
  const h = chosen.header;
  let index = known;
  if (stop.kind === 'txid' && stop.txid < h.maxTxid) {
    index ??= await deps.index(chosen.entry);
    const t = index.transactions.find((x) => x.txid === stop.txid);
    if (!t) {
      const around = index.transactions.filter((x) => x.txid > txid).map((x) => x.txid);
      throw restoreError(
        'ERR_TXID_NOT_FOUND',
        `${deps.where}: txid ${stop.txid} is not a transaction boundary in ${chosen.entry.key} (compaction merged it); restorable txids there: ${around.join(', ')}`,
        { txid: stop.txid, key: chosen.entry.key, available: around },
      );
    }
    return { through: t.txid, post: t.postChecksum, size: t.commitSize, at: t.timestamp, stopHere: false };
  }
  if (stop.kind === 'timestamp' && (h.lastTimestamp > stop.timestamp || h.minTxid <= txid)) {
    if (h.minTxid === next && h.firstTimestamp > stop.timestamp) return 'time';
    index ??= await deps.index(chosen.entry);
    const fresh = index.transactions.filter((x) => x.txid > txid);
    let last = null;
    for (const x of fresh) {
      if (x.timestamp > stop.timestamp) break;
      last = x;
    }
    if (last === null) return 'time';
    return { through: last.txid, post: last.postChecksum, size: last.commitSize, at: last.timestamp, stopHere: last !== fresh[fresh.length - 1] };
  }
  return { through: h.maxTxid, post: h.postChecksum, size: h.commitSize, at: h.lastTimestamp, stopHere: false };
}

/**
 * The chain ran out before the target: the tip (fine for 'latest' and a time), or a typed error
 * that names the missing txids, the segments that could not continue it, a jump over the target,
 * or the range the generation holds.
 */
export function explainEnd(
  g: GenerationEntry,
  context: { state: ChainState; firstTxid: number; usable: Usable[]; unusable: string[]; fenced: string[]; stop: Stop; where: string },
): void {
  const { state, usable, unusable, fenced, stop, where } = context;
  const { txid, lastKey } = state;
  const limit = stop.kind === 'txid' ? stop.txid : Infinity;
  // Only a jump (a level-1 object written before compaction kept boundaries) holds the target.
  const jump = stop.kind === 'txid' ? usable.find((u) => !everyBoundary(u.header) && u.header.minTxid === txid + 1 && u.header.maxTxid > stop.txid) : undefined;
  if (jump && stop.kind === 'txid') {
    throw restoreError(
      'ERR_TXID_NOT_FOUND',
      `${where}: txid ${stop.txid} is inside ${jump.entry.key}, which an earlier walship compacted into one jump to txid ${jump.header.maxTxid} (its level-0 segments are gone); restorable there: ${txid}, ${jump.header.maxTxid}`,
      { txid: stop.txid, key: jump.entry.key, available: [txid, jump.header.maxTxid] },
    );
  }
  // Nothing continues the chain: either this is the tip, or an object is missing.
  // The next object the chain would need, from the headers read or, past a txid target (whose
  // headers were not read), from the keys alone: a later object means txids are missing.
  const beyondUsable = usable.filter((u) => u.header.minTxid > txid + 1).sort((a, b) => a.header.minTxid - b.header.minTxid)[0];
  const beyondKey = g.segments.filter((s) => acceptableStart(g, s) && s.minTxid > Math.max(txid + 1, limit)).sort((a, b) => a.minTxid - b.minTxid)[0];
  const beyond = beyondUsable ? { entry: beyondUsable.entry, header: { minTxid: beyondUsable.header.minTxid } } : beyondKey ? { entry: beyondKey, header: { minTxid: beyondKey.minTxid } } : undefined;
  if (beyond !== undefined || unusable.length > 0) {
    const why =
      beyond !== undefined
        ? `the next object, ${beyond.entry.key}, starts at txid ${beyond.header.minTxid}, so txids ${txid + 1}..${beyond.header.minTxid - 1} are missing`
        : `${unusable.join(', ')} overlap it but have no transaction boundary at txid ${txid}`;
    throw restoreError(
      'ERR_CHAIN_GAP',
      `${where}: the chain of generation ${g.id} breaks after txid ${txid} (${lastKey}): ${why}${fenced.length > 0 ? ` (left out by fencing: ${fenced.join(', ')})` : ''}. An object is missing or was deleted; restore to txid ${txid} or earlier`,
      { generation: g.id, lastKey, lastTxid: txid, nextKey: beyond?.entry.key ?? unusable[0], nextTxid: beyond?.header.minTxid, fenced },
    );
  }
  if (stop.kind === 'txid') {
    const from = context.firstTxid;
    throw restoreError('ERR_TXID_NOT_FOUND', `${where}: txid ${stop.txid} is not restorable: generation ${g.id} holds txids ${from}..${txid}`, {
      txid: stop.txid,
      ranges: [{ generation: g.id, fromTxid: from, toTxid: txid }],
    });
  }
}
