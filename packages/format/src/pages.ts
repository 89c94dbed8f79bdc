import { ChunkOpener } from './chunk-opener.js';
import type { DecodeOptions } from './decoder.js';
import { invalidArgument, objectError } from './errors.js';
import {
  CHUNK_HEADER_SIZE,
  GCM_TAG_SIZE,
  HEADER_SIZE,
  MAX_CHUNK_RAW_LENGTH,
  PAGE_RECORD_HEADER_SIZE,
  TRANSACTION_RECORD_SIZE,
} from './format.js';
import type { IndexTransaction, ObjectHeader, ObjectIndex, ObjectTrailer } from './format.js';

/** Where one page record of an object is: the chunk to fetch (a ranged GET) and the record inside it. */
export interface PageLocation {
  chunk: number;
  /** Object offsets of the chunk, its header included: GET bytes=start..end-1. */
  start: number;
  end: number;
  /** Offset of the page's bytes (after its 4-byte page number) in the chunk's raw bytes. */
  at: number;
}

/**
 * Random access to the pages of one object, a chunk at a time, from its index (readIndex). Every
 * chunk is verified exactly as decodeObject verifies it (chunk header checksum, position, lengths,
 * data checksum, and AES-GCM with the object header and the chunk header as associated data when
 * encrypted), so a page read this way is authenticated on its own: a chunk cannot be swapped with
 * another chunk of the same or another object. What needs the whole object (its xxh64 and the
 * snapshot's page hash) is not checked here; a reader that needs it reads the whole object.
 */
export class ObjectPages {
  readonly header: ObjectHeader;
  readonly index: ObjectIndex;
  readonly #trailer: ObjectTrailer;
  readonly #opener: ChunkOpener;
  readonly #name: string | undefined;
  readonly #recordSize: number;

  /** `head` is the object's first HEADER_SIZE bytes, as read (they are the chunks' associated data). */
  constructor(head: Uint8Array, parts: { header: ObjectHeader; trailer: ObjectTrailer; index: ObjectIndex }, options: Omit<DecodeOptions, 'maxPagesPerEvent' | 'reuseBuffers'> = {}) {
    if (head.length < HEADER_SIZE) throw invalidArgument(`ObjectPages: the head must hold the first ${HEADER_SIZE} bytes of the object, got ${head.length}`);
    this.header = parts.header;
    this.index = parts.index;
    this.#trailer = parts.trailer;
    this.#name = options.name;
    this.#recordSize = PAGE_RECORD_HEADER_SIZE + parts.header.pageSize;
    this.#opener = new ChunkOpener(parts.header, head.subarray(0, HEADER_SIZE), options);
  }

