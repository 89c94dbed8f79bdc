import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { PageHashes } from '@walship/format';

/**
 * The rolling checksum of the database file at `path` when its WAL holds nothing (missing or
 * empty), else null. Reads the whole file once.
 */
export function fileChecksumIfWalEmpty(path: string): { checksum: bigint; pages: number } | null {
  try {
    if (statSync(`${path}-wal`).size > 0) return null;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') return null;
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const head = new Uint8Array(100);
    if (readSync(fd, head, 0, 100, 0) < 100) return null;
    // Bytes 16-17 of the header: the page size, 1 meaning 65536.
    const raw = (head[16]! << 8) | head[17]!;
    const pageSize = raw === 1 ? 65536 : raw;
    if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) return null;
    const hashes = hashPages(fd, pageSize);
    return { checksum: hashes.value, pages: hashes.pageCount };
  } finally {
    closeSync(fd);
  }
}

/** Hashes every page of an open database file, skipping the lock page. */
export function hashPages(fd: number, pageSize: number): PageHashes {
  const hashes = new PageHashes(pageSize);
  const pages = Math.floor(fstatSync(fd).size / pageSize);
  const batch = 256;
  const buf = new Uint8Array(pageSize * batch);
  for (let start = 1; start <= pages; start += batch) {
    const n = Math.min(batch, pages - start + 1);
    let got = 0;
    while (got < n * pageSize) {
      const r = readSync(fd, buf, got, n * pageSize - got, (start - 1) * pageSize + got);
      if (r === 0) break;
      got += r;
    }
    for (let i = 0; i < Math.floor(got / pageSize); i++) {
      const pgno = start + i;
      if (pgno !== hashes.lockPage) hashes.set(pgno, buf.subarray(i * pageSize, (i + 1) * pageSize));
    }
  }
  return hashes;
}
