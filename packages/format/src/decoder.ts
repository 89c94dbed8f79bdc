import { checksum, loadChecksum, lockPageNumber } from './checksum.js';
import type { Checksum } from './checksum.js';
import { loadCodecs } from './codec.js';
import type { Keyring } from './crypto.js';
import { ChunkOpener } from './chunk-opener.js';
import type { PageRecord } from './encoder.js';
import { FormatError, invalidArgument, objectError } from './errors.js';
import type { FormatErrorCode } from './errors.js';
import {
  CHUNK_HEADER_SIZE,
  HEADER_SIZE,
  INDEX_BYTES_PER_STORED_BYTE,
  MIN_INDEX_LIMIT,
  PAGE_RECORD_HEADER_SIZE,
  TRAILER,
  TRAILER_MAGIC,
  TRAILER_SIZE,
  TRANSACTION_RECORD_SIZE,
  decodeHeader,
  decodeTrailer,
  equalBytes,
  hex64,
  indexRawLength,
  indexTailSize,
  viewOf,
} from './format.js';
import { IndexBuilder, parseIndex, readTransactionRecord } from './index-block.js';
import type { DecodeContext, ObjectHeader, ObjectIndex, ObjectTrailer } from './format.js';

export interface DecodeOptions extends DecodeContext {
  /** Needed for encrypted objects: the key is chosen by the id in the header. */
  keyring?: Keyring;
  /**
   * Refuse plaintext objects (ERR_NOT_ENCRYPTED), so nobody who can write to the bucket can plant an
   * unencrypted one. Default: true when a keyring is given (whoever holds keys expects ciphertext).
   */
  requireEncryption?: boolean;
  /**
   * Split transactions with more pages than this into several events (`more: true` on all but the
   * last), so a snapshot streams in bounded memory. Default: one event per transaction.
   */
  maxPagesPerEvent?: number;
  /**
   * Decompress every chunk into one reused buffer: an event's page data is then valid only until
   * the next event is asked for (a transaction's pages are cut into events at chunk ends), for a
   * reader that writes each event out at once. Memory stays one chunk, with no garbage per chunk.
   */
  reuseBuffers?: boolean;
  /**
   * With reuseBuffers and an iterable source: called with each piece the source yielded once the
   * decoder has read all of it and no event refers to it any more (checked before each chunk is
   * read), in order, each once; its memory is the caller's again (to reuse or transfer). Not
   * passed: empty pieces, pieces still unread when decoding stops, and those holding the index
   * block, the trailer or anything after it (the decoder keeps no reference to them).
   */
  onPieceDone?: (piece: Uint8Array) => void;
}

export interface HeaderEvent {
  type: 'header';
  header: ObjectHeader;
}

export interface TransactionEvent {
  type: 'transaction';
  txid: number;
  timestamp: number;
  commitSize: number;
  postChecksum: bigint;
  /** Pages of the whole transaction (the sum over its events when it is split). */
  pageCount: number;
  /** This event's pages. `data` may share memory with the source's buffers. */
  pages: PageRecord[];
  /** True when more pages of this same transaction follow in the next event. */
  more: boolean;
}

export interface EndEvent {
  type: 'end';
  header: ObjectHeader;
  trailer: ObjectTrailer;
  index: ObjectIndex;
}

export type DecodeEvent = HeaderEvent | TransactionEvent | EndEvent;

export type ByteSource = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Decodes and verifies an object as it streams, in memory bounded by one chunk plus the pages of
 * the event being built plus 4 bytes per page record (to check the index).
 *
 * Events: 'header', then 'transaction' per transaction in txid order, then 'end'. Every chunk is
 * checked (checksum, and GCM authentication when encrypted) before its pages are yielded, but only
 * 'end' proves the object complete and consistent: its trailer checksum, chunk count, counts,
 * index and header all agree. Treat yielded data as trusted only after 'end', e.g. write pages to
 * a staging file and commit it when 'end' arrives. Errors are FormatErrors naming the object
 * (`name`) and the offset.
 */
export async function* decodeObject(source: ByteSource, options: DecodeOptions = {}): AsyncGenerator<DecodeEvent, void, undefined> {
  const maxPages = options.maxPagesPerEvent ?? Number.POSITIVE_INFINITY;
  if (!(maxPages >= 1)) throw invalidArgument(`decodeObject: maxPagesPerEvent ${maxPages} must be >= 1`);
  if (options.onPieceDone !== undefined && options.reuseBuffers !== true) throw invalidArgument('decodeObject: onPieceDone needs reuseBuffers (without it, events may refer to any earlier piece)');
  const reader = new ByteReader(source, options.name, options.onPieceDone !== undefined);
  try {
    yield* decodeFrom(reader, options, maxPages);
  } finally {
    // Stops the download when the consumer stops early or the object is rejected.
    await reader.close();
  }
}

