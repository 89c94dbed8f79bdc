import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, frameOffset, frameSize, parseWalHeader, type WalHeader } from './wal/format.js';
import { scanWal, startScan, type WalCommit, type WalReader, type WalScanState } from './wal/scanner.js';
import type { WalObserver } from './node-vfs.js';
import { WalshipError } from './errors.js';

/** One page image of a committed transaction. */
export interface CapturedPage {
  pgno: number;
  /**
   * The page bytes: a view into walship's copy of the WAL, valid only until `onCommit` returns (the
   * next WAL write may reuse it). A sink that keeps a page copies it; `wal` says where to re-read it.
   */
  data: Uint8Array;
}

/** Where a transaction lives in the `-wal` file, so a consumer can find (or re-read) its frames. */
export interface WalLocation {
  salt1: number;
  salt2: number;
  checkpointSeq: number;
  /** 1-based number of this commit within the current WAL (the WAL restarts after each checkpoint). */
  commitIndex: number;
  firstFrame: number;
  lastFrame: number;
  /** Byte offset of the first frame, and the byte length of all its frames (padding included). */
  offset: number;
  length: number;
}

/** A committed transaction as it left the VFS: the last image of every page it wrote. */
export interface CommittedTransaction {
  /** 1 for the first transaction of a new database, +1 per commit, across restarts and checkpoints. */
  txid: number;
  pageSize: number;
  /** Database size in pages after the commit. Pages above it are gone (the file is truncated). */
  commitSize: number;
  /** Sorted by pgno, each page once, only pgno <= commitSize. Views valid only during `onCommit` (see CapturedPage). */
  pages: CapturedPage[];
  /** Milliseconds since the epoch when walship saw the commit (for recovered ones: when it was recovered). */
  timestamp: number;
  /** Where it is in the WAL; null for a transaction rebuilt from the database file (see recovery). */
  wal: WalLocation | null;
  /** True when emitted again on open (crash recovery), false when seen live. */
  recovered: boolean;
}

export interface CaptureOptions {
  /** Reads bytes of the `-wal` file from disk (fewer at EOF). */
  readWal: (offset: number, length: number) => Uint8Array;
  /** Padding rule for the scanner: the sector size when SQLite pads (no POWERSAFE_OVERWRITE), else 0. */
  paddingSectorSize: number;
  /** Receives every committed transaction, in txid order. */
  emit: (txn: CommittedTransaction) => void;
}

const MIRROR_LIMIT = 64 * 1024 * 1024;
const MIRROR_INITIAL = 256 * 1024;
/** A mirror grown past this by a large transaction goes back to MIRROR_INITIAL once it is empty. */
const MIRROR_SHRINK_ABOVE = 8 * 1024 * 1024;

/** What the mirror's ArrayBuffer needs to grow and shrink in place (ES2024; not in this lib). */
interface ResizableBuffer {
  readonly resizable?: boolean;
  resize(byteLength: number): void;
}

/**
 * The mirror's memory: a resizable ArrayBuffer where the runtime has them (Node 20+, Deno 2), so a
 * large transaction grows it in place (no copy, and only the bytes it uses are touched: fresh pages
 * cost a page fault each, which made mirroring a 35 MB transaction cost about half of it) and it
 * can give the memory back afterwards. Elsewhere a plain array that grows by copying.
 */
function mirrorBuffer(): Uint8Array {
  try {
    const Resizable = ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer;
    const buffer = new Resizable(MIRROR_INITIAL, { maxByteLength: MIRROR_LIMIT });
    if ((buffer as unknown as ResizableBuffer).resizable === true) return new Uint8Array(buffer);
  } catch {
    // A runtime without resizable ArrayBuffers: the copying mirror below.
  }
  return new Uint8Array(MIRROR_INITIAL);
}

/**
 * Turns the write stream of a `-wal` file into committed transactions.
 *
 * Writes are copied into a mirror of the WAL region after the last consumed commit, so the scan that
 * runs when SQLite reports a finished commit reads memory, not disk. The scan itself is the recovery
 * scan (salts, cumulative checksums, commit frames), started from the position after the previous
 * commit, so live capture and a scan of the file after a crash produce the same transactions.
 * If the mirror cannot be kept exact (a write outside it, or it grows past its limit) the scan reads
 * the file instead, which is slower and just as correct.
 */
export class WalCapture implements WalObserver {
  private readonly options: CaptureOptions;
  private state: WalScanState | null = null;
  private headerBytes: Uint8Array | null = null;
  private headerDirty = false;
  /** Length-tracking over a resizable buffer where available (see mirrorBuffer). */
  private mirror = mirrorBuffer();
  private mirrorBase = WAL_HEADER_SIZE;
  private mirrorEnd = WAL_HEADER_SIZE;
  /** The first byte the next scan can need (mirrorBase <= mirrorKeep <= mirrorEnd). */
  private mirrorKeep = WAL_HEADER_SIZE;
  private mirrorValid = false;
  private nextTxid = 1;
  private failure: WalshipError | null = null;
  private suspended = true;

