import { checksum, isValidPageSize, lockPageNumber } from './checksum.js';
import { FormatError, objectError } from './errors.js';

// The layout constants of format version 1. README.md has the same tables; fields are written in
// this order.

/** Major format version written by this package. A reader refuses a larger major version. */
export const FORMAT_VERSION = 1;
/** Minor version: readers of the same major accept any minor (minors only use reserved space). */
export const FORMAT_MINOR = 0;

/** "\x89WSHIP\r\n": the high byte and CR LF catch 7-bit and newline-translating transfers, as in PNG. */
export const MAGIC = Uint8Array.of(0x89, 0x57, 0x53, 0x48, 0x49, 0x50, 0x0d, 0x0a);
/** "WSHIPEND", just before the object checksum at the very end of every object. */
export const TRAILER_MAGIC = Uint8Array.of(0x57, 0x53, 0x48, 0x49, 0x50, 0x45, 0x4e, 0x44);

export const HEADER_SIZE = 192;
export const CHUNK_HEADER_SIZE = 32;
export const TRAILER_SIZE = 48;
export const TRANSACTION_RECORD_SIZE = 32;
export const PAGE_RECORD_HEADER_SIZE = 4;
export const INDEX_HEADER_SIZE = 16;
export const INDEX_CHUNK_ENTRY_SIZE = 16;
export const INDEX_TRANSACTION_ENTRY_SIZE = 40;
export const KEY_ID_SIZE = 32;
export const SALT_SIZE = 16;
export const NONCE_PREFIX_SIZE = 8;
export const GCM_TAG_SIZE = 16;

export const DEFAULT_CHUNK_SIZE = 1 << 20;
export const MIN_CHUNK_SIZE = 1 << 10;
export const MAX_CHUNK_SIZE = 1 << 24;
/** A data chunk holds whole records, so it may pass chunkSize by one page record. */
export const MAX_CHUNK_RAW_LENGTH = MAX_CHUNK_SIZE + PAGE_RECORD_HEADER_SIZE + 65536;

/**
 * The most raw bytes one stored byte of a zstd frame can stand for. Every block regenerates at most
 * 128 KiB and costs at least 4 bytes (an RLE block: a 3-byte header and the repeated byte), and a
 * frame adds a header, so no valid frame of n bytes decodes to 32768 n bytes or more: a bound no
 * writer can pass, checked before anything is decompressed.
 */
export const MAX_ZSTD_EXPANSION = 32768;
/**
 * The raw index block `readIndex` decompresses without reading the object's data, at least: larger
 * ones are allowed up to INDEX_BYTES_PER_STORED_BYTE per byte of the object (README "Limits").
 */
export const MIN_INDEX_LIMIT = 8 * 1024 * 1024;
export const INDEX_BYTES_PER_STORED_BYTE = 4;

/** Header flag: chunks are sealed with AES-256-GCM under the key named in the header. */
export const HEADER_FLAG_ENCRYPTED = 0x0001;
/** Chunk flag: the index block, always the last chunk. */
export const CHUNK_FLAG_FINAL = 0x01;
/** Chunk flag: stored without compression because compressing did not make it smaller. */
export const CHUNK_FLAG_STORED = 0x02;

export const HEADER = {
  magic: 0,
  major: 8,
  minor: 10,
  kind: 12,
  level: 13,
  flags: 14,
  databaseId: 16,
  generation: 32,
  epoch: 40,
  pageSize: 44,
  minTxid: 48,
  maxTxid: 56,
  commitSize: 64,
  transactionCount: 68,
  pageCount: 72,
  compression: 76,
  firstTimestamp: 80,
  lastTimestamp: 88,
  preChecksum: 96,
  postChecksum: 104,
  keyId: 112,
  salt: 144,
  noncePrefix: 160,
  checksum: 184,
} as const;

export const CHUNK = { index: 0, flags: 4, storedLength: 8, rawLength: 12, dataChecksum: 16, headerChecksum: 24 } as const;

export const TRAILER = {
  chunkCount: 0,
  transactionCount: 4,
  pageCount: 8,
  indexLength: 12,
  rawLength: 16,
  indexOffset: 24,
  magic: 32,
  checksum: 40,
} as const;