async function* decodeFrom(reader: ByteReader, options: DecodeOptions, maxPages: number): AsyncGenerator<DecodeEvent, void, undefined> {
  await loadChecksum();
  const name = options.name;
  const sums = checksum();
  const objectHash = sums.createXxh64();

  // A copy: the chunk opener keeps it (encrypted chunks are authenticated with it) after its piece is done.
  const head = (await reader.readUpTo(HEADER_SIZE)).slice();
  const header = decodeHeader(head, { name, ...(options.objectSize === undefined ? {} : { objectSize: options.objectSize }) });
  objectHash.update(head);
  const chunks = new ChunkOpener(header, head, options);
  if (header.compression === 'zstd') await loadCodecs();
  yield { type: 'header', header };

  const records = new RecordParser(header, name, maxPages, sums, options.reuseBuffers === true);
  let chunkIndex = 0;
  let rawOffset = 0;
  let indexRaw: Uint8Array;
  let indexOffset: number;
  for (;;) {
    // The previous chunk's events have been consumed: nothing refers to the pieces read so far.
    if (options.onPieceDone !== undefined) reader.release(options.onPieceDone);
    const offset = reader.offset;
    const chunkHead = await reader.read(CHUNK_HEADER_SIZE, `the header of chunk ${chunkIndex}`);
    const frame = chunks.parseHeader(chunkHead, offset, chunkIndex, records.indexLength(chunkIndex));
    const stored = await reader.read(frame.storedLength, `the data of chunk ${chunkIndex}`);
    objectHash.update(chunkHead);
    objectHash.update(stored);
    // The index block's length follows from the header's counts; only data that really holds
    // them may make the reader decompress it.
    if (frame.final) records.finish();
    const raw = chunks.open(frame, stored);
    if (frame.final) {
      indexRaw = raw;
      indexOffset = offset;
      // Nothing more is passed back: the pieces of the index and trailer, and whatever follows,
      // are not kept (a source longer than the object is drained in constant memory).
      reader.untrack();
      break;
    }
    records.index.addChunk(offset, rawOffset);
    yield* records.parse(raw, rawOffset, offset, chunkIndex);
    rawOffset += raw.length;
    chunkIndex++;
  }

  const trailerOffset = reader.offset;
  const trailerBytes = await reader.read(TRAILER_SIZE, 'the trailer');
  objectHash.update(trailerBytes.subarray(0, TRAILER.checksum));
  const storedSum = viewOf(trailerBytes).getBigUint64(TRAILER.checksum);
  const actualSum = objectHash.digest();
  if (storedSum !== actualSum) {
    throw objectError('ERR_CHECKSUM_MISMATCH', name, `object checksum mismatch at offset ${trailerOffset + TRAILER.checksum} (stored ${hex64(storedSum)}, computed ${hex64(actualSum)})`, {
      offset: trailerOffset + TRAILER.checksum,
      part: 'object',
    });
  }
  if (!equalBytes(trailerBytes.subarray(TRAILER.magic, TRAILER.magic + TRAILER_MAGIC.length), TRAILER_MAGIC)) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `no trailer magic at offset ${trailerOffset + TRAILER.magic}`, { offset: trailerOffset + TRAILER.magic });
  }
  const extra = await reader.drain();
  if (extra > 0) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `${extra} unexpected bytes after the trailer at offset ${reader.offset - extra}`, {
      offset: reader.offset - extra,
    });
  }
  const trailer = decodeTrailer(trailerBytes, { name });
  const observed = {
    chunkCount: chunkIndex,
    transactionCount: header.transactionCount,
    pageCount: header.pageCount,
    indexLength: trailerOffset - indexOffset,
    rawLength: rawOffset,
    indexOffset,
  };
  for (const [field, value] of Object.entries(observed)) {
    if (trailer[field as keyof typeof observed] !== value) {
      throw objectError('ERR_CORRUPT_OBJECT', name, `the trailer's ${field} is ${trailer[field as keyof typeof observed]}, the object has ${value}`, {
        offset: trailerOffset,
        field,
      });
    }
  }
  if (!records.index.matches(indexRaw)) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `the index block at offset ${indexOffset} does not match the transactions and pages of the object`, {
      offset: indexOffset,
    });
  }
  // Parsed when asked for: the data it was just compared with passed the same checks, and a reader
  // that applies pages as they stream need not hold a second copy of every page number.
  let index: ObjectIndex | undefined;
  const raw = indexRaw;
  yield {
    type: 'end',
    header,
    trailer,
    get index(): ObjectIndex {
      index ??= parseIndex(raw, header, trailer, name);
      return index;
    },
  };
}

