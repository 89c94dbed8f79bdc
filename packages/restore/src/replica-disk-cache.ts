// openReplica's disk cache (`cacheDir`): chunks as they were stored in S3 (compressed, encrypted when
// the replica is), one file each, so that a chunk read back is opened and verified exactly like one
// fetched by a GET: a file that was changed, truncated or planted fails its checksums (or GCM) and
// is dropped and fetched again. Bounded by `cacheDirBytes`, least recently used first out; files
// are created with mode 0600 in a directory created with mode 0700.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const NAME = /^[0-9a-f]{64}\.chunk$/;

export interface DiskCacheCounters {
  /** Chunks read back from disk and verified. */
  hits: number;
  /** Files that failed verification (dropped, fetched again from S3). */
  rejected: number;
  writes: number;
  evictions: number;
  /** Bytes of the cache's files now (never above the bound after a write). */
  bytes: number;
  /** The last write that failed (disk full, permissions): the query goes on, only the disk copy is missing. */
  lastWriteError: string | null;
}

export class DiskCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly counters: DiskCacheCounters = { hits: 0, rejected: 0, writes: 0, evictions: 0, bytes: 0, lastWriteError: null };
  /** File name -> size, least recently used first. */
  readonly #files = new Map<string, number>();
  readonly #namespace: string;

  constructor(dir: string, options: { maxBytes: number; location: string }) {
    this.dir = dir;
    this.maxBytes = options.maxBytes;
    this.#namespace = options.location;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const found: { name: string; size: number; at: number }[] = [];
    for (const name of readdirSync(dir)) {
      if (!NAME.test(name)) continue;
      try {
        const st = statSync(join(dir, name));
        if (st.isFile()) found.push({ name, size: st.size, at: st.mtimeMs });
      } catch {
        // Removed by another process meanwhile.
      }
    }
    found.sort((a, b) => a.at - b.at);
    for (const f of found) {
      this.#files.set(f.name, f.size);
      this.counters.bytes += f.size;
    }
    this.#evict(0);
  }

  /**
   * The file name of a stored chunk: a hash of the replica's location, the object key, its ETag (the
   * version whose index the replica read: a rewritten object never gets the old version's chunks)
   * and the byte range.
   */
  name(object: { key: string; etag: string | undefined }, start: number, end: number): string {
    return `${createHash('sha256').update(`${this.#namespace}\n${object.key}\n${object.etag ?? ''}\n${start}-${end}`).digest('hex')}.chunk`;
  }

  has(name: string): boolean {
    return this.#files.has(name);
  }

  /** Whether `bytes` more fit without evicting anything. */
  fits(bytes: number): boolean {
    return this.counters.bytes + bytes <= this.maxBytes;
  }

  /** The stored bytes, or null (not cached, or gone). Not verified here: the caller opens them as it opens a GET's. */
  read(name: string): Uint8Array | null {
    const size = this.#files.get(name);
    if (size === undefined) return null;
    try {
      const bytes = readFileSync(join(this.dir, name));
      this.#files.delete(name);
      this.#files.set(name, size);
      return bytes;
    } catch {
      this.#forget(name);
      return null;
    }
  }

  /** A file whose bytes did not verify: removed. */
  reject(name: string): void {
    this.counters.rejected++;
    this.#remove(name);
  }

  write(name: string, bytes: Uint8Array): void {
    if (bytes.length > this.maxBytes || this.#files.has(name)) return;
    this.#evict(bytes.length);
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      writeFileSync(tmp, bytes, { mode: 0o600, flag: 'wx' });
      chmodSync(tmp, 0o600);
      renameSync(tmp, join(this.dir, name));
    } catch (e) {
      rmSync(tmp, { force: true });
      this.counters.lastWriteError = e instanceof Error ? e.message : String(e);
      return;
    }
    this.#files.set(name, bytes.length);
    this.counters.bytes += bytes.length;
    this.counters.writes++;
  }

  #evict(incoming: number): void {
    while (this.counters.bytes + incoming > this.maxBytes) {
      const oldest = this.#files.keys().next();
      if (oldest.done) break;
      this.#remove(oldest.value);
      this.counters.evictions++;
    }
  }

  #forget(name: string): void {
    const size = this.#files.get(name);
    if (size === undefined) return;
    this.#files.delete(name);
    this.counters.bytes -= size;
  }

  #remove(name: string): void {
    this.#forget(name);
    rmSync(join(this.dir, name), { force: true });
  }
}
