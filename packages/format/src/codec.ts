import { createRequire } from 'node:module';
import zstd from '@bokuweb/zstd-wasm';
import { FormatError } from './errors.js';
import type { Compression } from './format.js';

/** Every compression id a reader understands; an encoder may write any of them. */
export const COMPRESSIONS: readonly Compression[] = ['none', 'zstd'];

/**
 * zstd level 1 made shipped commits 1.5x smaller than lz4 (100 versions of one page 4.6x smaller)
 * at 336 MB/s, so lz4 was dropped; lz4-wasm-nodejs also reads its .wasm synchronously on import,
 * which Deno gates. Numbers: bench/results/compression-*.txt, README "Compression".
 */
export const DEFAULT_COMPRESSION: Compression = 'zstd';

/**
 * Compression runs on the writer's event loop, shared with the application's SQLite: level 3
 * measured 1.7-1.8x the CPU of level 1 for objects only 12-13% smaller.
 */
export const DEFAULT_ZSTD_LEVEL = 1;

let loaded = false;
let loading: Promise<void> | undefined;

/** Instantiates the zstd WASM module once. */
export function loadCodecs(): Promise<void> {
  if (loaded) return Promise.resolve();
  if (!loading) {
    loading = zstd.init().then(
      () => {
        loaded = true;
      },
      (cause: unknown) => {
        loading = undefined;
        // The Node build of the binding reads zstd.wasm with node:fs, which Deno gates.
        throw new FormatError(
          'ERR_NOT_INITIALIZED',
          `cannot instantiate the zstd WASM module: ${String(cause)} (on Deno, allow reading @bokuweb/zstd-wasm's zstd.wasm: --allow-read=<its real path>)`,
          {},
          { cause },
        );
      },
    );
  }
  return loading;
}

export function codecsLoaded(): boolean {
  return loaded;
}

function requireLoaded(): void {
  if (!loaded) {
    throw new FormatError(
      'ERR_NOT_INITIALIZED',
      'the compression codecs are not loaded: call `await loadFormat()` (or `await loadCodecs()`) once before encoding or decoding',
    );
  }
}

/** Compresses one chunk. The result may be larger than the input; the encoder then stores it raw. */
export function compress(compression: Compression, raw: Uint8Array, level: number = DEFAULT_ZSTD_LEVEL): Uint8Array {
  switch (compression) {
    case 'none':
      return raw;
    case 'zstd':
      requireLoaded();
      return zstd.compress(raw, level);
  }
}

/**
 * Decompresses one chunk into exactly `rawLength` bytes, or throws a plain Error saying why (the
 * decoder wraps it with the object name and offset). `rawLength` is bounded by the caller, so a
 * crafted frame cannot make this allocate more.
 */
export function decompress(compression: Compression, stored: Uint8Array, rawLength: number): Uint8Array {
  let raw: Uint8Array;
  switch (compression) {
    case 'none':
      raw = stored;
      break;
    case 'zstd': {
      requireLoaded();
      const size = zstdContentSize(stored);
      if (size !== rawLength) throw new Error(`the zstd frame declares ${size ?? 'no'} content size, the chunk header ${rawLength}`);
      raw = zstd.decompress(stored);
      break;
    }
  }
  if (raw.length !== rawLength) throw new Error(`decompressed to ${raw.length} bytes, the chunk header says ${rawLength}`);
  return raw;
}

interface ZstdHeap {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _ZSTD_decompress(dst: number, capacity: number, src: number, size: number): number;
  _ZSTD_isError(code: number): number;
}

let heap: ZstdHeap | null | undefined;

/**
 * The binding's WASM module (the one its decompress() uses), reached through its own files: the
 * package exports only its entry point. Null where that does not resolve; decompressInto then copies.
 */
function zstdHeap(): ZstdHeap | null {
  if (heap === undefined) {
    try {
      const entry = createRequire(import.meta.url).resolve('@bokuweb/zstd-wasm');
      const m = (createRequire(entry)('./module') as { Module?: ZstdHeap }).Module;
      heap = m && typeof m._ZSTD_decompress === 'function' && typeof m._malloc === 'function' ? m : null;
    } catch {
      heap = null;
    }
  }
  return heap;
}

/**
 * decompress() into `out` (exactly out.length raw bytes), so a reader that decodes chunk after chunk
 * reuses one buffer: the binding's decompress() returns a new buffer per chunk, and with 16 MiB
 * chunks the garbage waiting for the collector alone passed restore's memory bound.
 */
export function decompressInto(compression: Compression, stored: Uint8Array, out: Uint8Array): void {
  if (compression === 'none') {
    if (stored.length !== out.length) throw new Error(`${stored.length} stored bytes, the chunk header says ${out.length}`);
    out.set(stored);
    return;
  }
  requireLoaded();
  const size = zstdContentSize(stored);
  if (size !== out.length) throw new Error(`the zstd frame declares ${size ?? 'no'} content size, the chunk header ${out.length}`);
  const m = zstdHeap();
  if (m === null) {
    out.set(decompress(compression, stored, out.length));
    return;
  }
  const src = m._malloc(stored.length);
  const dst = m._malloc(out.length);
  try {
    // HEAPU8 is read after each malloc: growing the WASM memory replaces it.
    m.HEAPU8.set(stored, src);
    const n = m._ZSTD_decompress(dst, out.length, src, stored.length);
    if (m._ZSTD_isError(n)) throw new Error(`zstd error code ${n}`);
    if (n !== out.length) throw new Error(`decompressed to ${n} bytes, the chunk header says ${out.length}`);
    out.set(m.HEAPU8.subarray(dst, dst + n));
  } finally {
    m._free(dst);
    m._free(src);
  }
}

/**
 * The Frame_Content_Size of a single zstd frame (RFC 8878 section 3.1.1.1), or null when absent or
 * unreadable. Checked before decompressing because the zstd binding allocates whatever size the
 * frame declares.
 */
function zstdContentSize(frame: Uint8Array): number | null {
  if (frame.length < 6) return null;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (v.getUint32(0, true) !== 0xfd2fb528) return null;
  const descriptor = v.getUint8(4);
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictIdSize = [0, 1, 2, 4][descriptor & 3] as number;
  const fcsSize = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
  const at = 5 + (singleSegment ? 0 : 1) + dictIdSize;
  if (fcsSize === 0 || frame.length < at + fcsSize) return null;
  switch (fcsSize) {
    case 1:
      return v.getUint8(at);
    case 2:
      return v.getUint16(at, true) + 256;
    case 4:
      return v.getUint32(at, true);
    default: {
      const size = v.getBigUint64(at, true);
      return size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : null;
    }
  }
}
