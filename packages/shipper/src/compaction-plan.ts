import { hex64, type KeyFormatter, type ObjectHeader } from '@walship/format';
import { acceptable } from './lineage.js';
import type { ResolvedCompaction } from './compaction-context.js';

// Planning: which closed runs of level-0 segments become one level-1 object (see compaction.ts).

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
      broken = `${piece.input.key} expects checksum ${hex64(h.preChecksum)} before txid ${h.minTxid}, the segment before it leaves ${hex64(lastHeader.postChecksum)}`;
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
