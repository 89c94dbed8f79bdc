// The index block of format version 1 (README.md, "Index block"): what IndexBuilder collects while
// an object is written or read back, its serialised form, and the lookups restore and replicas make.
import { lockPageNumber } from './checksum.js';
import { FormatError, objectError } from './errors.js';
import {
  INDEX_CHUNK_ENTRY_SIZE,
  INDEX_HEADER_SIZE,
  INDEX_TRANSACTION_ENTRY_SIZE,
  TRANSACTION_RECORD_SIZE,
  equalBytes,
  indexRawLength,
  readSafeU64,
  viewOf,
  writeU64,
} from './format.js';
import type { IndexChunk, IndexTransaction, ObjectHeader, ObjectIndex, ObjectTrailer } from './format.js';

/** Collects the index while a stream is written (encoder) or read back (decoder), then serialises it. */
export class IndexBuilder {
  readonly chunks: IndexChunk[] = [];
  #transactions: Uint8Array = new Uint8Array(INDEX_TRANSACTION_ENTRY_SIZE * 16);
  #transactionCount = 0;
  #pgnos: Uint32Array = new Uint32Array(256);
  #pageCount = 0;

  get transactionCount(): number {
    return this.#transactionCount;
  }

  get pageCount(): number {
    return this.#pageCount;
  }

  addChunk(objectOffset: number, rawOffset: number): void {
    this.chunks.push({ objectOffset, rawOffset });
  }