export type ObjectKind = 'segment' | 'snapshot';
/** Id 2 is reserved (lz4 was measured and dropped; see README). */
export type Compression = 'none' | 'zstd';

export const KIND_IDS: Record<ObjectKind, number> = { segment: 1, snapshot: 2 };
export const COMPRESSION_IDS: Record<Compression, number> = { none: 0, zstd: 1 };

/** What the writer knows about an object before encoding it. */
export interface HeaderFields {
  kind: ObjectKind;
  /** 32 lowercase hex digits (16 bytes). */
  databaseId: string;
  /** 16 lowercase hex digits: epoch at creation (8) then a sequence number (8). */
  generation: string;
  epoch: number;
  /** 0 = shipped by the writer; > 0 = written by compaction. */
  level: number;
  minTxid: number;
  maxTxid: number;
  pageSize: number;
  /** Database size in pages after maxTxid. */
  commitSize: number;
  /** Commit time of the first and last transaction, ms since the epoch. */
  firstTimestamp: number;
  lastTimestamp: number;
  /** Rolling checksum of the database before minTxid (0n for snapshots). */
  preChecksum: bigint;
  /** Rolling checksum of the database after maxTxid. */
  postChecksum: bigint;
  transactionCount: number;
  /** Page records in the whole object. */
  pageCount: number;
}

/** What a writer passes to the encoder: the header fields plus the compression to use. */
export interface ObjectHeaderInit extends HeaderFields {
  /** Default: DEFAULT_COMPRESSION ('zstd'). */
  compression?: Compression;
}

export interface ObjectHeader extends HeaderFields {
  formatVersion: number;
  formatMinor: number;
  flags: number;
  compression: Compression;
  /** Id of the key that sealed the chunks, or null for a plaintext object. */
  keyId: string | null;
  /** HKDF salt of the per-object key (zeros when plaintext). */
  salt: Uint8Array;
  /** First 8 bytes of every chunk nonce (zeros when plaintext). */
  noncePrefix: Uint8Array;
}

export interface ObjectTrailer {
  /** Data chunks (the index block not counted). */
  chunkCount: number;
  transactionCount: number;
  pageCount: number;
  /** Bytes of the index block as stored, chunk header included. */
  indexLength: number;
  /** Bytes of the logical stream (all data chunks, uncompressed). */
  rawLength: number;
  /** Object offset of the index block. */
  indexOffset: number;
  /** xxh64 of every byte of the object before this field. */
  checksum: bigint;
}

export interface IndexChunk {
  objectOffset: number;
  rawOffset: number;
}

export interface IndexTransaction {
  txid: number;
  timestamp: number;
  commitSize: number;
  pageCount: number;
  postChecksum: bigint;
  /** Offset of the transaction record in the logical stream. */
  rawOffset: number;
  /** Position of this transaction's first page in `ObjectIndex.pgnos`. */
  firstPage: number;
}

/** The index block: enough to plan a restore from a ranged GET of the object's tail. */
export interface ObjectIndex {
  chunks: IndexChunk[];
  transactions: IndexTransaction[];
  /** Page number of every page record, in stream order. */
  pgnos: Uint32Array;
}