  constructor(options: CaptureOptions) {
    this.options = options;
  }

  /** The error that stopped capture, if any. Once set, every later WAL write is refused by the VFS. */
  get failed(): WalshipError | null {
    return this.failure;
  }

  get lastTxid(): number {
    return this.nextTxid - 1;
  }

  /** Commits consumed in the current WAL generation, and its salts (null before the first frame). */
  get position(): { commits: number; salt1: number; salt2: number; checkpointSeq: number } | null {
    if (!this.state) return null;
    return {
      commits: this.state.commits,
      salt1: this.state.header.salt1,
      salt2: this.state.header.salt2,
      checkpointSeq: this.state.header.checkpointSeq,
    };
  }

  /**
   * Starts live capture from a state found by scanning the file at open. `nextTxid` is the txid the
   * next commit will get.
   */
  resume(state: WalScanState | null, nextTxid: number): void {
    this.state = state;
    this.nextTxid = nextTxid;
    this.headerDirty = false;
    this.headerBytes = null;
    this.resetMirror(state ? frameOffset(state.nextFrame, state.header.pageSize) : WAL_HEADER_SIZE, true);
    this.suspended = false;
  }

  walWrite(data: Uint8Array, offset: number): void {
    if (this.failure) throw this.failure;
    if (offset < WAL_HEADER_SIZE) {
      // A new WAL generation (after a checkpoint or on the first commit): frames restart at 32.
      if (offset === 0 && data.length >= WAL_HEADER_SIZE) this.headerBytes = data.slice(0, WAL_HEADER_SIZE);
      else this.headerBytes = null;
      this.headerDirty = true;
      this.resetMirror(WAL_HEADER_SIZE, true);
      if (data.length > WAL_HEADER_SIZE) this.mirrorWrite(data.subarray(WAL_HEADER_SIZE), WAL_HEADER_SIZE);
      return;
    }
    this.mirrorWrite(data, offset);
  }

  walTruncate(size: number): void {
    if (size <= WAL_HEADER_SIZE) {
      this.state = null;
      this.headerBytes = null;
      this.headerDirty = true;
      this.resetMirror(WAL_HEADER_SIZE, true);
      return;
    }
    if (this.state && size < frameOffset(this.state.nextFrame, this.state.header.pageSize)) {
      // Truncating into frames already consumed only happens when the WAL is being restarted.
      this.state = null;
      this.headerDirty = true;
    }
    if (size < this.mirrorEnd) this.mirrorEnd = Math.max(this.mirrorBase, size);
    if (this.mirrorKeep > this.mirrorEnd) this.mirrorKeep = this.mirrorEnd;
  }

  walWriteFailed(): void {
    this.mirrorValid = false;
  }

  commitPhaseTwo(): void {
    if (this.suspended || this.failure) return;
    try {
      this.capture();
    } catch (e) {
      this.failure =
        e instanceof WalshipError && e.code.startsWith('ERR_CAPTURE')
          ? e
          : new WalshipError('ERR_CAPTURE_FAILED', `capture failed after a commit: ${e instanceof Error ? e.message : String(e)}; the database refuses further writes until it is reopened`, { cause: e });
    }
  }

  /** Stops emitting (used while the owner runs its own bookkeeping statements at open). */
  suspend(): void {
    this.suspended = true;
  }

  private capture(): void {
    if (this.headerDirty || !this.state) {
      const bytes = this.headerBytes ?? this.readDisk(0, WAL_HEADER_SIZE);
      const parsed = parseWalHeader(bytes);
      if (!('header' in parsed)) {
        if (bytes.length === 0) return;
        throw new WalshipError('ERR_CAPTURE_WAL_HEADER', `the WAL header SQLite just wrote does not validate (${parsed.problem})`, { details: { problem: parsed.problem } });
      }
      this.state = startScan(parsed.header);
      this.headerDirty = false;
    }
    const state = this.state;
    const header = state.header;
    const result = scanWal(this.reader, state, { sectorSize: this.options.paddingSectorSize, stableViews: true });
    for (const commit of result.commits) {
      this.options.emit(this.buildTransaction(header, commit, false, this.nextTxid++));
    }
    this.state = result.state;
    // Keep the last commit frame in the mirror while frames after it could still be its sector
    // padding: the next scan compares them with it, and should not have to read it from disk.
    const next = result.state.nextFrame;
    const lastCommit = result.state.lastCommitFrame ?? 0;
    const sector = this.options.paddingSectorSize;
    const padPossible =
      sector > 0 && lastCommit > 0 && frameOffset(next, header.pageSize) < Math.ceil(frameOffset(lastCommit + 1, header.pageSize) / sector) * sector;
    const keepFrom = frameOffset(padPossible ? lastCommit : next, header.pageSize);
    if (this.mirrorValid && keepFrom >= this.mirrorBase && keepFrom <= this.mirrorEnd) {
      // Bytes before keepFrom are no longer needed; they are dropped when the mirror runs out of room.
      this.mirrorKeep = keepFrom;
      if (keepFrom === this.mirrorEnd && this.mirror.length > MIRROR_SHRINK_ABOVE) {
        // Nothing left that a scan needs, after a large transaction: give its memory back.
        this.resetMirror(keepFrom, true);
        this.resizeMirror(MIRROR_INITIAL);
      }
    } else {
      this.resetMirror(frameOffset(next, header.pageSize), true);
    }
  }

