import { checksum } from './checksum.js';
import type { Checksum } from './checksum.js';
import { decompress, decompressInto } from './codec.js';
import { Keyring, deriveObjectKey, open } from './crypto.js';
import type { DecodeOptions } from './decoder.js';
import { chunkAad } from './encoder.js';
import { invalidArgument, objectError } from './errors.js';
import {
  CHUNK,
  CHUNK_FLAG_FINAL,
  CHUNK_FLAG_STORED,
  CHUNK_HEADER_SIZE,
  GCM_TAG_SIZE,
  MAX_CHUNK_RAW_LENGTH,
  TRANSACTION_RECORD_SIZE,
  hex64,
  maxRawLength,
  viewOf,
} from './format.js';
import type { ObjectHeader } from './format.js';

/** A chunk header as parsed and checked (the format README's "Chunks" table). */
export interface ChunkFrame {
  offset: number;
  index: number;
  flags: number;
  final: boolean;
  storedLength: number;
  rawLength: number;
  dataChecksum: bigint;
  head: Uint8Array;
}

/** Verifies, decrypts and decompresses chunks of one object (also used by ranged page reads, pages.ts). */
export class ChunkOpener {
  readonly #header: ObjectHeader;
  readonly #headerBytes: Uint8Array;
  readonly #key: Uint8Array | null;
  readonly #name: string | undefined;
  readonly #sums: Checksum;
  readonly #reuse: boolean;
  #out: Uint8Array = new Uint8Array(0);

  constructor(header: ObjectHeader, headerBytes: Uint8Array, options: Omit<DecodeOptions, 'maxPagesPerEvent'>) {
    const name = options.name;
    this.#reuse = options.reuseBuffers === true;
    this.#header = header;
    this.#headerBytes = headerBytes;
    this.#name = name;
    this.#sums = checksum();
    if (header.keyId === null) {
      if (options.requireEncryption ?? options.keyring !== undefined) throw objectError('ERR_NOT_ENCRYPTED', name, 'the object is not encrypted but keys were given');
      this.#key = null;
      return;
    }
    const keyring = options.keyring;
    if (keyring === undefined) {
      throw objectError('ERR_KEY_REQUIRED', name, `the object is encrypted with key id '${header.keyId}' and no keyring was given`, { keyId: header.keyId });
    }
    if (!(keyring instanceof Keyring)) throw invalidArgument('decodeObject: keyring must be a Keyring (new Keyring({ keys: [...] }))');
    const key = deriveObjectKey(keyring, header.keyId, header.salt);
    if (key === undefined) {
      throw objectError('ERR_UNKNOWN_KEY', name, `the object is encrypted with key id '${header.keyId}', which is not in the keyring (ids: ${keyring.ids().join(', ')})`, {
        keyId: header.keyId,
        known: keyring.ids(),
      });
    }
    this.#key = key;
  }