export interface DecodedObject {
  header: ObjectHeader;
  transactions: TransactionEvent[];
  trailer: ObjectTrailer;
  index: ObjectIndex;
}

/** decodeObject collected in memory (transactions whole): for small objects and tests. */
export async function decodeSegment(source: ByteSource, options: Omit<DecodeOptions, 'maxPagesPerEvent'> = {}): Promise<DecodedObject> {
  const transactions: TransactionEvent[] = [];
  let header: ObjectHeader | undefined;
  for await (const event of decodeObject(source, { ...options, maxPagesPerEvent: Number.POSITIVE_INFINITY })) {
    if (event.type === 'header') header = event.header;
    else if (event.type === 'transaction') transactions.push(event);
    else return { header: header as ObjectHeader, transactions, trailer: event.trailer, index: event.index };
  }
  throw new Error('decodeObject ended without an end event');
}

/**
 * Reads the index from the object's first HEADER_SIZE bytes and its last bytes (a ranged GET
 * `bytes=-N`), to plan a restore without downloading the object. `tail` must hold at least
 * `indexTailSize(decodeTrailer(tail))` bytes; fetch more and retry when it does not (the error's
 * details.needed says how many). The index block is checked by its checksums (and authenticated
 * when encrypted); the whole-object checksum needs the whole object (decodeObject).
 */
export async function readIndex(
  head: Uint8Array,
  tail: Uint8Array,
  options: Omit<DecodeOptions, 'maxPagesPerEvent'> & { objectSize?: number } = {},
): Promise<{ header: ObjectHeader; trailer: ObjectTrailer; index: ObjectIndex }> {
  await loadChecksum();
  const name = options.name;
  const header = decodeHeader(head, { name, ...(options.objectSize === undefined ? {} : { objectSize: options.objectSize }) });
  const chunks = new ChunkOpener(header, head.subarray(0, HEADER_SIZE), options);
  if (header.compression === 'zstd') await loadCodecs();
  const trailer = decodeTrailer(tail, { name });
  const needed = indexTailSize(trailer);
  if (tail.length < needed) {
    throw invalidArgument(`readIndex: the tail of ${name ?? 'the object'} must hold its last ${needed} bytes, got ${tail.length}; fetch bytes=-${needed}`, {
      needed,
      name,
    });
  }
  if (trailer.transactionCount !== header.transactionCount || trailer.pageCount !== header.pageCount) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `the trailer counts ${trailer.transactionCount} transactions and ${trailer.pageCount} pages, the header ${header.transactionCount} and ${header.pageCount}`);
  }
  if (options.objectSize !== undefined && trailer.indexOffset !== options.objectSize - needed) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `the trailer puts the index at offset ${trailer.indexOffset}, but ${options.objectSize}-byte objects have it at ${options.objectSize - needed}`);
  }
  const block = tail.subarray(tail.length - needed, tail.length - TRAILER_SIZE);
  const offset = trailer.indexOffset;
  const expectedLength = indexRawLength(trailer.chunkCount, header.transactionCount, header.pageCount);
  if (block.length < CHUNK_HEADER_SIZE) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `the trailer's index length ${trailer.indexLength} cannot hold a chunk header`, { offset });
  }
  // Planning reads the index without the data that would prove its counts: bound it by the
  // object's size before anything is decompressed.
  const limit = Math.max(MIN_INDEX_LIMIT, INDEX_BYTES_PER_STORED_BYTE * (options.objectSize ?? tail.length));
  if (expectedLength > limit) {
    throw objectError(
      'ERR_CORRUPT_OBJECT',
      name,
      `its counts (${trailer.chunkCount} chunks, ${header.transactionCount} transactions, ${header.pageCount} pages) make a ${expectedLength}-byte index block, over the ${limit}-byte limit for an object of this size`,
      { offset, part: 'index', limit: 'index', indexLength: expectedLength, maxIndexLength: limit },
    );
  }
  const frame = chunks.parseHeader(block.subarray(0, CHUNK_HEADER_SIZE), offset, trailer.chunkCount, expectedLength);
  if (!frame.final || CHUNK_HEADER_SIZE + frame.storedLength !== block.length) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `the chunk at offset ${offset} is not an index block of ${block.length} bytes`, { offset });
  }
  const raw = chunks.open(frame, block.subarray(CHUNK_HEADER_SIZE));
  return { header, trailer, index: parseIndex(raw, header, trailer, name) };
}

