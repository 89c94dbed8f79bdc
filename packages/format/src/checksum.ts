import xxhash from 'xxhash-wasm';
import type { XXHashAPI } from 'xxhash-wasm';
import { FormatError, invalidArgument } from './errors.js';

/** SQLite page sizes: powers of two from 512 to 65536. */
export function isValidPageSize(pageSize: number): boolean {
  return Number.isInteger(pageSize) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0;
}

export function validatePageSize(pageSize: number, what: string): void {
  if (!isValidPageSize(pageSize)) {
    throw invalidArgument(`${what} ${pageSize} is not a SQLite page size (a power of two from 512 to 65536)`, { pageSize });
  }
}

/**
 * The page holding the lock bytes at offset 2^30 (SQLite's PENDING_BYTE). SQLite never writes it,
 * so it is in no WAL, no segment and no snapshot, and it is never hashed.
 */
export function lockPageNumber(pageSize: number): number {
  return Math.floor(1073741824 / pageSize) + 1;
}

/** A running xxh64 over bytes fed in pieces. */
export interface StreamingHash {
  update(data: Uint8Array): StreamingHash;
  digest(): bigint;
}

/** The hash functions of the format, available once `loadChecksum()` has resolved. */
export interface Checksum {
  /** xxh64 (seed 0) of `data`. */
  xxh64(data: Uint8Array): bigint;
  /** A streaming xxh64 (seed 0); its state lives in JS, so any number can run interleaved. */
  createXxh64(): StreamingHash;
  /** H(pgno, page) = xxh64(be32(pgno) || page), the term of the rolling database checksum. */
  pageHash(pgno: number, data: Uint8Array): bigint;
  /** XOR of pageHash over the pages given, skipping none: the caller leaves out the lock page. */
  databaseChecksum(pages: Iterable<{ pgno: number; data: Uint8Array }>): bigint;
}

let loaded: Checksum | undefined;
let loading: Promise<Checksum> | undefined;

/** Instantiates the xxhash WASM module once; later calls return the same helpers. */
export function loadChecksum(): Promise<Checksum> {
  if (loaded) return Promise.resolve(loaded);
  if (!loading) {
    loading = xxhash().then(
      (api) => (loaded = makeChecksum(api)),
      (cause: unknown) => {
        // Forget the failed attempt so that a later call can retry instead of replaying the error.
        loading = undefined;
        throw new FormatError('ERR_NOT_INITIALIZED', `cannot instantiate the xxhash WASM module: ${String(cause)}`, {}, { cause });
      },
    );
  }
  return loading;
}

/** The loaded helpers, for the synchronous parts of the package (encoder, header decode). */
export function checksum(): Checksum {
  if (!loaded) {
    throw new FormatError(
      'ERR_NOT_INITIALIZED',
      'the checksum module is not loaded: call `await loadFormat()` (or `await loadChecksum()`) once before encoding or decoding',
    );
  }
  return loaded;
}

function makeChecksum(api: XXHashAPI): Checksum {
  // Copying the page next to its pgno and hashing once measured 1.1-3.8x faster than feeding the
  // streaming hasher two pieces (bench/compression.mjs, "page hash").
  let scratch = new Uint8Array(4 + 4096);
  let view = new DataView(scratch.buffer);
  const pageHash = (pgno: number, data: Uint8Array): bigint => {
    if (scratch.length !== 4 + data.length) {
      scratch = new Uint8Array(4 + data.length);
      view = new DataView(scratch.buffer);
    }
    view.setUint32(0, pgno);
    scratch.set(data, 4);
    return api.h64Raw(scratch);
  };
  return {
    xxh64: (data) => api.h64Raw(data),
    createXxh64: () => {
      const h = api.create64();
      const wrapper: StreamingHash = {
        update(data) {
          h.update(data);
          return wrapper;
        },
        digest: () => h.digest(),
      };
      return wrapper;
    },
    pageHash,
    databaseChecksum(pages) {
      let value = 0n;
      for (const { pgno, data } of pages) value ^= pageHash(pgno, data);
      return value;
    },
  };
}

