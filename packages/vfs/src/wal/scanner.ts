/**
 * WAL scanner: walks the frames of a SQLite WAL following SQLite's recovery rule and reports the
 * complete transactions (commits) it finds. See `./README.md` for the validation rules.
 *
 * It runs on the commit path (after every commit, on the 1-3 frames just written), so a small scan
 * costs a handful of small allocations plus checksum time, and a large scan reads in chunks of up
 * to 4 MiB instead of one read per frame.
 */
import {
  ChecksumCursor,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  frameOffset,
  frameSize,
  parseWalHeader,
  readU32BE,
  type WalHeader,
  type WalHeaderProblem,
} from './format.js';

export interface WalCommit {
  /** 1-based commit number within this WAL (padding not counted). */
  index: number;
  /** 1-based frame number of the transaction's first frame. */
  firstFrame: number;
  /** Frame number of its commit frame. */
  commitFrame: number;
  /** commitFrame + paddingFrames. */
  lastFrame: number;
  /** Database size in pages after the commit. */
  commitSize: number;
  /** Copies of the commit frame SQLite appended to reach a sector boundary (only with `sectorSize`). */
  paddingFrames: number;
  /**
   * pgno -> frame number of the last image of that page in this transaction, only for
   * pgno <= commitSize. Padding frames are not listed (they repeat the commit frame's image).
   */
  pages: Map<number, number>;
  /** Cumulative checksum after lastFrame. */
  checksum: [number, number];
}

/**
 * Position after the last commit consumed. Treat it as an opaque value: create it with
 * `startScan` and pass the `state` of a result back into the next `scanWal`.
 */
export interface WalScanState {
  header: WalHeader;
  /** Next frame number to examine (1-based). */
  nextFrame: number;
  /** Cumulative checksum after frame nextFrame - 1 (the header checksum when nextFrame is 1). */
  checksum: [number, number];
  /** Commits consumed so far in this WAL generation (the index of the last one). */
  commits: number;
  /**
   * Frame number of the commit frame of the last commit consumed (0 if none). Lets a resumed scan
   * recognise padding frames of that commit which were not yet in the file at the previous scan
   * (SQLite syncs in the middle of the last padding frame). Absent is treated as 0.
   */
  lastCommitFrame?: number;
}

export type WalStop = 'end' | 'torn-frame' | 'salt-mismatch' | 'checksum-mismatch' | 'open-transaction';

export interface WalScanResult {
  commits: WalCommit[];
  state: WalScanState;
  stop: WalStop;
  /**
   * The first frame number not accepted: the invalid frame for the mismatches, the partial frame
   * for 'torn-frame', and the first frame past the data examined for 'end'/'open-transaction'.
   */
  stopFrame: number;
}

/**
 * A random-access byte source: returns up to `length` bytes at `offset` (fewer only at end of
 * file). May return a view; the scanner does not keep it past its next read call without copying.
 */
export type WalReader = (offset: number, length: number) => Uint8Array;

export interface WalScanOptions {
  /**
   * Sector size the writer padded commits to (SQLite pads when the VFS does not report
   * SQLITE_IOCAP_POWERSAFE_OVERWRITE and the commit is synced). 0 or absent: no padding expected,
   * every commit frame is a commit.
   */
  sectorSize?: number;
  /**
   * Examine at most this many frames starting at `state.nextFrame`; the scan then behaves as if the
   * file ended there ('end' at a commit boundary, 'open-transaction' otherwise).
   */
  maxFrames?: number;
  /**
   * The reader's views stay valid (unchanged) until `scanWal` returns, e.g. views into a buffer
   * nobody writes during the scan, or fresh buffers. The scanner then keeps the padding reference as
   * a view instead of copying a page per commit. Default false: views may be reused by the next read.
   */
  stableViews?: boolean;
}

/** Upper bound of one read call. */
const MAX_READ_BYTES = 4 * 1024 * 1024;
/** First read of a scan; later reads double up to MAX_READ_BYTES. Small so that the common 1-3 frame scan stays cheap. */
const FIRST_READ_BYTES = 16 * 1024;

/** Initial scan state for a WAL whose header is `header`: frame 1, checksum seeded from the header. */
export function startScan(header: WalHeader): WalScanState {
  return { header, nextFrame: 1, checksum: [header.checksum1, header.checksum2], commits: 0, lastCommitFrame: 0 };
}

