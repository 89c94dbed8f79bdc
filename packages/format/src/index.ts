import { loadChecksum } from './checksum.js';
import { loadCodecs } from './codec.js';

export { FormatError, isFormatError } from './errors.js';
export type { FormatErrorCode } from './errors.js';

export { PageHashes, isValidPageSize, loadChecksum, lockPageNumber } from './checksum.js';
export type { Checksum, StreamingHash } from './checksum.js';

export { COMPRESSIONS, DEFAULT_COMPRESSION, DEFAULT_ZSTD_LEVEL, loadCodecs } from './codec.js';

export { Keyring } from './crypto.js';
export type { KeyringInit, KeyringKey } from './crypto.js';

export {
  CHUNK_HEADER_SIZE,
  DEFAULT_CHUNK_SIZE,
  FORMAT_MINOR,
  FORMAT_VERSION,
  HEADER_SIZE,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  TRAILER_SIZE,
  decodeHeader,
  decodeTrailer,
  hex64,
  indexTailSize,
  isValidKeyId,
  logicalStreamBytes,
  snapshotPageCount,
} from './format.js';
export { pagesOf, transactionAtOrBefore } from './index-block.js';
export type {
  Compression,
  DecodeContext,
  HeaderFields,
  IndexChunk,
  IndexTransaction,
  ObjectHeader,
  ObjectHeaderInit,
  ObjectIndex,
  ObjectKind,
  ObjectTrailer,
} from './format.js';

export { SegmentEncoder, encodeSegment } from './encoder.js';
export type { EncoderOptions, PageRecord, TransactionFields, TransactionInput, TransactionStart } from './encoder.js';

export { decodeObject, decodeSegment, readIndex } from './decoder.js';
export { ObjectPages } from './pages.js';
export type { PageLocation } from './pages.js';
export type { ByteSource, DecodeEvent, DecodeOptions, DecodedObject, EndEvent, HeaderEvent, TransactionEvent } from './decoder.js';

export {
  databaseKey,
  epochKey,
  formatEpoch,
  formatGeneration,
  formatKeys,
  formatObjectKey,
  formatTxid,
  generationKey,
  generationPrefix,
  levelPrefix,
  parseGeneration,
  parseObjectKey,
  segmentKey,
  snapshotKey,
  snapshotsPrefix,
} from './keys.js';
export type { KeyFormatter, ObjectKey, SegmentKeyFields, SnapshotKeyFields } from './keys.js';

/**
 * Loads the WASM modules (xxhash, zstd) once per process. Await it before the synchronous APIs
 * (SegmentEncoder, encodeSegment, PageHashes, decodeHeader); decodeObject and readIndex load what
 * they need themselves. Uncompressed objects need only `loadChecksum()`.
 */
export async function loadFormat(): Promise<void> {
  await Promise.all([loadChecksum(), loadCodecs()]);
}
export { restoredNotePath, parseRestoredNote, type RestoredNote } from './restored.js';
export { acceptable } from './fencing.js';
export { sealMarker, verifyMarker } from './markers.js';
export type { DatabaseManifest, EpochMarker, GenerationMarker, MarkerAuth, MarkerContext, VerifyMarkerOptions } from './markers.js';
