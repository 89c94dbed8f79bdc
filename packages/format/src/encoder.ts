import { checksum, lockPageNumber } from './checksum.js';
import type { Checksum, StreamingHash } from './checksum.js';
import { COMPRESSIONS, DEFAULT_COMPRESSION, DEFAULT_ZSTD_LEVEL, codecsLoaded, compress } from './codec.js';
import { Keyring, deriveObjectKey, randomNoncePrefix, randomSalt, seal } from './crypto.js';
import { FormatError, invalidArgument } from './errors.js';
import {
  CHUNK,
  CHUNK_FLAG_FINAL,
  CHUNK_FLAG_STORED,
  CHUNK_HEADER_SIZE,
  DEFAULT_CHUNK_SIZE,
  FORMAT_MINOR,
  FORMAT_VERSION,
  GCM_TAG_SIZE,
  HEADER_FLAG_ENCRYPTED,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  NONCE_PREFIX_SIZE,
  PAGE_RECORD_HEADER_SIZE,
  SALT_SIZE,
  TRANSACTION_RECORD_SIZE,
  encodeHeader,
  encodeTrailerBody,
  headerProblem,
  hex64,
  viewOf,
  writeU64,
} from './format.js';
import { IndexBuilder, writeTransactionRecord } from './index-block.js';
import type { Compression, HeaderFields, ObjectHeader, ObjectHeaderInit } from './format.js';

export interface EncoderOptions {
  /** zstd level (1..19); default DEFAULT_ZSTD_LEVEL. Readers do not need to know it. */
  compressionLevel?: number;
  /** When given, every chunk is sealed with the keyring's primary key. */
  keyring?: Keyring;
  /** Raw bytes of logical stream per chunk, 1 KiB..16 MiB; default 1 MiB. */
  chunkSize?: number;
}

export interface TransactionFields {
  txid: number;
  /** Commit time, ms since the epoch. */
  timestamp: number;
  /** Database size in pages after this transaction. */
  commitSize: number;
  /** Rolling database checksum after this transaction. */
  postChecksum: bigint;
}

export interface TransactionStart extends TransactionFields {
  /**
   * Page records this transaction will write. When given (or known: a snapshot, or the object's
   * last transaction), pages stream straight into chunks; otherwise the encoder holds a copy of the
   * transaction's pages until endTransaction, because the record that precedes them carries the
   * count.
   */
  pageCount?: number;
}

export interface PageRecord {
  pgno: number;
  data: Uint8Array;
  /** Set by the decoder on a snapshot's pages: H(pgno, page), which it computed to check the snapshot (a reader keeping a PageHashes need not hash the page again). */
  hash?: bigint;
}

export interface TransactionInput extends TransactionFields {
  pages: readonly PageRecord[];
}

type State = 'ready' | 'transaction' | 'finished' | 'failed';

interface OpenTransaction extends TransactionFields {
  /** Null while the count is unknown: pages are held in `held` until endTransaction. */
  pageCount: number | null;
  held: Uint8Array[];
  written: number;
  seen: Set<number>;
  nextSnapshotPage: number;
  snapshotChecksum: bigint;
}

/**
 * Writes one object (a segment or a snapshot) as a state machine:
 *
 *   new SegmentEncoder(header) -> (beginTransaction -> writePage* -> endTransaction)+ -> finish
 *
 * Every call is checked against the header given up front and against the calls before it; a
 * wrong call throws ERR_INVALID_ARGUMENT and the encoder refuses all later calls. Bytes become
 * available through take() as chunks complete, so an object of any size is encoded (and uploaded,
 * e.g. as multipart parts) in memory bounded by the chunk size. Requires `await loadFormat()`.
 */
export class SegmentEncoder {
  readonly header: ObjectHeader;
  readonly #headerBytes: Uint8Array;
  readonly #checksum: Checksum;
  readonly #objectHash: StreamingHash;
  readonly #compression: Compression;
  readonly #level: number;
  readonly #chunkSize: number;
  readonly #key: Uint8Array | null;
  readonly #lockPage: number;
  readonly #index = new IndexBuilder();
  readonly #raw: Uint8Array;
  readonly #rawView: DataView;
  #rawLength = 0;
  #rawOffset = 0;
  #chunkCount = 0;
  #out: Uint8Array[] = [];
  #bytesWritten = 0;
  #state: State = 'ready';
  #failure: FormatError | null = null;
  #tx: OpenTransaction | null = null;
  #last: TransactionFields | null = null;
  #transactionCount = 0;
  #pageCount = 0;