const HEX16 = /^[0-9a-f]{16}$/;
const HEX32 = /^[0-9a-f]{32}$/;
const U64_MAX = (1n << 64n) - 1n;

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function isSafeU64(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isU64Checksum(n: bigint): boolean {
  return typeof n === 'bigint' && n >= 0n && n <= U64_MAX;
}

/** Number of page records a snapshot of `commitSize` pages holds (every page but the lock page). */
export function snapshotPageCount(pageSize: number, commitSize: number): number {
  return commitSize >= lockPageNumber(pageSize) ? commitSize - 1 : commitSize;
}

/** Raw bytes of the index block of an object with these counts. */
export function indexRawLength(chunkCount: number, transactionCount: number, pageCount: number): number {
  return INDEX_HEADER_SIZE + chunkCount * INDEX_CHUNK_ENTRY_SIZE + transactionCount * INDEX_TRANSACTION_ENTRY_SIZE + 4 * pageCount;
}

/** Bytes of the logical stream the header's counts need: one record per transaction and per page. */
export function logicalStreamBytes(h: Pick<HeaderFields, 'transactionCount' | 'pageCount' | 'pageSize'>): number {
  return h.transactionCount * TRANSACTION_RECORD_SIZE + h.pageCount * (PAGE_RECORD_HEADER_SIZE + h.pageSize);
}

/** The most raw bytes `stored` bytes of (decrypted) chunk payload can decode to. */
export function maxRawLength(compression: Compression, stored: number): number {
  return compression === 'none' ? stored : stored * MAX_ZSTD_EXPANSION;
}

/**
 * Why an object of `objectSize` stored bytes cannot hold what its header announces, or null. The
 * logical stream and the index block both decode from the bytes between the header and the trailer,
 * at most MAX_ZSTD_EXPANSION raw bytes per stored byte: a header that needs more was not written by
 * a writer, and refusing it costs nothing to decode.
 */
export function sizeProblem(h: ObjectHeader, objectSize: number): string | null {
  const stored = objectSize - HEADER_SIZE - CHUNK_HEADER_SIZE - TRAILER_SIZE;
  const needed = logicalStreamBytes(h) + indexRawLength(0, h.transactionCount, h.pageCount);
  const capacity = maxRawLength(h.compression, Math.max(0, stored));
  if (needed <= capacity) return null;
  return `its ${h.transactionCount} transactions and ${h.pageCount} pages of ${h.pageSize} bytes need ${needed} raw bytes, more than the ${objectSize} bytes of the object can hold (${h.compression === 'none' ? 'uncompressed' : `zstd decodes at most ${MAX_ZSTD_EXPANSION} bytes per stored byte`})`;
}

/**
 * The first problem with a header's fields, or null. Shared by the encoder (where a problem is the
 * caller's mistake) and the decoder (where it means a corrupt or crafted object).
 */
export function headerProblem(h: HeaderFields): string | null {
  if (h.kind !== 'segment' && h.kind !== 'snapshot') return `kind ${String(h.kind)} is not 'segment' or 'snapshot'`;
  if (typeof h.databaseId !== 'string' || !HEX32.test(h.databaseId)) return `databaseId ${String(h.databaseId)} is not 32 lowercase hex digits`;
  if (typeof h.generation !== 'string' || !HEX16.test(h.generation)) return `generation ${String(h.generation)} is not 16 lowercase hex digits`;
  if (!isU32(h.epoch)) return `epoch ${h.epoch} is not an integer in 0..4294967295`;
  if (!Number.isInteger(h.level) || h.level < 0 || h.level > 255) return `level ${h.level} is not an integer in 0..255`;
  if (!isValidPageSize(h.pageSize)) return `page size ${h.pageSize} is not a power of two from 512 to 65536`;
  if (!isSafeU64(h.minTxid) || h.minTxid < 1) return `min txid ${h.minTxid} is not a safe integer >= 1`;
  if (!isSafeU64(h.maxTxid) || h.maxTxid < h.minTxid) return `max txid ${h.maxTxid} is not a safe integer >= min txid ${h.minTxid}`;
  if (!isU32(h.commitSize) || h.commitSize < 1) return `commit size ${h.commitSize} is not an integer in 1..4294967295`;
  if (!isSafeU64(h.firstTimestamp)) return `first timestamp ${h.firstTimestamp} is not a safe integer >= 0`;
  if (!isSafeU64(h.lastTimestamp) || h.lastTimestamp < h.firstTimestamp) {
    return `last timestamp ${h.lastTimestamp} is not a safe integer >= first timestamp ${h.firstTimestamp}`;
  }
  if (!isU64Checksum(h.preChecksum)) return `pre-apply checksum ${String(h.preChecksum)} is not a bigint in 0..2^64-1`;
  if (!isU64Checksum(h.postChecksum)) return `post-apply checksum ${String(h.postChecksum)} is not a bigint in 0..2^64-1`;
  if (!isU32(h.transactionCount) || h.transactionCount < 1) return `transaction count ${h.transactionCount} is not an integer in 1..4294967295`;
  if (!isU32(h.pageCount)) return `page count ${h.pageCount} is not an integer in 0..4294967295`;
  const span = h.maxTxid - h.minTxid + 1;
  if (h.transactionCount > span) return `transaction count ${h.transactionCount} exceeds the txid range ${h.minTxid}..${h.maxTxid}`;
  if (h.transactionCount === 1 && h.firstTimestamp !== h.lastTimestamp) {
    return `a single transaction has one timestamp, but first ${h.firstTimestamp} != last ${h.lastTimestamp}`;
  }
  if (h.kind === 'snapshot') {
    if (h.minTxid !== h.maxTxid) return `a snapshot is at one txid, but min txid ${h.minTxid} != max txid ${h.maxTxid}`;
    if (h.preChecksum !== 0n) return `a snapshot starts from an empty database, but its pre-apply checksum is ${h.preChecksum} (must be 0)`;
    const expected = snapshotPageCount(h.pageSize, h.commitSize);
    if (h.pageCount !== expected) return `a snapshot of ${h.commitSize} pages holds ${expected} page records, not ${h.pageCount}`;
  } else {
    if (h.level === 0 && h.transactionCount !== span) {
      return `a level-0 segment holds every transaction of ${h.minTxid}..${h.maxTxid} (${span}), not ${h.transactionCount}`;
    }
    if (h.pageCount < h.transactionCount) return `page count ${h.pageCount} is less than the transaction count ${h.transactionCount} (every transaction has a page)`;
  }
  return null;
}

// ---- binary helpers ------------------------------------------------------------------------------

export function writeU64(view: DataView, offset: number, value: number | bigint): void {
  view.setBigUint64(offset, typeof value === 'bigint' ? value : BigInt(value));
}

/** Reads a u64 that the format keeps within Number.MAX_SAFE_INTEGER; larger values yield NaN. */
export function readSafeU64(view: DataView, offset: number): number {
  const v = view.getBigUint64(offset);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Number.NaN;
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

const KEY_ID = /^[\x21-\x7e]{1,32}$/;

/** Key ids are 1..32 printable ASCII characters without spaces, stored zero-padded in the header. */
export function isValidKeyId(id: unknown): id is string {
  return typeof id === 'string' && KEY_ID.test(id);
}

// ---- header --------------------------------------------------------------------------------------

/** Serialises a header, computing its checksum. The caller has validated the fields. */
export function encodeHeader(h: ObjectHeader): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const v = viewOf(out);
  out.set(MAGIC, HEADER.magic);
  v.setUint16(HEADER.major, h.formatVersion);
  v.setUint16(HEADER.minor, h.formatMinor);
  v.setUint8(HEADER.kind, KIND_IDS[h.kind]);
  v.setUint8(HEADER.level, h.level);
  v.setUint16(HEADER.flags, h.flags);
  out.set(hexToBytes(h.databaseId), HEADER.databaseId);
  writeU64(v, HEADER.generation, BigInt(`0x${h.generation}`));
  v.setUint32(HEADER.epoch, h.epoch);
  v.setUint32(HEADER.pageSize, h.pageSize);
  writeU64(v, HEADER.minTxid, h.minTxid);
  writeU64(v, HEADER.maxTxid, h.maxTxid);
  v.setUint32(HEADER.commitSize, h.commitSize);
  v.setUint32(HEADER.transactionCount, h.transactionCount);
  v.setUint32(HEADER.pageCount, h.pageCount);
  v.setUint8(HEADER.compression, COMPRESSION_IDS[h.compression]);
  writeU64(v, HEADER.firstTimestamp, h.firstTimestamp);
  writeU64(v, HEADER.lastTimestamp, h.lastTimestamp);
  writeU64(v, HEADER.preChecksum, h.preChecksum);
  writeU64(v, HEADER.postChecksum, h.postChecksum);
  if (h.keyId !== null) out.set(new TextEncoder().encode(h.keyId), HEADER.keyId);
  out.set(h.salt, HEADER.salt);
  out.set(h.noncePrefix, HEADER.noncePrefix);
  writeU64(v, HEADER.checksum, checksum().xxh64(out.subarray(0, HEADER.checksum)));
  return out;
}

export interface DecodeContext {
  /** The object's name in messages, usually its S3 key. */
  name?: string;
  /**
   * The object's stored size (e.g. from a listing), when known: a header whose counts cannot fit
   * in it is refused before anything is decoded (ERR_CORRUPT_OBJECT, details.limit 'expansion').
   */
  objectSize?: number;
}

/**
 * Parses and validates a header (the first HEADER_SIZE bytes of an object; more bytes are ignored),
 * so a ranged GET of the head is enough to list, filter and chain objects. Checks, in this order:
 * magic, major version, header checksum, flags, fields. The data behind it is not verified here.
 */
export function decodeHeader(bytes: Uint8Array, options: DecodeContext = {}): ObjectHeader {
  const name = options.name;
  const magicLength = Math.min(bytes.length, MAGIC.length);
  if (!equalBytes(bytes.subarray(0, magicLength), MAGIC.subarray(0, magicLength))) {
    throw objectError('ERR_BAD_MAGIC', name, `the first bytes are not the walship magic (found ${bytesToHex(bytes.subarray(0, magicLength))})`, {
      offset: 0,
    });
  }
  if (bytes.length < HEADER_SIZE) {
    throw objectError('ERR_TRUNCATED', name, `the header needs ${HEADER_SIZE} bytes but the object has ${bytes.length}`, {
      offset: bytes.length,
    });
  }
  const v = viewOf(bytes);
  const major = v.getUint16(HEADER.major);
  const minor = v.getUint16(HEADER.minor);
  if (major !== FORMAT_VERSION) {
    throw objectError(
      'ERR_UNSUPPORTED_VERSION',
      name,
      `format version ${major}.${minor} is not readable by this walship (reads major version ${FORMAT_VERSION})`,
      { offset: HEADER.major, version: major, minor },
    );
  }
  const stored = v.getBigUint64(HEADER.checksum);
  const actual = checksum().xxh64(bytes.subarray(0, HEADER.checksum));
  if (stored !== actual) {
    throw objectError('ERR_CHECKSUM_MISMATCH', name, `header checksum mismatch (stored ${hex64(stored)}, computed ${hex64(actual)})`, {
      offset: HEADER.checksum,
      part: 'header',
    });
  }
  const flags = v.getUint16(HEADER.flags);
  if ((flags & ~HEADER_FLAG_ENCRYPTED) !== 0) {
    throw objectError('ERR_UNSUPPORTED_VERSION', name, `header flags 0x${flags.toString(16)} include bits this walship does not know`, {
      offset: HEADER.flags,
      flags,
    });
  }
  const corrupt = (problem: string, offset: number): FormatError =>
    objectError('ERR_CORRUPT_OBJECT', name, `header: ${problem}`, { offset, part: 'header' });
  const kind = kindOf(v.getUint8(HEADER.kind));
  if (!kind) throw corrupt(`unknown object kind ${v.getUint8(HEADER.kind)}`, HEADER.kind);
  const compression = compressionOf(v.getUint8(HEADER.compression));
  if (!compression) {
    // The header checksum matched, so a newer writer chose a codec this reader does not have.
    throw objectError('ERR_UNSUPPORTED_VERSION', name, `compression id ${v.getUint8(HEADER.compression)} is not known to this walship`, {
      offset: HEADER.compression,
    });
  }
  const keyField = bytes.subarray(HEADER.keyId, HEADER.keyId + KEY_ID_SIZE);
  const keyLength = keyField.indexOf(0) === -1 ? KEY_ID_SIZE : keyField.indexOf(0);
  const keyId = keyLength === 0 ? null : new TextDecoder().decode(keyField.subarray(0, keyLength));
  if (keyId !== null && (!isValidKeyId(keyId) || keyField.subarray(keyLength).some((b) => b !== 0))) {
    throw corrupt('the key id field is not printable ASCII padded with zeros', HEADER.keyId);
  }
  if ((keyId !== null) !== ((flags & HEADER_FLAG_ENCRYPTED) !== 0)) {
    throw corrupt(`the encrypted flag and the key id field disagree (key id ${keyId === null ? 'empty' : `'${keyId}'`})`, HEADER.flags);
  }
  const header: ObjectHeader = {
    formatVersion: major,
    formatMinor: minor,
    kind,
    flags,
    databaseId: bytesToHex(bytes.subarray(HEADER.databaseId, HEADER.databaseId + 16)),
    generation: v.getBigUint64(HEADER.generation).toString(16).padStart(16, '0'),
    epoch: v.getUint32(HEADER.epoch),
    level: v.getUint8(HEADER.level),
    minTxid: readSafeU64(v, HEADER.minTxid),
    maxTxid: readSafeU64(v, HEADER.maxTxid),
    pageSize: v.getUint32(HEADER.pageSize),
    commitSize: v.getUint32(HEADER.commitSize),
    transactionCount: v.getUint32(HEADER.transactionCount),
    pageCount: v.getUint32(HEADER.pageCount),
    compression,
    firstTimestamp: readSafeU64(v, HEADER.firstTimestamp),
    lastTimestamp: readSafeU64(v, HEADER.lastTimestamp),
    preChecksum: v.getBigUint64(HEADER.preChecksum),
    postChecksum: v.getBigUint64(HEADER.postChecksum),
    keyId,
    salt: bytes.slice(HEADER.salt, HEADER.salt + SALT_SIZE),
    noncePrefix: bytes.slice(HEADER.noncePrefix, HEADER.noncePrefix + NONCE_PREFIX_SIZE),
  };
  const problem = headerProblem(header);
  if (problem) throw corrupt(problem, 0);
  const tooBig = options.objectSize === undefined ? null : sizeProblem(header, options.objectSize);
  if (tooBig) {
    throw objectError('ERR_CORRUPT_OBJECT', name, `header: ${tooBig}`, { offset: HEADER.pageCount, part: 'header', limit: 'expansion', objectSize: options.objectSize });
  }
  return header;
}

function kindOf(id: number): ObjectKind | undefined {
  return (Object.keys(KIND_IDS) as ObjectKind[]).find((k) => KIND_IDS[k] === id);
}

function compressionOf(id: number): Compression | undefined {
  return (Object.keys(COMPRESSION_IDS) as Compression[]).find((k) => COMPRESSION_IDS[k] === id);
}

export function hex64(value: bigint): string {
  return `0x${value.toString(16).padStart(16, '0')}`;
}

// ---- trailer -------------------------------------------------------------------------------------

/** The trailer without its checksum (the first TRAILER.checksum bytes); the encoder appends it. */
export function encodeTrailerBody(t: Omit<ObjectTrailer, 'checksum'>): Uint8Array {
  const out = new Uint8Array(TRAILER.checksum);
  const v = viewOf(out);
  v.setUint32(TRAILER.chunkCount, t.chunkCount);
  v.setUint32(TRAILER.transactionCount, t.transactionCount);
  v.setUint32(TRAILER.pageCount, t.pageCount);
  v.setUint32(TRAILER.indexLength, t.indexLength);
  writeU64(v, TRAILER.rawLength, t.rawLength);
  writeU64(v, TRAILER.indexOffset, t.indexOffset);
  out.set(TRAILER_MAGIC, TRAILER.magic);
  return out;
}

/**
 * Parses the last TRAILER_SIZE bytes of an object. Checks the trailer magic only: the object
 * checksum in it can be verified by reading the whole object (decodeObject does).
 */
export function decodeTrailer(bytes: Uint8Array, options: DecodeContext = {}): ObjectTrailer {
  if (bytes.length < TRAILER_SIZE) {
    throw objectError('ERR_TRUNCATED', options.name, `the trailer needs ${TRAILER_SIZE} bytes, got ${bytes.length}`);
  }
  const t = bytes.subarray(bytes.length - TRAILER_SIZE);
  if (!equalBytes(t.subarray(TRAILER.magic, TRAILER.magic + TRAILER_MAGIC.length), TRAILER_MAGIC)) {
    throw objectError('ERR_TRUNCATED', options.name, 'the last bytes are not a walship trailer (an incomplete upload, or not a walship object)');
  }
  const v = viewOf(t);
  return {
    chunkCount: v.getUint32(TRAILER.chunkCount),
    transactionCount: v.getUint32(TRAILER.transactionCount),
    pageCount: v.getUint32(TRAILER.pageCount),
    indexLength: v.getUint32(TRAILER.indexLength),
    rawLength: readSafeU64(v, TRAILER.rawLength),
    indexOffset: readSafeU64(v, TRAILER.indexOffset),
    checksum: v.getBigUint64(TRAILER.checksum),
  };
}

/** How many bytes from the end of the object `readIndex` needs: the index block and the trailer. */
export function indexTailSize(trailer: ObjectTrailer): number {
  return trailer.indexLength + TRAILER_SIZE;
}