interface OpenTransaction extends TransactionEventBase {
  remaining: number;
  pages: PageRecord[];
  /** Position of its first page in the index's page numbers. */
  firstPage: number;
  nextSnapshotPage: number;
  snapshotChecksum: bigint;
}

type TransactionEventBase = Omit<TransactionEvent, 'type' | 'pages' | 'more'>;

/** Parses the logical stream chunk by chunk, checking every record against the header. */
class RecordParser {
  readonly index = new IndexBuilder();
  readonly #header: ObjectHeader;
  readonly #name: string | undefined;
  readonly #maxPages: number;
  readonly #sums: Checksum;
  readonly #lockPage: number;
  #tx: OpenTransaction | null = null;
  #last: TransactionEventBase | null = null;

  readonly #cutAtChunkEnd: boolean;

  constructor(header: ObjectHeader, name: string | undefined, maxPages: number, sums: Checksum, cutAtChunkEnd: boolean) {
    this.#cutAtChunkEnd = cutAtChunkEnd;
    this.#header = header;
    this.#name = name;
    this.#maxPages = maxPages;
    this.#sums = sums;
    this.#lockPage = lockPageNumber(header.pageSize);
  }

  /** Raw length the index block must have if it came after `chunkCount` data chunks. */
  indexLength(chunkCount: number): number {
    return indexRawLength(chunkCount, this.#header.transactionCount, this.#header.pageCount);
  }

  *parse(raw: Uint8Array, rawBase: number, chunkOffset: number, chunkIndex: number): Generator<TransactionEvent> {
    const h = this.#header;
    const v = viewOf(raw);
    const recordSize = PAGE_RECORD_HEADER_SIZE + h.pageSize;
    let at = 0;
    const corrupt = (problem: string, code: FormatErrorCode = 'ERR_CORRUPT_OBJECT'): FormatError =>
      objectError(code, this.#name, `chunk ${chunkIndex} (offset ${chunkOffset}), logical offset ${rawBase + at}: ${problem}`, {
        offset: chunkOffset,
        chunk: chunkIndex,
        rawOffset: rawBase + at,
      });
    while (at < raw.length) {
      const tx = this.#tx;
      if (tx === null) {
        if (raw.length - at < TRANSACTION_RECORD_SIZE) throw corrupt('a transaction record crosses the end of the chunk');
        const record = readTransactionRecord(v, at);
        const problem = this.#transactionProblem(record);
        if (problem) throw corrupt(problem);
        this.index.addTransaction(record, rawBase + at);
        this.#tx = { ...record, remaining: record.pageCount, pages: [], firstPage: this.index.pageCount, nextSnapshotPage: 1, snapshotChecksum: 0n };
        at += TRANSACTION_RECORD_SIZE;
        continue;
      }
      if (raw.length - at < recordSize) throw corrupt('a page record crosses the end of the chunk');
      const pgno = v.getUint32(at);
      if (pgno < 1 || pgno > tx.commitSize || pgno === this.#lockPage) {
        throw corrupt(`txid ${tx.txid} has page ${pgno}, outside 1..${tx.commitSize} or the lock page`);
      }
      const data = raw.subarray(at + PAGE_RECORD_HEADER_SIZE, at + recordSize);
      let hash: bigint | undefined;
      if (h.kind === 'snapshot') {
        if (pgno !== tx.nextSnapshotPage) throw corrupt(`the snapshot has page ${pgno} where page ${tx.nextSnapshotPage} belongs`);
        tx.nextSnapshotPage = pgno + 1 === this.#lockPage ? pgno + 2 : pgno + 1;
        hash = this.#sums.pageHash(pgno, data);
        tx.snapshotChecksum ^= hash;
      }
      this.index.addPage(pgno);
      tx.pages.push(hash === undefined ? { pgno, data } : { pgno, data, hash });
      tx.remaining--;
      at += recordSize;
      if (tx.remaining === 0) {
        // Checked once the transaction is complete (from the index's page numbers, 4 bytes a
        // page) rather than with a set per page, which costs ~10x that and cannot pass 2^24 entries.
        const twice = h.kind === 'segment' ? duplicatePage(this.index.pgnosFrom(tx.firstPage)) : null;
        if (twice !== null) throw corrupt(`txid ${tx.txid} has page ${twice} twice`);
        if (h.kind === 'snapshot' && tx.snapshotChecksum !== tx.postChecksum) {
          throw corrupt(`the snapshot's pages hash to ${hex64(tx.snapshotChecksum)}, not its post-apply checksum ${hex64(tx.postChecksum)}`, 'ERR_CHECKSUM_MISMATCH');
        }
        yield this.#event(tx, false);
        this.#last = { txid: tx.txid, timestamp: tx.timestamp, commitSize: tx.commitSize, postChecksum: tx.postChecksum, pageCount: tx.pageCount };
        this.#tx = null;
      } else if (tx.pages.length >= this.#maxPages) {
        yield this.#event(tx, true);
      }
    }
    // The next chunk may overwrite this one's buffer (reuseBuffers).
    if (this.#cutAtChunkEnd && this.#tx !== null && this.#tx.pages.length > 0) yield this.#event(this.#tx, true);
  }

  #event(tx: OpenTransaction, more: boolean): TransactionEvent {
    const pages = tx.pages;
    tx.pages = [];
    return { type: 'transaction', txid: tx.txid, timestamp: tx.timestamp, commitSize: tx.commitSize, postChecksum: tx.postChecksum, pageCount: tx.pageCount, pages, more };
  }