  addTransaction(t: { txid: number; timestamp: number; commitSize: number; pageCount: number; postChecksum: bigint }, rawOffset: number): void {
    const at = this.#transactionCount * INDEX_TRANSACTION_ENTRY_SIZE;
    if (at + INDEX_TRANSACTION_ENTRY_SIZE > this.#transactions.length) {
      const next = new Uint8Array(this.#transactions.length * 2);
      next.set(this.#transactions);
      this.#transactions = next;
    }
    const v = new DataView(this.#transactions.buffer, at, INDEX_TRANSACTION_ENTRY_SIZE);
    writeTransactionRecord(v, 0, t);
    writeU64(v, TRANSACTION_RECORD_SIZE, rawOffset);
    this.#transactionCount++;
  }

  addPage(pgno: number): void {
    if (this.#pageCount === this.#pgnos.length) {
      const next = new Uint32Array(this.#pgnos.length * 2);
      next.set(this.#pgnos);
      this.#pgnos = next;
    }
    this.#pgnos[this.#pageCount++] = pgno;
  }

  /** Page numbers added from position `from` on (a view: valid until the next addPage). */
  pgnosFrom(from: number): Uint32Array {
    return this.#pgnos.subarray(from, this.#pageCount);
  }

  /** Whether `raw` is exactly encode()'s output, compared in place (an index can be large). */
  matches(raw: Uint8Array): boolean {
    const txBytes = this.#transactionCount * INDEX_TRANSACTION_ENTRY_SIZE;
    if (raw.length !== indexRawLength(this.chunks.length, this.#transactionCount, this.#pageCount)) return false;
    const v = viewOf(raw);
    if (v.getUint32(0) !== this.#transactionCount || v.getUint32(4) !== this.#pageCount || v.getUint32(8) !== this.chunks.length || v.getUint32(12) !== 0) return false;
    let at = INDEX_HEADER_SIZE;
    for (const c of this.chunks) {
      if (v.getBigUint64(at) !== BigInt(c.objectOffset) || v.getBigUint64(at + 8) !== BigInt(c.rawOffset)) return false;
      at += INDEX_CHUNK_ENTRY_SIZE;
    }
    if (!equalBytes(raw.subarray(at, at + txBytes), this.#transactions.subarray(0, txBytes))) return false;
    at += txBytes;
    for (let i = 0; i < this.#pageCount; i++, at += 4) if (v.getUint32(at) !== this.#pgnos[i]) return false;
    return true;
  }

  encode(): Uint8Array {
    const chunkBytes = this.chunks.length * INDEX_CHUNK_ENTRY_SIZE;
    const txBytes = this.#transactionCount * INDEX_TRANSACTION_ENTRY_SIZE;
    const out = new Uint8Array(INDEX_HEADER_SIZE + chunkBytes + txBytes + 4 * this.#pageCount);
    const v = viewOf(out);
    v.setUint32(0, this.#transactionCount);
    v.setUint32(4, this.#pageCount);
    v.setUint32(8, this.chunks.length);
    let at = INDEX_HEADER_SIZE;
    for (const c of this.chunks) {
      writeU64(v, at, c.objectOffset);
      writeU64(v, at + 8, c.rawOffset);
      at += INDEX_CHUNK_ENTRY_SIZE;
    }
    out.set(this.#transactions.subarray(0, txBytes), at);
    at += txBytes;
    for (let i = 0; i < this.#pageCount; i++, at += 4) v.setUint32(at, this.#pgnos[i] as number);
    return out;
  }
}

/** The 32-byte transaction record of the logical stream (also the head of an index entry). */
export function writeTransactionRecord(
  v: DataView,
  at: number,
  t: { txid: number; timestamp: number; commitSize: number; pageCount: number; postChecksum: bigint },
): void {
  writeU64(v, at, t.txid);
  writeU64(v, at + 8, t.timestamp);
  v.setUint32(at + 16, t.commitSize);
  v.setUint32(at + 20, t.pageCount);
  writeU64(v, at + 24, t.postChecksum);
}

export function readTransactionRecord(v: DataView, at: number): { txid: number; timestamp: number; commitSize: number; pageCount: number; postChecksum: bigint } {
  return {
    txid: readSafeU64(v, at),
    timestamp: readSafeU64(v, at + 8),
    commitSize: v.getUint32(at + 16),
    pageCount: v.getUint32(at + 20),
    postChecksum: v.getBigUint64(at + 24),
  };
}

/**
 * Parses an index block's raw bytes and checks it against the header: counts, txid order and range,
 * page numbers within each transaction's commit size. Throws ERR_CORRUPT_OBJECT.
 */
export function parseIndex(raw: Uint8Array, header: ObjectHeader, trailer: ObjectTrailer, name: string | undefined): ObjectIndex {
  const corrupt = (problem: string): FormatError => objectError('ERR_CORRUPT_OBJECT', name, `index block: ${problem}`, { part: 'index' });
  if (raw.length < INDEX_HEADER_SIZE) throw corrupt(`${raw.length} bytes is shorter than its ${INDEX_HEADER_SIZE}-byte header`);
  const v = viewOf(raw);
  const transactionCount = v.getUint32(0);
  const pageCount = v.getUint32(4);
  const chunkCount = v.getUint32(8);
  if (transactionCount !== header.transactionCount || pageCount !== header.pageCount || chunkCount !== trailer.chunkCount) {
    throw corrupt(
      `it lists ${transactionCount} transactions, ${pageCount} pages, ${chunkCount} chunks; the header and trailer say ` +
        `${header.transactionCount}, ${header.pageCount}, ${trailer.chunkCount}`,
    );
  }
  const expected = INDEX_HEADER_SIZE + chunkCount * INDEX_CHUNK_ENTRY_SIZE + transactionCount * INDEX_TRANSACTION_ENTRY_SIZE + 4 * pageCount;
  if (raw.length !== expected) throw corrupt(`it is ${raw.length} bytes, its counts need ${expected}`);
  let at = INDEX_HEADER_SIZE;
  const chunks: IndexChunk[] = [];
  for (let i = 0; i < chunkCount; i++, at += INDEX_CHUNK_ENTRY_SIZE) {
    chunks.push({ objectOffset: readSafeU64(v, at), rawOffset: readSafeU64(v, at + 8) });
  }
  const pgnosAt = at + transactionCount * INDEX_TRANSACTION_ENTRY_SIZE;
  const pgnos = new Uint32Array(pageCount);
  for (let i = 0; i < pageCount; i++) pgnos[i] = v.getUint32(pgnosAt + 4 * i);
  const transactions: IndexTransaction[] = [];
  const lockPage = lockPageNumber(header.pageSize);
  let firstPage = 0;
  let previous: IndexTransaction | undefined;
  for (let i = 0; i < transactionCount; i++, at += INDEX_TRANSACTION_ENTRY_SIZE) {
    const t: IndexTransaction = { ...readTransactionRecord(v, at), rawOffset: readSafeU64(v, at + TRANSACTION_RECORD_SIZE), firstPage };
    if (!(t.txid >= header.minTxid && t.txid <= header.maxTxid) || (previous && t.txid <= previous.txid)) {
      throw corrupt(`transaction ${i} has txid ${t.txid}, out of order or outside ${header.minTxid}..${header.maxTxid}`);
    }
    if (!(t.timestamp >= header.firstTimestamp && t.timestamp <= header.lastTimestamp) || (previous && t.timestamp < previous.timestamp)) {
      throw corrupt(`transaction ${t.txid} has timestamp ${t.timestamp}, out of order or outside the header's range`);
    }
    if (firstPage + t.pageCount > pageCount) throw corrupt(`transaction ${t.txid} claims more pages than the index lists`);
    for (let p = firstPage; p < firstPage + t.pageCount; p++) {
      const pgno = pgnos[p] as number;
      if (pgno < 1 || pgno > t.commitSize || pgno === lockPage) throw corrupt(`transaction ${t.txid} lists page ${pgno}, outside 1..${t.commitSize} or the lock page`);
    }
    firstPage += t.pageCount;
    transactions.push(t);
    previous = t;
  }
  if (firstPage !== pageCount) throw corrupt(`its transactions hold ${firstPage} pages, not ${pageCount}`);
  const last = transactions[transactions.length - 1];
  if (!last || last.txid !== header.maxTxid || last.commitSize !== header.commitSize || last.postChecksum !== header.postChecksum) {
    throw corrupt('its last transaction does not match the header (max txid, commit size, post-apply checksum)');
  }
  return { chunks, transactions, pgnos };
}

/** The last transaction committed at or before `timestamp` (ms), or undefined if all are later. */
export function transactionAtOrBefore(index: ObjectIndex, timestamp: number): IndexTransaction | undefined {
  let lo = 0;
  let hi = index.transactions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((index.transactions[mid] as IndexTransaction).timestamp <= timestamp) lo = mid + 1;
    else hi = mid;
  }
  return index.transactions[lo - 1];
}

/** The page numbers written by one transaction of the index. */
export function pagesOf(index: ObjectIndex, transaction: IndexTransaction): Uint32Array {
  return index.pgnos.subarray(transaction.firstPage, transaction.firstPage + transaction.pageCount);
}