  /**
   * Builds the transaction for one commit of a WAL whose frames can be read with `read`.
   * Also used at open for the commits found in the file.
   */
  buildTransaction(header: WalHeader, commit: WalCommit, recovered: boolean, txid: number, read: WalReader = this.reader): CommittedTransaction {
    const pageSize = header.pageSize;
    const pgnos = [...commit.pages.keys()].sort((a, b) => a - b);
    const pages: CapturedPage[] = new Array(pgnos.length);
    for (let i = 0; i < pgnos.length; i++) {
      const pgno = pgnos[i]!;
      const frame = commit.pages.get(pgno)!;
      const at = frameOffset(frame, pageSize) + WAL_FRAME_HEADER_SIZE;
      const bytes = read(at, pageSize);
      if (bytes.length !== pageSize) {
        throw new WalshipError('ERR_CAPTURE_SHORT_READ', `frame ${frame} of the WAL is shorter than a page`, { details: { frame, pgno } });
      }
      // A view, not a copy: the sink hashes or copies what it needs while it runs (CapturedPage).
      pages[i] = { pgno, data: bytes };
    }
    const offset = frameOffset(commit.firstFrame, pageSize);
    return {
      txid,
      pageSize,
      commitSize: commit.commitSize,
      pages,
      timestamp: Date.now(),
      wal: {
        salt1: header.salt1,
        salt2: header.salt2,
        checkpointSeq: header.checkpointSeq,
        commitIndex: commit.index,
        firstFrame: commit.firstFrame,
        lastFrame: commit.lastFrame,
        offset,
        length: (commit.lastFrame - commit.firstFrame + 1) * frameSize(pageSize),
      },
      recovered,
    };
  }

  /** Reads from the mirror when it covers the range; the mirror's end is the end of what can be valid. */
  private readonly reader: WalReader = (offset, length) => {
    if (this.mirrorValid && offset >= this.mirrorBase) {
      const start = offset - this.mirrorBase;
      const end = Math.min(this.mirrorEnd - this.mirrorBase, start + length);
      return end > start ? this.mirror.subarray(start, end) : new Uint8Array(0);
    }
    return this.readDisk(offset, length);
  };

  private readDisk(offset: number, length: number): Uint8Array {
    return this.options.readWal(offset, length);
  }

  private resetMirror(base: number, valid: boolean): void {
    this.mirrorBase = base;
    this.mirrorKeep = base;
    this.mirrorEnd = base;
    this.mirrorValid = valid;
  }

  /** Grows (keeping the bytes in use) or shrinks the mirror: in place when its buffer is resizable. */
  private resizeMirror(size: number): void {
    const buffer = this.mirror.buffer as unknown as ResizableBuffer;
    if (buffer.resizable === true) {
      buffer.resize(size);
      return;
    }
    const next = new Uint8Array(size);
    next.set(this.mirror.subarray(0, Math.min(size, this.mirrorEnd - this.mirrorBase)));
    this.mirror = next;
  }

  private mirrorWrite(data: Uint8Array, offset: number): void {
    if (!this.mirrorValid) return;
    if (offset < this.mirrorBase || offset > this.mirrorEnd) {
      this.mirrorValid = false;
      return;
    }
    const end = offset + data.length;
    let need = end - this.mirrorBase;
    if (need > this.mirror.length && this.mirrorKeep > this.mirrorBase && offset >= this.mirrorKeep) {
      // Out of room: drop what no scan needs any more (once per mirror-full, not once per commit).
      this.mirror.copyWithin(0, this.mirrorKeep - this.mirrorBase, this.mirrorEnd - this.mirrorBase);
      this.mirrorBase = this.mirrorKeep;
      need = end - this.mirrorBase;
    }
    if (need > this.mirror.length) {
      if (need > MIRROR_LIMIT) {
        this.mirrorValid = false;
        return;
      }
      let size = this.mirror.length * 2;
      while (size < need) size *= 2;
      this.resizeMirror(Math.min(size, MIRROR_LIMIT));
    }
    this.mirror.set(data, offset - this.mirrorBase);
    if (end > this.mirrorEnd) this.mirrorEnd = end;
  }
}