  #transactionProblem(r: TransactionEventBase): string | null {
    const h = this.#header;
    const last = this.#last;
    const count = this.index.transactionCount;
    if (count >= h.transactionCount) return `a transaction record beyond the header's ${h.transactionCount}`;
    if (!(r.txid >= h.minTxid && r.txid <= h.maxTxid)) return `txid ${r.txid} is outside the header's ${h.minTxid}..${h.maxTxid}`;
    if (last && r.txid <= last.txid) return `txid ${r.txid} follows txid ${last.txid}`;
    if (h.kind === 'segment' && h.level === 0 && r.txid !== (last ? last.txid + 1 : h.minTxid)) return `txid ${r.txid} leaves a gap in a level-0 segment`;
    if (h.kind === 'snapshot' && r.txid !== h.maxTxid) return `the snapshot's transaction has txid ${r.txid}, not ${h.maxTxid}`;
    if (!(r.timestamp >= h.firstTimestamp && r.timestamp <= h.lastTimestamp)) return `timestamp ${r.timestamp} is outside the header's range`;
    if (!last && r.timestamp !== h.firstTimestamp) return `the first timestamp ${r.timestamp} is not the header's ${h.firstTimestamp}`;
    if (last && r.timestamp < last.timestamp) return `timestamp ${r.timestamp} of txid ${r.txid} goes back from ${last.timestamp}`;
    if (r.commitSize < 1) return `txid ${r.txid} has commit size 0`;
    const remaining = h.pageCount - this.index.pageCount;
    if (r.pageCount > remaining || (h.kind === 'segment' && r.pageCount < 1)) return `txid ${r.txid} claims ${r.pageCount} pages (the header leaves ${remaining})`;
    if (h.kind === 'snapshot' && (r.commitSize !== h.commitSize || r.pageCount !== h.pageCount)) return "the snapshot's transaction does not match the header";
    return null;
  }

  finish(): void {
    const h = this.#header;
    const last = this.#last;
    const problem =
      this.#tx !== null
        ? `txid ${this.#tx.txid} ends with ${this.#tx.remaining} of its pages missing`
        : this.index.transactionCount !== h.transactionCount || this.index.pageCount !== h.pageCount
          ? `the data holds ${this.index.transactionCount} transactions and ${this.index.pageCount} pages, the header announces ${h.transactionCount} and ${h.pageCount}`
          : !last || last.txid !== h.maxTxid || last.timestamp !== h.lastTimestamp || last.commitSize !== h.commitSize || last.postChecksum !== h.postChecksum
            ? 'the last transaction does not match the header (max txid, last timestamp, commit size, post-apply checksum)'
            : null;
    if (problem) throw objectError('ERR_CORRUPT_OBJECT', this.#name, problem);
  }
}

/** A page number that appears twice, or null. */
function duplicatePage(pgnos: Uint32Array): number | null {
  if (pgnos.length <= 32) {
    for (let i = 1; i < pgnos.length; i++) for (let j = 0; j < i; j++) if (pgnos[i] === pgnos[j]) return pgnos[i] as number;
    return null;
  }
  const sorted = pgnos.slice().sort();
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) return sorted[i] as number;
  return null;
}