  constructor(fields: ObjectHeaderInit, options: EncoderOptions = {}) {
    this.#checksum = checksum();
    const problem = headerProblem(fields);
    if (problem) throw invalidArgument(`SegmentEncoder: ${problem}`, { field: 'header' });
    const compression = fields.compression ?? DEFAULT_COMPRESSION;
    if (!COMPRESSIONS.includes(compression)) {
      throw invalidArgument(`SegmentEncoder: compression ${String(compression)} is not one of ${COMPRESSIONS.join(', ')}`);
    }
    if (compression === 'zstd' && !codecsLoaded()) {
      throw new FormatError('ERR_NOT_INITIALIZED', 'the zstd codec is not loaded: call `await loadFormat()` once before encoding');
    }
    const level = options.compressionLevel ?? DEFAULT_ZSTD_LEVEL;
    if (!Number.isInteger(level) || level < 1 || level > 19) throw invalidArgument(`SegmentEncoder: compressionLevel ${level} is not an integer in 1..19`);
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
      throw invalidArgument(`SegmentEncoder: chunkSize ${chunkSize} is not an integer in ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`);
    }
    if (options.keyring !== undefined && !(options.keyring instanceof Keyring)) {
      throw invalidArgument('SegmentEncoder: keyring must be a Keyring (new Keyring({ keys: [...] }))');
    }
    const keyId = options.keyring?.primary ?? null;
    const salt = keyId === null ? new Uint8Array(SALT_SIZE) : randomSalt();
    this.header = {
      ...pickHeaderFields(fields),
      formatVersion: FORMAT_VERSION,
      formatMinor: FORMAT_MINOR,
      flags: keyId === null ? 0 : HEADER_FLAG_ENCRYPTED,
      compression,
      keyId,
      salt,
      noncePrefix: keyId === null ? new Uint8Array(NONCE_PREFIX_SIZE) : randomNoncePrefix(),
    };
    this.#key = keyId === null ? null : (deriveObjectKey(options.keyring as Keyring, keyId, salt) as Uint8Array);
    this.#compression = compression;
    this.#level = level;
    this.#chunkSize = chunkSize;
    this.#lockPage = lockPageNumber(fields.pageSize);
    this.#raw = new Uint8Array(Math.max(chunkSize, PAGE_RECORD_HEADER_SIZE + fields.pageSize));
    this.#rawView = viewOf(this.#raw);
    this.#objectHash = this.#checksum.createXxh64();
    this.#headerBytes = encodeHeader(this.header);
    this.#emit(this.#headerBytes);
  }

  /** 'ready' (between transactions), 'transaction', 'finished' or 'failed'. */
  get state(): State {
    return this.#state;
  }

  /** Bytes of the object produced so far (taken or not). */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** The bytes completed since the last call, in order. Concatenated, all calls give the object. */
  take(): Uint8Array[] {
    const out = this.#out;
    this.#out = [];
    return out;
  }

  beginTransaction(start: TransactionStart): void {
    this.#expect('ready', 'beginTransaction');
    const h = this.header;
    const fields: Partial<TransactionStart> = start ?? {};
    const { txid = Number.NaN, timestamp = Number.NaN, commitSize = Number.NaN, postChecksum } = fields;
    if (this.#transactionCount >= h.transactionCount) throw this.#fail(`beginTransaction: the header announces ${h.transactionCount} transactions, this is one more`);
    if (!Number.isSafeInteger(txid) || txid < h.minTxid || txid > h.maxTxid) {
      throw this.#fail(`beginTransaction: txid ${txid} is not a safe integer within the header's ${h.minTxid}..${h.maxTxid}`);
    }
    if (this.#last && txid <= this.#last.txid) throw this.#fail(`beginTransaction: txid ${txid} does not follow txid ${this.#last.txid}; txids must increase`);
    if (h.kind === 'snapshot' && txid !== h.maxTxid) throw this.#fail(`beginTransaction: a snapshot's transaction has txid ${h.maxTxid}, not ${txid}`);
    if (h.kind === 'segment' && h.level === 0) {
      const expected = this.#last ? this.#last.txid + 1 : h.minTxid;
      if (txid !== expected) throw this.#fail(`beginTransaction: a level-0 segment holds every txid from ${h.minTxid}; expected ${expected}, got ${txid}`);
    }
    if (!Number.isSafeInteger(timestamp) || timestamp < h.firstTimestamp || timestamp > h.lastTimestamp) {
      throw this.#fail(`beginTransaction: timestamp ${timestamp} of txid ${txid} is outside the header's ${h.firstTimestamp}..${h.lastTimestamp}`);
    }
    if (!this.#last && timestamp !== h.firstTimestamp) {
      throw this.#fail(`beginTransaction: the first transaction's timestamp ${timestamp} differs from the header's first timestamp ${h.firstTimestamp}`);
    }
    if (this.#last && timestamp < this.#last.timestamp) {
      throw this.#fail(
        `beginTransaction: timestamp ${timestamp} of txid ${txid} is before ${this.#last.timestamp} of txid ${this.#last.txid}; ` +
          'timestamps must not decrease within an object (clamp a clock that stepped back)',
      );
    }
    if (!Number.isInteger(commitSize) || commitSize < 1 || commitSize > 0xffffffff) {
      throw this.#fail(`beginTransaction: commit size ${commitSize} of txid ${txid} is not an integer in 1..4294967295`);
    }
    if (typeof postChecksum !== 'bigint' || postChecksum < 0n || postChecksum >= 1n << 64n) {
      throw this.#fail(`beginTransaction: post-apply checksum ${String(postChecksum)} of txid ${txid} is not a bigint in 0..2^64-1`);
    }
    const remaining = h.pageCount - this.#pageCount;
    const isLast = this.#transactionCount === h.transactionCount - 1;
    const pageCount = fields.pageCount ?? (isLast ? remaining : null);
    const minPages = h.kind === 'segment' ? 1 : 0;
    if (pageCount !== null && (!Number.isInteger(pageCount) || pageCount < minPages || pageCount > remaining)) {
      throw this.#fail(`beginTransaction: pageCount ${pageCount} of txid ${txid} is not in ${minPages}..${remaining} (pages the header still expects)`);
    }
    if (h.kind === 'snapshot' && (commitSize !== h.commitSize || pageCount !== h.pageCount)) {
      throw this.#fail(`beginTransaction: a snapshot's transaction has the header's commit size ${h.commitSize} and ${h.pageCount} pages`);
    }
    const tx: OpenTransaction = {
      txid,
      timestamp,
      commitSize,
      postChecksum: postChecksum as bigint,
      pageCount,
      held: [],
      written: 0,
      seen: new Set(),
      nextSnapshotPage: 1,
      snapshotChecksum: 0n,
    };
    if (pageCount !== null) this.#appendRecord(tx, pageCount);
    this.#tx = tx;
    this.#state = 'transaction';
  }

  writePage(pgno: number, data: Uint8Array): void {
    this.#expect('transaction', 'writePage');
    const tx = this.#tx as OpenTransaction;
    const pageSize = this.header.pageSize;
    if (tx.written === tx.pageCount) throw this.#fail(`writePage: txid ${tx.txid} announced ${tx.pageCount} pages, this is one more`);
    if (this.#pageCount === this.header.pageCount) throw this.#fail(`writePage: the header announces ${this.header.pageCount} pages, this is one more`);
    if (!(data instanceof Uint8Array) || data.length !== pageSize) {
      const found = data instanceof Uint8Array ? `${data.length} bytes` : `a ${typeof data}`;
      throw this.#fail(`writePage: page ${pgno} of txid ${tx.txid} is ${found}, the page size is ${pageSize}`);
    }
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > tx.commitSize) {
      throw this.#fail(`writePage: page ${pgno} of txid ${tx.txid} is outside the database (1..${tx.commitSize} after this transaction)`);
    }
    if (pgno === this.#lockPage) throw this.#fail(`writePage: page ${pgno} is the lock-byte page for page size ${pageSize}; it is never stored`);
    if (this.header.kind === 'snapshot') {
      if (pgno !== tx.nextSnapshotPage) {
        throw this.#fail(`writePage: a snapshot writes pages in order 1..${tx.commitSize} (skipping the lock page); expected ${tx.nextSnapshotPage}, got ${pgno}`);
      }
      tx.nextSnapshotPage = pgno + 1 === this.#lockPage ? pgno + 2 : pgno + 1;
      tx.snapshotChecksum ^= this.#checksum.pageHash(pgno, data);
    } else {
      if (tx.seen.has(pgno)) throw this.#fail(`writePage: page ${pgno} appears twice in txid ${tx.txid}; write only its last image`);
      tx.seen.add(pgno);
    }
    if (tx.pageCount === null) {
      const record = new Uint8Array(PAGE_RECORD_HEADER_SIZE + pageSize);
      viewOf(record).setUint32(0, pgno);
      record.set(data, PAGE_RECORD_HEADER_SIZE);
      tx.held.push(record);
    } else {
      this.#appendPage(pgno, data);
    }
    tx.written++;
    this.#pageCount++;
  }

  endTransaction(): void {
    this.#expect('transaction', 'endTransaction');
    const tx = this.#tx as OpenTransaction;
    if (tx.pageCount === null) {
      if (tx.written === 0 && this.header.kind === 'segment') throw this.#fail(`endTransaction: txid ${tx.txid} wrote no page; every transaction has one`);
      this.#appendRecord(tx, tx.written);
      for (const record of tx.held) this.#appendPage(viewOf(record).getUint32(0), record.subarray(PAGE_RECORD_HEADER_SIZE));
      tx.held = [];
    } else if (tx.written !== tx.pageCount) {
      throw this.#fail(`endTransaction: txid ${tx.txid} announced ${tx.pageCount} pages but wrote ${tx.written}`);
    }
    if (this.header.kind === 'snapshot' && tx.snapshotChecksum !== tx.postChecksum) {
      throw this.#fail(
        `endTransaction: the snapshot's pages have checksum ${hex64(tx.snapshotChecksum)}, not the post-apply checksum ${hex64(tx.postChecksum)} it was given`,
      );
    }
    this.#last = { txid: tx.txid, timestamp: tx.timestamp, commitSize: tx.commitSize, postChecksum: tx.postChecksum };
    this.#transactionCount++;
    this.#tx = null;
    this.#state = 'ready';
  }

  /** Writes the last data chunk, the index block and the trailer. take() then returns the rest. */
  finish(): void {
    this.#expect('ready', 'finish');
    const h = this.header;
    const last = this.#last;
    if (this.#transactionCount !== h.transactionCount || this.#pageCount !== h.pageCount) {
      throw this.#fail(
        `finish: wrote ${this.#transactionCount} transactions and ${this.#pageCount} pages, the header announces ${h.transactionCount} and ${h.pageCount}`,
      );
    }
    if (!last || last.txid !== h.maxTxid || last.timestamp !== h.lastTimestamp || last.commitSize !== h.commitSize || last.postChecksum !== h.postChecksum) {
      throw this.#fail(
        `finish: the last transaction (txid ${last?.txid}, timestamp ${last?.timestamp}, commit size ${last?.commitSize}, ` +
          `checksum ${last ? hex64(last.postChecksum) : '-'}) does not match the header (${h.maxTxid}, ${h.lastTimestamp}, ${h.commitSize}, ${hex64(h.postChecksum)})`,
      );
    }
    this.#flushChunk();
    const indexOffset = this.#bytesWritten;
    this.#writeChunk(this.#index.encode(), CHUNK_FLAG_FINAL);
    const trailer = encodeTrailerBody({
      chunkCount: this.#chunkCount,
      transactionCount: this.#transactionCount,
      pageCount: this.#pageCount,
      indexLength: this.#bytesWritten - indexOffset,
      rawLength: this.#rawOffset,
      indexOffset,
    });
    this.#emit(trailer);
    const sum = new Uint8Array(8);
    writeU64(viewOf(sum), 0, this.#objectHash.digest());
    this.#out.push(sum);
    this.#bytesWritten += sum.length;
    this.#state = 'finished';
  }

  #appendRecord(tx: OpenTransaction, pageCount: number): void {
    this.#room(TRANSACTION_RECORD_SIZE);
    const record = { txid: tx.txid, timestamp: tx.timestamp, commitSize: tx.commitSize, pageCount, postChecksum: tx.postChecksum };
    this.#index.addTransaction(record, this.#rawOffset + this.#rawLength);
    writeTransactionRecord(this.#rawView, this.#rawLength, record);
    this.#rawLength += TRANSACTION_RECORD_SIZE;
  }

  #appendPage(pgno: number, data: Uint8Array): void {
    const size = PAGE_RECORD_HEADER_SIZE + this.header.pageSize;
    this.#room(size);
    this.#rawView.setUint32(this.#rawLength, pgno);
    this.#raw.set(data, this.#rawLength + PAGE_RECORD_HEADER_SIZE);
    this.#rawLength += size;
    this.#index.addPage(pgno);
  }

  #expect(state: State, call: string): void {
    if (this.#state === state) return;
    if (this.#state === 'failed') {
      throw new FormatError('ERR_INVALID_ARGUMENT', `${call}: the encoder failed earlier and cannot continue (${this.#failure?.message})`, {
        state: this.#state,
      });
    }
    const allowed = { ready: 'between transactions', transaction: 'inside a transaction', finished: 'after finish' }[this.#state];
    throw this.#fail(`${call} is not allowed ${allowed}`);
  }

  #fail(message: string): FormatError {
    const error = invalidArgument(`SegmentEncoder: ${message}`, { state: this.#state, transactions: this.#transactionCount });
    this.#state = 'failed';
    this.#failure = error;
    return error;
  }

  #emit(bytes: Uint8Array): void {
    this.#out.push(bytes);
    this.#objectHash.update(bytes);
    this.#bytesWritten += bytes.length;
  }

  /** Records never span chunks: start a new chunk if the next record would pass chunkSize. */
  #room(size: number): void {
    if (this.#rawLength > 0 && this.#rawLength + size > this.#chunkSize) this.#flushChunk();
  }

  #flushChunk(): void {
    if (this.#rawLength === 0) return;
    this.#index.addChunk(this.#bytesWritten, this.#rawOffset);
    this.#writeChunk(this.#raw.subarray(0, this.#rawLength), 0);
    this.#chunkCount++;
    this.#rawOffset += this.#rawLength;
    this.#rawLength = 0;
  }

  /** Compresses, seals and frames one chunk; chunk index = data chunks written so far. */
  #writeChunk(raw: Uint8Array, finalFlag: number): void {
    let flags = finalFlag;
    let payload = raw;
    if (this.#compression !== 'none') {
      const compressed = compress(this.#compression, raw, this.#level);
      if (compressed.length < raw.length) payload = compressed;
      else flags |= CHUNK_FLAG_STORED;
    }
    const head = new Uint8Array(CHUNK_HEADER_SIZE);
    const v = viewOf(head);
    v.setUint32(CHUNK.index, this.#chunkCount);
    v.setUint8(CHUNK.flags, flags);
    v.setUint32(CHUNK.storedLength, payload.length + (this.#key ? GCM_TAG_SIZE : 0));
    v.setUint32(CHUNK.rawLength, raw.length);
    let stored: Uint8Array;
    if (this.#key) {
      stored = seal(this.#key, this.header.noncePrefix, this.#chunkCount, chunkAad(this.#headerBytes, head), payload);
    } else {
      // The raw buffer is reused for the next chunk, so a chunk stored raw needs its own copy.
      stored = payload === raw ? raw.slice() : payload;
    }
    writeU64(v, CHUNK.dataChecksum, this.#checksum.xxh64(stored));
    writeU64(v, CHUNK.headerChecksum, this.#checksum.xxh64(head.subarray(0, CHUNK.headerChecksum)));
    this.#emit(head);
    this.#emit(stored);
  }
}

/** AAD of a sealed chunk: the object header, then the chunk's index, flags and lengths. */
export function chunkAad(headerBytes: Uint8Array, chunkHeader: Uint8Array): Uint8Array {
  const aad = new Uint8Array(headerBytes.length + CHUNK.dataChecksum);
  aad.set(headerBytes);
  aad.set(chunkHeader.subarray(0, CHUNK.dataChecksum), headerBytes.length);
  return aad;
}

function pickHeaderFields(f: ObjectHeaderInit): HeaderFields {
  return {
    kind: f.kind,
    databaseId: f.databaseId,
    generation: f.generation,
    epoch: f.epoch,
    level: f.level,
    minTxid: f.minTxid,
    maxTxid: f.maxTxid,
    pageSize: f.pageSize,
    commitSize: f.commitSize,
    firstTimestamp: f.firstTimestamp,
    lastTimestamp: f.lastTimestamp,
    preChecksum: f.preChecksum,
    postChecksum: f.postChecksum,
    transactionCount: f.transactionCount,
    pageCount: f.pageCount,
  };
}

/** Encodes a whole object in memory: for segments small enough to hold twice. */
export function encodeSegment(header: ObjectHeaderInit, transactions: readonly TransactionInput[], options: EncoderOptions = {}): Uint8Array {
  const encoder = new SegmentEncoder(header, options);
  for (const t of transactions) {
    encoder.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pages.length });
    for (const p of t.pages) encoder.writePage(p.pgno, p.data);
    encoder.endTransaction();
  }
  encoder.finish();
  return concatBytes(encoder.take());
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
