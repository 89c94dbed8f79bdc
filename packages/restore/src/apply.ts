import { closeSync, fchmodSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { PageHashes, decodeObject, hex64, type Keyring, type ObjectHeader, type TransactionEvent } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { abortedError, objectFailure, restoreError } from './errors.js';
import { missing } from './replica.js';
import type { PlannedObject } from './plan.js';
import { RunWriter } from './run-writer.js';

/** Bytes per ranged GET when an object is read in pieces (bounds memory for large snapshots). */
export const PIECE_SIZE = 8 * 1024 * 1024;

/** Pages per decoder event while streaming into a file: memory stays one chunk, whatever the object holds. */
export const PAGES_PER_EVENT = 256;

/** Ranged GETs of one large object in flight at once while its earlier pieces are decoded. */
export const PIECES_AHEAD = 8;

/**
 * Buffers of one size, given back by whoever finished with them and handed out again: a GET read
 * into a recycled buffer costs no allocation and, on Linux, no faulting-in of fresh pages (which
 * cost restore more CPU than copying the bytes). New buffers are made only when none is free, so
 * recycling never holds more than the peak use; at most `keep` free ones are kept.
 */
export class PiecePool {
  readonly #free: ArrayBuffer[] = [];
  readonly #mine = new WeakSet<ArrayBuffer>();
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  take(): Uint8Array {
    const buffer = this.#free.pop() ?? new ArrayBuffer(this.size);
    this.#mine.add(buffer);
    return new Uint8Array(buffer);
  }

  /** Whether `buffer` was handed out by take() (and so belongs wholly to its holder). */
  owns(buffer: ArrayBufferLike): boolean {
    return buffer instanceof ArrayBuffer && this.#mine.has(buffer);
  }

  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.size && this.#free.length < this.keep) this.#free.push(buffer);
  }
}

/**
 * An object's bytes as ranged GETs of PIECE_SIZE, in order, with up to `ahead` pieces requested
 * before the one being consumed (at most (ahead + 1) x PIECE_SIZE held); a single GET when it is
 * small. Downloading the next pieces while one is decoded and written is what lets a large
 * snapshot restore near the speed of the network rather than of one request at a time. With a
 * pool of PIECE_SIZE buffers, each ranged GET is offered one to read into (GetOptions.into).
 */
export async function* objectBytes(storage: ObjectStorage, key: string, size: number, signal?: AbortSignal, ahead = 1, pool?: PiecePool): AsyncGenerator<Uint8Array> {
  if (size <= PIECE_SIZE) {
    const bytes = await storage.get(key, signal ? { signal } : {});
    if (bytes === null) throw missing(storage, key);
    yield bytes;
    return;
  }
  const inflight: { promise: Promise<Uint8Array | null>; length: number }[] = [];
  let start = 0;
  const launch = (): void => {
    while (inflight.length < Math.max(1, ahead) && start < size) {
      const end = Math.min(size, start + PIECE_SIZE) - 1;
      const into = pool?.take();
      const promise = storage.get(key, { range: { start, end }, ...(signal ? { signal } : {}), ...(into ? { into } : {}) });
      // Awaited in order below; a piece that fails after an earlier one already failed is not unhandled.
      promise.catch(() => undefined);
      inflight.push({ promise, length: end - start + 1 });
      start = end + 1;
    }
  };
  launch();
  while (inflight.length > 0) {
    const piece = inflight.shift() as (typeof inflight)[number];
    const bytes = await piece.promise;
    if (bytes === null) throw missing(storage, key);
    launch();
    // Read before the yield: the consumer may transfer the piece's buffer to another thread.
    const short = bytes.length !== piece.length;
    yield bytes;
    // A short piece means the object changed under us; the decoder reports the truncation.
    if (short) return;
  }
}

/** The fields a downloaded object's header must share with the header the plan was made from. */
export function sameHeader(a: ObjectHeader, b: ObjectHeader): boolean {
  return (
    a.kind === b.kind &&
    a.databaseId === b.databaseId &&
    a.generation === b.generation &&
    a.epoch === b.epoch &&
    a.level === b.level &&
    a.minTxid === b.minTxid &&
    a.maxTxid === b.maxTxid &&
    a.pageSize === b.pageSize &&
    a.commitSize === b.commitSize &&
    a.preChecksum === b.preChecksum &&
    a.postChecksum === b.postChecksum &&
    a.transactionCount === b.transactionCount &&
    a.pageCount === b.pageCount
  );
}

export function changed(key: string): Error {
  return restoreError('ERR_CORRUPT_OBJECT', `${key} changed between planning and download (its header differs); another process is writing this prefix. Run the restore again`, { key });
}