/** Exact reads over a byte array or a stream of byte arrays split anywhere. */
class ByteReader {
  /** Bytes consumed so far: the object offset of the next read. */
  offset = 0;
  readonly #name: string | undefined;
  // Pieces not yet consumed start at #first; #head bytes of that piece are consumed. Advancing an
  // index instead of shifting keeps a source split into many tiny pieces linear.
  #pieces: Uint8Array[] = [];
  #first = 0;
  #head = 0;
  #buffered = 0;
  readonly #iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array> | null;
  #done = false;
  /** Pieces read to their end and not yet released; null when not tracked. */
  #spent: Uint8Array[] | null;

  constructor(source: ByteSource, name: string | undefined, trackSpent = false) {
    this.#name = name;
    this.#spent = trackSpent ? [] : null;
    if (source instanceof Uint8Array) {
      this.#iterator = null;
      this.#done = true;
      if (source.length > 0) this.#pieces.push(source);
      this.#buffered = source.length;
    } else if (source && typeof (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function') {
      this.#iterator = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    } else if (source && typeof (source as Iterable<Uint8Array>)[Symbol.iterator] === 'function') {
      this.#iterator = (source as Iterable<Uint8Array>)[Symbol.iterator]();
    } else {
      throw invalidArgument('decodeObject: the source must be a Uint8Array or an (async) iterable of Uint8Arrays');
    }
  }

  async #pull(): Promise<boolean> {
    if (this.#done || this.#iterator === null) return false;
    const next = await this.#iterator.next();
    if (next.done) {
      this.#done = true;
      return false;
    }
    const piece: unknown = next.value;
    if (!(piece instanceof Uint8Array)) throw invalidArgument(`decodeObject: the source yielded a ${typeof piece}, not a Uint8Array`);
    if (piece.length > 0) {
      if (this.#first > 1024 && this.#first * 2 > this.#pieces.length) {
        this.#pieces = this.#pieces.slice(this.#first);
        this.#first = 0;
      }
      this.#pieces.push(piece);
      this.#buffered += piece.length;
    }
    return true;
  }

  /** Up to n bytes: fewer only at the end of the source. */
  async readUpTo(n: number): Promise<Uint8Array> {
    while (this.#buffered < n && (await this.#pull()));
    return this.#take(Math.min(n, this.#buffered));
  }

  /** Exactly n bytes, or ERR_TRUNCATED naming what was being read. */
  async read(n: number, what: string): Promise<Uint8Array> {
    while (this.#buffered < n) {
      if (!(await this.#pull())) {
        throw objectError('ERR_TRUNCATED', this.#name, `the object ends at offset ${this.offset + this.#buffered} inside ${what} (${n} bytes from offset ${this.offset})`, {
          offset: this.offset + this.#buffered,
        });
      }
    }
    return this.#take(n);
  }

  /** Passes the pieces read to their end since the last call to `done`, in order. */
  release(done: (piece: Uint8Array) => void): void {
    const spent = this.#spent;
    if (spent === null || spent.length === 0) return;
    const pieces = spent.splice(0, spent.length);
    for (const piece of pieces) done(piece);
  }

  /** Stops tracking pieces (and drops those not released yet). */
  untrack(): void {
    this.#spent = null;
  }

  /** Ends an unfinished source (an HTTP body, a file stream) so that it releases its resources. */
  async close(): Promise<void> {
    if (this.#done || this.#iterator === null) return;
    this.#done = true;
    await this.#iterator.return?.();
  }

  /** Consumes the rest of the source; returns how many bytes there were. */
  async drain(): Promise<number> {
    let extra = this.#buffered;
    this.#take(this.#buffered);
    while (await this.#pull()) {
      extra += this.#buffered;
      this.#take(this.#buffered);
    }
    return extra;
  }

  #take(n: number): Uint8Array {
    this.offset += n;
    this.#buffered -= n;
    const first = this.#pieces[this.#first];
    if (first && first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(first, n);
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const piece = this.#pieces[this.#first] as Uint8Array;
      const count = Math.min(piece.length - this.#head, n - at);
      out.set(piece.subarray(this.#head, this.#head + count), at);
      at += count;
      this.#advance(piece, count);
    }
    return out;
  }

  #advance(piece: Uint8Array, count: number): void {
    this.#head += count;
    if (this.#head === piece.length) {
      this.#spent?.push(piece);
      this.#pieces[this.#first] = EMPTY;
      this.#first++;
      this.#head = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);
