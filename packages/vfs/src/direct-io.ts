import { constants as fsc } from 'node:fs';
import type { FsOps } from './fs-ops.js';

// This module is also the package's `./direct-io` export, for threads that load no SQLite (a restore's snapshot thread).
export { nodeFs, type FsOps } from './fs-ops.js';

/**
 * Direct I/O for bulk transfers of a file nobody else is writing (a restore's scratch file and its
 * check): reads and writes that bypass the page cache. On a machine where every page-cache page has
 * to be faulted in fresh (a VM that hands free memory back to its host), writing 1 GiB through the
 * cache cost a restore's writer thread 3.9 s; written with O_DIRECT it took 0.7 s of waiting on
 * the device, and a check that reads the file back reads what the device holds, not a cached copy.
 *
 * O_DIRECT needs the buffer, the offset and the length aligned to the device's logical block size
 * (512 or 4096 bytes): a WebAssembly memory's buffer starts at a page-aligned address, offsets and
 * lengths here are multiples of the database page size (512..65536), and any refusal (EINVAL at
 * open or at the first transfer: tmpfs, a 4 KiB-sector device with 1 KiB pages, a platform without
 * O_DIRECT) falls back to ordinary buffered I/O on the same file.
 */

/** O_DIRECT where the platform has it (Linux); undefined elsewhere (macOS, Windows, some runtimes). */
export const O_DIRECT: number | undefined = (fsc as { O_DIRECT?: number }).O_DIRECT;

/** The parts of WebAssembly used here (its lib types are not in this build's lib). */
declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };

/** A zeroed buffer of `bytes` whose first byte is page-aligned (the buffer of a WebAssembly memory of its own). */
export function alignedBuffer(bytes: number): Uint8Array {
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  return new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

/** Whether an error is the kernel refusing direct I/O for this file, buffer or size. */
export function directRefused(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'EINVAL';
}

/** A descriptor of `path` opened with O_DIRECT (`flags` plus O_DIRECT), or null when that is refused. */
export function openDirect(fs: FsOps, path: string, flags: number): number | null {
  if (O_DIRECT === undefined) return null;
  try {
    return fs.openSync(path, flags | O_DIRECT);
  } catch (e) {
    if (directRefused(e)) return null;
    throw e;
  }
}