  /**
   * Checks a chunk header: its own checksum, its place in the sequence and plausible lengths, so a
   * damaged length can neither make the reader allocate gigabytes nor hide as a truncation.
   * `indexLength` is the raw length an index block at this position must have.
   */
  parseHeader(head: Uint8Array, offset: number, expectedIndex: number, indexLength: number): ChunkFrame {
    const name = this.#name;
    const v = viewOf(head);
    const stored = v.getBigUint64(CHUNK.headerChecksum);
    const actual = this.#sums.xxh64(head.subarray(0, CHUNK.headerChecksum));
    if (stored !== actual) {
      throw objectError('ERR_CHECKSUM_MISMATCH', name, `chunk ${expectedIndex}: header checksum mismatch at offset ${offset}`, {
        offset,
        chunk: expectedIndex,
        part: 'chunk header',
      });
    }
    const index = v.getUint32(CHUNK.index);
    const flags = v.getUint8(CHUNK.flags);
    const storedLength = v.getUint32(CHUNK.storedLength);
    const rawLength = v.getUint32(CHUNK.rawLength);
    const details = { offset, chunk: expectedIndex };
    if (index !== expectedIndex) {
      throw objectError(
        'ERR_CORRUPT_OBJECT',
        name,
        `found chunk ${index} at offset ${offset} where chunk ${expectedIndex} belongs: chunks were dropped, duplicated or reordered`,
        { ...details, found: index },
      );
    }
    if ((flags & ~(CHUNK_FLAG_FINAL | CHUNK_FLAG_STORED)) !== 0) {
      throw objectError('ERR_UNSUPPORTED_VERSION', name, `chunk ${index} at offset ${offset} has flags 0x${flags.toString(16)} this walship does not know`, details);
    }
    const final = (flags & CHUNK_FLAG_FINAL) !== 0;
    const plain = (flags & CHUNK_FLAG_STORED) !== 0 || this.#header.compression === 'none';
    const tag = this.#key ? GCM_TAG_SIZE : 0;
    const rawOk = final ? rawLength === indexLength : rawLength >= TRANSACTION_RECORD_SIZE && rawLength <= MAX_CHUNK_RAW_LENGTH;
    // A compressed payload is kept only when smaller than the raw bytes, else the chunk is STORED.
    const storedOk = plain ? storedLength === rawLength + tag : storedLength > tag && storedLength < rawLength + tag;
    if (rawOk && storedOk && !plain && rawLength > maxRawLength(this.#header.compression, storedLength - tag)) {
      throw objectError(
        'ERR_CORRUPT_OBJECT',
        name,
        `${final ? 'index block' : `chunk ${index}`} at offset ${offset} claims ${rawLength} raw bytes from ${storedLength - tag} compressed bytes, more than ${this.#header.compression} can decode to`,
        { ...details, limit: 'expansion', rawLength, storedLength },
      );
    }
    if (!rawOk || !storedOk) {
      throw objectError(
        'ERR_CORRUPT_OBJECT',
        name,
        `${final ? 'index block' : `chunk ${index}`} at offset ${offset} has implausible lengths (stored ${storedLength}, raw ${rawLength}${final ? `, expected raw ${indexLength}` : ''})`,
        details,
      );
    }
    return { offset, index, flags, final, storedLength, rawLength, dataChecksum: v.getBigUint64(CHUNK.dataChecksum), head };
  }

  /**
   * The chunk's raw bytes, verified. `into` (exactly frame.rawLength bytes): where a compressed
   * chunk is decompressed, returned; a stored one is returned as it is (the caller copies it).
   */
  open(frame: ChunkFrame, stored: Uint8Array, into?: Uint8Array): Uint8Array {
    const name = this.#name;
    const details = { offset: frame.offset, chunk: frame.index };
    const actual = this.#sums.xxh64(stored);
    if (actual !== frame.dataChecksum) {
      throw objectError('ERR_CHECKSUM_MISMATCH', name, `chunk ${frame.index}: data checksum mismatch in the ${stored.length} bytes at offset ${frame.offset + CHUNK_HEADER_SIZE}`, {
        ...details,
        part: 'chunk data',
      });
    }
    let payload = stored;
    if (this.#key) {
      try {
        payload = open(this.#key, this.#header.noncePrefix, frame.index, chunkAad(this.#headerBytes, frame.head), stored);
      } catch (cause) {
        throw objectError(
          'ERR_DECRYPT_FAILED',
          name,
          `chunk ${frame.index} at offset ${frame.offset} does not authenticate under key id '${this.#header.keyId}'`,
          { ...details, keyId: this.#header.keyId },
          cause,
        );
      }
    }
    if ((frame.flags & CHUNK_FLAG_STORED) !== 0 || this.#header.compression === 'none') return payload;
    try {
      if (into !== undefined && into.length === frame.rawLength) {
        decompressInto(this.#header.compression, payload, into);
        return into;
      }
      if (!this.#reuse) return decompress(this.#header.compression, payload, frame.rawLength);
      if (this.#out.length < frame.rawLength) this.#out = new Uint8Array(frame.rawLength);
      const out = this.#out.subarray(0, frame.rawLength);
      decompressInto(this.#header.compression, payload, out);
      return out;
    } catch (cause) {
      throw objectError('ERR_CORRUPT_OBJECT', name, `chunk ${frame.index} at offset ${frame.offset} does not decompress (${this.#header.compression}): ${errorText(cause)}`, details, cause);
    }
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