/**
 * The rolling checksum of a database kept up to date page by page: the XOR over every page except
 * the lock page of H(pgno, page). Replacing a page XORs its old hash out and the new one in, so each
 * committed page costs one hash, whatever the database size. Memory is 8 bytes per page (a 1 GiB
 * database of 4 KiB pages: 2 MiB).
 */
export class PageHashes {
  readonly pageSize: number;
  readonly lockPage: number;
  #hashes: BigUint64Array;
  #value = 0n;
  #pageCount = 0;
  readonly #checksum: Checksum;

  constructor(pageSize: number) {
    validatePageSize(pageSize, 'PageHashes: pageSize');
    this.pageSize = pageSize;
    this.lockPage = lockPageNumber(pageSize);
    this.#checksum = checksum();
    this.#hashes = new BigUint64Array(64);
  }

  /** The checksum of the database as it stands (0n for an empty one). */
  get value(): bigint {
    return this.#value;
  }

  /** The highest page number held (the database size in pages, lock page included). */
  get pageCount(): number {
    return this.#pageCount;
  }

  /** The hash held for `pgno`, or 0n when the page is absent. */
  hashOf(pgno: number): bigint {
    return this.#hashes[pgno - 1] ?? 0n;
  }

  /** Records the new image of page `pgno`. */
  set(pgno: number, data: Uint8Array): void {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > 0xffffffff) {
      throw invalidArgument(`PageHashes.set: page number ${pgno} is not an integer in 1..4294967295`, { pgno });
    }
    if (pgno === this.lockPage) {
      throw invalidArgument(`PageHashes.set: page ${pgno} is the lock-byte page for page size ${this.pageSize}; SQLite never stores it`, { pgno });
    }
    if (!(data instanceof Uint8Array) || data.length !== this.pageSize) {
      throw invalidArgument(`PageHashes.set: page ${pgno} has ${describeLength(data)}, expected ${this.pageSize}`, { pgno });
    }
    this.setHash(pgno, this.#checksum.pageHash(pgno, data));
  }

  /** Records page `pgno` by its hash H(pgno, page), computed elsewhere (the decoder hashes a snapshot's pages to check it). */
  setHash(pgno: number, hash: bigint): void {
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > 0xffffffff || pgno === this.lockPage) {
      throw invalidArgument(`PageHashes.setHash: page number ${pgno} is not an integer in 1..4294967295 other than the lock page`, { pgno });
    }
    if (pgno > this.#hashes.length) this.#grow(pgno);
    const i = pgno - 1;
    this.#value ^= (this.#hashes[i] as bigint) ^ hash;
    this.#hashes[i] = hash;
    if (pgno > this.#pageCount) this.#pageCount = pgno;
  }

  /** Applies a commit's database size: pages above `commitSize` leave the database. */
  truncate(commitSize: number): void {
    if (!Number.isInteger(commitSize) || commitSize < 0 || commitSize > 0xffffffff) {
      throw invalidArgument(`PageHashes.truncate: commit size ${commitSize} is not an integer in 0..4294967295`, { commitSize });
    }
    for (let i = commitSize; i < this.#pageCount; i++) {
      this.#value ^= this.#hashes[i] as bigint;
    }
    if (commitSize < this.#pageCount) {
      this.#hashes.fill(0n, commitSize, this.#pageCount);
      this.#pageCount = commitSize;
    }
  }

  #grow(pgno: number): void {
    let size = this.#hashes.length;
    while (size < pgno) size *= 2;
    const next = new BigUint64Array(size);
    next.set(this.#hashes);
    this.#hashes = next;
  }
}

function describeLength(data: unknown): string {
  return data instanceof Uint8Array ? `${data.length} bytes` : `a ${typeof data} instead of a Uint8Array`;
}