  /** The transaction holding the page record at `position` (in index.pgnos). */
  #transactionAt(position: number): IndexTransaction {
    const txs = this.index.transactions;
    let lo = 0;
    let hi = txs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((txs[mid] as IndexTransaction).firstPage <= position) lo = mid + 1;
      else hi = mid;
    }
    return txs[lo - 1] as IndexTransaction;
  }

  /** The chunk and offset of the page record at `position` in index.pgnos. */
  locate(position: number): PageLocation {
    if (!(Number.isInteger(position) && position >= 0 && position < this.index.pgnos.length)) {
      throw invalidArgument(`ObjectPages.locate: page record ${position} is outside 0..${this.index.pgnos.length - 1}`);
    }
    const tx = this.#transactionAt(position);
    const record = tx.rawOffset + TRANSACTION_RECORD_SIZE + (position - tx.firstPage) * this.#recordSize;
    const chunks = this.index.chunks;
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((chunks[mid] as { rawOffset: number }).rawOffset <= record) lo = mid + 1;
      else hi = mid;
    }
    const chunk = lo - 1;
    const range = chunk >= 0 ? this.chunkRange(chunk) : null;
    if (range === null || record + this.#recordSize > range.rawEnd) {
      throw objectError('ERR_CORRUPT_OBJECT', this.#name, `the index puts page record ${position} in no plausible chunk`, { position, chunk });
    }
    return { chunk, start: range.start, end: range.end, at: record - range.rawStart + PAGE_RECORD_HEADER_SIZE };
  }

  /** Chunks in the object (data chunks, not the index block). */
  get chunkCount(): number {
    return this.index.chunks.length;
  }

  /** Object offsets (start..end-1, chunk header included) and logical-stream offsets of data chunk `chunk`. */
  chunkRange(chunk: number): { start: number; end: number; rawStart: number; rawEnd: number } {
    const c = this.index.chunks[chunk];
    if (c === undefined) throw invalidArgument(`ObjectPages.chunkRange: no chunk ${chunk} in ${this.#name ?? 'the object'}`);
    const next = this.index.chunks[chunk + 1];
    const end = next ? next.objectOffset : this.#trailer.indexOffset;
    const rawEnd = next ? next.rawOffset : this.#trailer.rawLength;
    // The index is authenticated, but bound what one read may allocate all the same.
    const tag = this.header.keyId === null ? 0 : GCM_TAG_SIZE;
    if (end - c.objectOffset < CHUNK_HEADER_SIZE || end - c.objectOffset > CHUNK_HEADER_SIZE + MAX_CHUNK_RAW_LENGTH + tag || rawEnd <= c.rawOffset) {
      throw objectError('ERR_CORRUPT_OBJECT', this.#name, `the index gives chunk ${chunk} an implausible extent (offsets ${c.objectOffset}..${end}, raw ${c.rawOffset}..${rawEnd})`, { chunk });
    }
    return { start: c.objectOffset, end, rawStart: c.rawOffset, rawEnd };
  }

  /**
   * Verifies, decrypts and decompresses the bytes of chunk `chunk` (object offsets start..end-1 of
   * locate()) and returns its raw bytes, whose length the index must predict. `into`: a buffer of
   * exactly that length to put them in (returned), so a reader that opens many chunks can reuse its
   * buffers; otherwise a new one.
   */
  openChunk(chunk: number, bytes: Uint8Array, into?: Uint8Array): Uint8Array {
    const range = this.chunkRange(chunk);
    const c = { objectOffset: range.start };
    const rawLength = range.rawEnd - range.rawStart;
    if (bytes.length < CHUNK_HEADER_SIZE) {
      throw objectError('ERR_TRUNCATED', this.#name, `chunk ${chunk} at offset ${c.objectOffset}: got ${bytes.length} bytes, less than a chunk header`, { offset: c.objectOffset, chunk });
    }
    const frame = this.#opener.parseHeader(bytes.subarray(0, CHUNK_HEADER_SIZE), c.objectOffset, chunk, 0);
    if (frame.final || CHUNK_HEADER_SIZE + frame.storedLength !== bytes.length || frame.rawLength !== rawLength) {
      throw objectError(
        'ERR_CORRUPT_OBJECT',
        this.#name,
        `chunk ${chunk} at offset ${c.objectOffset} does not match the index (${bytes.length} bytes read, ${CHUNK_HEADER_SIZE + frame.storedLength} framed; raw ${frame.rawLength}, index ${rawLength})`,
        { offset: c.objectOffset, chunk },
      );
    }
    const target = into !== undefined && into.length === rawLength ? into : undefined;
    const raw = this.#opener.open(frame, bytes.subarray(CHUNK_HEADER_SIZE), target);
    if (raw === target) return raw;
    // A stored, unencrypted chunk is a view of `bytes`: copy it, so the caller may keep the chunk without the whole read.
    if (raw.buffer !== bytes.buffer) return raw;
    if (target === undefined) return raw.slice();
    target.set(raw);
    return target;
  }

  /** The page at `location` in the chunk's raw bytes, after checking its page number is `pgno`. */
  page(raw: Uint8Array, location: PageLocation, pgno: number): Uint8Array {
    const at = location.at;
    // The record's page number, big-endian, read without a DataView (this runs for every page a replica reads).
    const h = at - PAGE_RECORD_HEADER_SIZE;
    const found = h >= 0 && at + this.header.pageSize <= raw.length ? (((raw[h] as number) << 24) | ((raw[h + 1] as number) << 16) | ((raw[h + 2] as number) << 8) | (raw[h + 3] as number)) >>> 0 : -1;
    if (found !== pgno) {
      throw objectError('ERR_CORRUPT_OBJECT', this.#name, `chunk ${location.chunk}: the record where the index puts page ${pgno} holds page ${found}`, {
        chunk: location.chunk,
        pgno,
        found,
      });
    }
    return raw.subarray(at, at + this.header.pageSize);
  }
}