/** The padding reference: the commit frame whose copies may follow. */
interface PaddingRef {
  pgno: number;
  commitSize: number;
  /** Frames starting before this byte offset may be padding. */
  syncPoint: number;
  /** The commit this padding belongs to, or null when that commit was returned by an earlier scan. */
  commit: WalCommit | null;
  /** The commit frame's page: either a copy (`page`) or a view into the current chunk (`chunkOffset`). */
  page: Uint8Array | null;
  chunkOffset: number;
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

function bytesEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  if (((a.byteOffset + aOff) & 3) === 0 && ((b.byteOffset + bOff) & 3) === 0 && (len & 3) === 0) {
    const wa = new Int32Array(a.buffer, a.byteOffset + aOff, len >>> 2);
    const wb = new Int32Array(b.buffer, b.byteOffset + bOff, len >>> 2);
    for (let i = 0; i < wa.length; i++) if (wa[i] !== wb[i]) return false;
    return true;
  }
  for (let i = 0; i < len; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
}

/**
 * The padding reference of a scan that resumes right after a commit (`state.lastCommitFrame`):
 * frames before that commit's sync point may still be copies of its commit frame.
 */
function resumedPadding(read: WalReader, state: WalScanState, sectorSize: number, stableViews: boolean): PaddingRef | null {
  const lastCommitFrame = state.lastCommitFrame ?? 0;
  if (sectorSize <= 0 || lastCommitFrame <= 0 || lastCommitFrame >= state.nextFrame) return null;
  const pageSize = state.header.pageSize;
  const fsz = frameSize(pageSize);
  const syncPoint = roundUp(frameOffset(lastCommitFrame + 1, pageSize), sectorSize);
  if (frameOffset(state.nextFrame, pageSize) >= syncPoint) return null;
  const buf = read(frameOffset(lastCommitFrame, pageSize), fsz);
  if (buf.byteLength < fsz) return null;
  return {
    pgno: readU32BE(buf, 0),
    commitSize: readU32BE(buf, 4),
    syncPoint,
    commit: null,
    page: stableViews ? buf.subarray(WAL_FRAME_HEADER_SIZE, fsz) : buf.slice(WAL_FRAME_HEADER_SIZE, fsz),
    chunkOffset: 0,
  };
}

/** Whether the frame at `pos` of `chunk` (frame `frameNo`) is a padding copy of `pad`'s commit frame. */
function isPadding(pad: PaddingRef, chunk: Uint8Array, pos: number, frameNo: number, pgno: number, commitSize: number, pageSize: number): boolean {
  return (
    pgno === pad.pgno &&
    commitSize === pad.commitSize &&
    frameOffset(frameNo, pageSize) < pad.syncPoint &&
    (pad.page !== null
      ? bytesEqual(chunk, pos + WAL_FRAME_HEADER_SIZE, pad.page, 0, pageSize)
      : bytesEqual(chunk, pos + WAL_FRAME_HEADER_SIZE, chunk, pad.chunkOffset, pageSize))
  );
}

/**
 * Scans from `state` forward following SQLite's recovery rule and returns the complete commits
 * found. The result's `state` is positioned after the last commit (including its padding); frames
 * of an open transaction after it are not consumed. `state` itself is not modified.
 */
export function scanWal(read: WalReader, state: WalScanState, options: WalScanOptions = {}): WalScanResult {
  const header = state.header;
  const pageSize = header.pageSize;
  const fsz = frameSize(pageSize);
  const sectorSize = options.sectorSize ?? 0;
  const maxFrames = options.maxFrames ?? Infinity;
  const stableViews = options.stableViews ?? false;
  checkCount('state.nextFrame', state.nextFrame, 1);
  checkCount('options.sectorSize', sectorSize, 0);
  if (options.maxFrames !== undefined) checkCount('options.maxFrames', maxFrames, 0);
  const salt1 = header.salt1;
  const salt2 = header.salt2;
  const bigEndian = header.bigEndianChecksum;

  // Running checksum over every frame accepted so far (int32 bit patterns).
  const sum = new Int32Array(2);
  sum[0] = state.checksum[0];
  sum[1] = state.checksum[1];

  // Committed position (what the returned state will hold).
  let nextFrame = state.nextFrame;
  let committed: [number, number] = state.checksum;
  let commitCount = state.commits;
  let lastCommitFrame = state.lastCommitFrame ?? 0;
  const commits: WalCommit[] = [];

  // The open transaction (frames after the committed position).
  let txPages: Map<number, number> | null = null;
  let txFirst = 0;
  let txMaxPgno = 0;

  let pad = resumedPadding(read, state, sectorSize, stableViews);

  const frameLimit = state.nextFrame + maxFrames; // exclusive
  const maxReadFrames = Math.max(1, Math.floor(MAX_READ_BYTES / fsz));
  let readFrames = Math.min(maxReadFrames, Math.max(1, Math.floor(FIRST_READ_BYTES / fsz)));
  let frameNo = nextFrame;
  let stop: WalStop;

  scan: for (;;) {
    if (frameNo >= frameLimit) {
      stop = txPages === null ? 'end' : 'open-transaction';
      break;
    }
    const want = Math.min(readFrames, frameLimit - frameNo) * fsz;
    const chunk = read(frameOffset(frameNo, pageSize), want);
    const got = Math.min(chunk.byteLength, want);
    const whole = Math.floor(got / fsz);
    const cursor = whole > 0 ? new ChecksumCursor(bigEndian, chunk, sum) : null;

    for (let k = 0, pos = 0; k < whole; k++, pos += fsz, frameNo++) {
      // SQLite's order: salts, then pgno != 0, then the cumulative checksum.
      if (readU32BE(chunk, pos + 8) !== salt1 || readU32BE(chunk, pos + 12) !== salt2) {
        stop = 'salt-mismatch';
        break scan;
      }
      const pgno = readU32BE(chunk, pos);
      if (pgno === 0) {
        stop = 'checksum-mismatch';
        break scan;
      }
      cursor!.update(pos, 8);
      cursor!.update(pos + WAL_FRAME_HEADER_SIZE, pageSize);
      const s0 = sum[0]! >>> 0;
      const s1 = sum[1]! >>> 0;
      if (s0 !== readU32BE(chunk, pos + 16) || s1 !== readU32BE(chunk, pos + 20)) {
        stop = 'checksum-mismatch';
        break scan;
      }
      const commitSize = readU32BE(chunk, pos + 4);

      if (pad !== null) {
        // (pad is cleared by the first frame that is not padding, so no transaction is open here)
        if (isPadding(pad, chunk, pos, frameNo, pgno, commitSize, pageSize)) {
          committed = [s0, s1];
          nextFrame = frameNo + 1;
          if (pad.commit !== null) {
            pad.commit.paddingFrames++;
            pad.commit.lastFrame = frameNo;
            pad.commit.checksum = committed;
          }
          continue;
        }
        pad = null;
      }

      if (txPages === null) {
        txPages = new Map();
        txFirst = frameNo;
        txMaxPgno = 0;
      }
      txPages.set(pgno, frameNo);
      if (pgno > txMaxPgno) txMaxPgno = pgno;
      if (commitSize === 0) continue;

      // A valid commit frame: the transaction is complete.
      if (txMaxPgno > commitSize) {
        for (const p of txPages.keys()) if (p > commitSize) txPages.delete(p);
      }
      committed = [s0, s1];
      const commit: WalCommit = {
        index: ++commitCount,
        firstFrame: txFirst,
        commitFrame: frameNo,
        lastFrame: frameNo,
        commitSize,
        paddingFrames: 0,
        pages: txPages,
        checksum: committed,
      };
      commits.push(commit);
      txPages = null;
      nextFrame = frameNo + 1;
      lastCommitFrame = frameNo;
      if (sectorSize > 0) {
        const end = frameOffset(frameNo + 1, pageSize);
        const syncPoint = roundUp(end, sectorSize);
        if (end < syncPoint) {
          pad = { pgno, commitSize, syncPoint, commit, page: null, chunkOffset: pos + WAL_FRAME_HEADER_SIZE };
        }
      }
    }

    if (got < want) {
      // End of file: a partial frame is torn; otherwise we stopped at a frame boundary.
      stop = got > whole * fsz ? 'torn-frame' : txPages === null ? 'end' : 'open-transaction';
      break;
    }
    // The chunk may be a reused buffer: keep a copy of a padding reference that points into it.
    if (pad !== null && pad.page === null) {
      pad.page = stableViews ? chunk.subarray(pad.chunkOffset, pad.chunkOffset + pageSize) : chunk.slice(pad.chunkOffset, pad.chunkOffset + pageSize);
    }
    if (readFrames < maxReadFrames) readFrames = Math.min(maxReadFrames, readFrames * 2);
  }

  return {
    commits,
    state: { header, nextFrame, checksum: committed, commits: commitCount, lastCommitFrame },
    stop,
    stopFrame: frameNo,
  };
}

/**
 * Convenience for a whole file: parses the header at offset 0, then scans every frame.
 * Returns `{ header: null, problem }` if the header is invalid or the file is shorter than 32 bytes.
 */
export function scanWalFile(
  read: WalReader,
  options: WalScanOptions = {},
): { header: WalHeader | null; problem?: WalHeaderProblem; result?: WalScanResult } {
  const buf = read(0, WAL_HEADER_SIZE);
  const parsed = parseWalHeader(buf.byteLength > WAL_HEADER_SIZE ? buf.subarray(0, WAL_HEADER_SIZE) : buf);
  if ('problem' in parsed) return { header: null, problem: parsed.problem };
  return { header: parsed.header, result: scanWal(read, startScan(parsed.header), options) };
}