/**
 * Segment pages held before they are written, with a per-page allowance for the map: a hot page
 * that many transactions rewrite (a level-1 object keeps every one of them) is written once per
 * this many bytes of distinct pages instead of once per transaction.
 */
const STAGE_BYTES = 8 * 1024 * 1024;
const STAGE_OVERHEAD = 128;

/**
 * A database file being built page by page, with the rolling checksum kept up to date so every
 * transaction's post-apply checksum is checked as it is applied.
 */
export class PageFile {
  readonly path: string;
  readonly pageSize: number;
  readonly hashes: PageHashes;
  #fd: number;
  #pages = 0;
  /** Contiguous pages waiting for one write. */
  readonly #run: RunWriter;
  /** Segment pages not written yet, by page number (their own copies); disjoint from the run. */
  readonly #staged = new Map<number, Uint8Array>();
  #stagedBytes = 0;

  constructor(path: string, pageSize: number, options: { create: boolean; hashes?: PageHashes; mode?: number }) {
    this.path = path;
    this.pageSize = pageSize;
    // Decrypted pages: the owner's only unless asked otherwise, whatever the umask (fchmod).
    const mode = options.mode ?? 0o600;
    this.#fd = openSync(path, options.create ? 'wx' : 'r+', mode);
    fchmodSync(this.#fd, mode);
    this.hashes = options.hashes ?? new PageHashes(pageSize);
    this.#pages = Math.floor(fstatSync(this.#fd).size / pageSize);
    this.#run = new RunWriter(this.#fd, pageSize, options.create ? { directPath: path } : {});
  }

  /** A page of a sequential stream (a snapshot). `hash`: H(pgno, data) when the decoder computed it already. */
  writePage(pgno: number, data: Uint8Array, hash?: bigint): void {
    if (this.#staged.size > 0) this.#writeStaged();
    this.#run.append(pgno, data);
    this.#hash(pgno, data, hash);
  }

  /** A page another thread wrote to this file (the snapshot thread): only its hash is recorded. */
  recordPage(pgno: number, hash: bigint): void {
    this.hashes.setHash(pgno, hash);
    if (pgno > this.#pages) this.#pages = pgno;
  }

  /**
   * A page of a segment: held (copied) until STAGE_BYTES of distinct pages wait or the file is
   * finished, so a page that later transactions rewrite is written once. The checksum is updated at
   * once: every transaction is still checked.
   */
  stagePage(pgno: number, data: Uint8Array): void {
    if (this.#run.pending > 0) this.flush();
    const held = this.#staged.get(pgno);
    if (held) {
      held.set(data);
    } else {
      if (this.#stagedBytes + this.pageSize + STAGE_OVERHEAD > STAGE_BYTES) this.#writeStaged();
      // Copied: the decoder's page buffers may be reused once this returns.
      this.#staged.set(pgno, data.slice());
      this.#stagedBytes += this.pageSize + STAGE_OVERHEAD;
    }
    this.#hash(pgno, data, undefined);
  }

  #hash(pgno: number, data: Uint8Array, hash: bigint | undefined): void {
    if (hash === undefined) this.hashes.set(pgno, data);
    else this.hashes.setHash(pgno, hash);
    if (pgno > this.#pages) this.#pages = pgno;
  }

  /** Writes the staged pages in page order, contiguous ones in one call. */
  #writeStaged(): void {
    const pgnos = [...this.#staged.keys()].sort((a, b) => a - b);
    for (const pgno of pgnos) this.#run.append(pgno, this.#staged.get(pgno) as Uint8Array);
    this.flush();
    this.#staged.clear();
    this.#stagedBytes = 0;
  }

  /** Writes the pending run of pages. */
  flush(): void {
    this.#run.flush();
  }

  /** Page bytes written to the file so far (by this thread). */
  get bytesWritten(): number {
    return this.#run.bytesWritten;
  }

  /** The database's size after a commit: pages above it leave the file (and the staged pages) at once, so they cannot reappear. */
  setSize(commitSize: number): void {
    this.flush();
    if (commitSize < this.#pages) {
      for (const pgno of [...this.#staged.keys()]) {
        if (pgno > commitSize) {
          this.#staged.delete(pgno);
          this.#stagedBytes -= this.pageSize + STAGE_OVERHEAD;
        }
      }
      ftruncateSync(this.#fd, commitSize * this.pageSize);
    }
    this.hashes.truncate(commitSize);
    this.#pages = commitSize;
  }

  /**
   * Applies one verified transaction and checks the checksum it must leave. `where` names the
   * object for the error.
   */
  apply(t: TransactionEvent, where: string): void {
    for (const p of t.pages) this.stagePage(p.pgno, p.data);
    this.commit(t, where);
  }

  /** Ends a transaction whose pages are written: its commit size, then the checksum it must leave. */
  commit(t: Pick<TransactionEvent, 'txid' | 'commitSize' | 'postChecksum'>, where: string): void {
    this.setSize(t.commitSize);
    if (this.hashes.value !== t.postChecksum) {
      throw restoreError(
        'ERR_CHAIN_MISMATCH',
        `${where}: after applying txid ${t.txid} the database checksum is ${hex64(this.hashes.value)}, but the object says ${hex64(t.postChecksum)}; the chain does not hold. Do not use this replica past txid ${t.txid - 1} until it is explained`,
        { key: where, txid: t.txid, expected: hex64(t.postChecksum), actual: hex64(this.hashes.value) },
      );
    }
  }

  /**
   * Sets the final length (commit size, lock page included) and makes it durable; with `sync: false`
   * the caller makes it durable itself (a restore: in the background while the file is checked).
   */
  finish(commitSize: number, options: { sync?: boolean } = {}): void {
    this.#writeStaged();
    ftruncateSync(this.#fd, commitSize * this.pageSize);
    if (options.sync ?? true) fsyncSync(this.#fd);
  }

  /** Waits for the background syncs of long runs written with O_DIRECT (see RunWriter); throws a failed one's error. */
  settle(): Promise<void> {
    return this.#run.settle();
  }

  /** Without finish() first (a failed restore) pending pages are dropped: the scratch file goes anyway. */
  close(): void {
    this.#run.discard();
    this.#run.close();
    this.#staged.clear();
    this.#stagedBytes = 0;
    if (this.#fd >= 0) {
      closeSync(this.#fd);
      this.#fd = -1;
    }
  }
}

/**
 * Streams the snapshot into a fresh file. The file is scratch until the snapshot's end event has
 * verified every chunk and the pages' checksum: a failure leaves it to be deleted. A large
 * unencrypted snapshot is decoded by a worker thread instead (decodeSnapshotInThread, chosen by
 * the caller); both end with checkSnapshot.
 */
export async function writeSnapshot(
  storage: ObjectStorage,
  file: PageFile,
  object: PlannedObject,
  keyring: Keyring | undefined,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  let ended = false;
  const source = (async function* () {
    for await (const piece of objectBytes(storage, object.key, object.size, signal, PIECES_AHEAD)) {
      onBytes(piece.length);
      yield piece;
    }
  })();
  try {
    for await (const event of decodeObject(source, { name: object.key, objectSize: object.size, maxPagesPerEvent: PAGES_PER_EVENT, reuseBuffers: true, ...(keyring ? { keyring } : {}) })) {
      if (signal?.aborted) throw abortedError(signal.reason);
      if (event.type === 'header') {
        if (!sameHeader(event.header, object.header)) throw changed(object.key);
      } else if (event.type === 'transaction') {
        for (const p of event.pages) file.writePage(p.pgno, p.data, p.hash);
      } else {
        ended = true;
      }
    }
  } catch (e) {
    throw objectFailure(e, object.key, 'downloading');
  }
  checkSnapshot(file, object, ended);
}

/** After a snapshot's pages are in: its trailer was reached, and the pages hash to its post-apply checksum. */
export function checkSnapshot(file: PageFile, object: PlannedObject, ended: boolean): void {
  if (!ended) throw restoreError('ERR_CORRUPT_OBJECT', `${object.key} ended before its trailer`, { key: object.key });
  file.setSize(object.commitSize);
  if (file.hashes.value !== object.postChecksum) {
    throw restoreError('ERR_CHAIN_MISMATCH', `${object.key}: the snapshot's pages hash to ${hex64(file.hashes.value)}, its header says ${hex64(object.postChecksum)}`, {
      key: object.key,
      expected: hex64(object.postChecksum),
      actual: hex64(file.hashes.value),
    });
  }
}

/** Hashes a database file from disk (every page but the lock page). */
export function hashFile(path: string, pageSize: number): { checksum: bigint; pages: number; size: number; hashes: PageHashes } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const hashes = new PageHashes(pageSize);
    const pages = Math.floor(size / pageSize);
    const batch = 128;
    const buf = new Uint8Array(pageSize * batch);
    for (let first = 1; first <= pages; first += batch) {
      const n = Math.min(batch, pages - first + 1);
      let got = 0;
      while (got < n * pageSize) {
        const r = readSync(fd, buf, got, n * pageSize - got, (first - 1) * pageSize + got);
        if (r === 0) break;
        got += r;
      }
      for (let i = 0; i < Math.floor(got / pageSize); i++) {
        const pgno = first + i;
        if (pgno !== hashes.lockPage) hashes.set(pgno, buf.subarray(i * pageSize, (i + 1) * pageSize));
      }
    }
    return { checksum: hashes.value, pages, size, hashes };
  } finally {
    closeSync(fd);
  }
}

