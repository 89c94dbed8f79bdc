import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { WalshipError } from '@walship/vfs';

// The columns of the pending queue (pending.ts), CHUNK transactions at a time, and the file that
// holds the chunks between the front of the queue and its tail while S3 is down. Only the queue
// uses these.

/** Transactions per chunk. */
export const CHUNK = 4096;
/** Per transaction: commitSize, pageCount, firstFrame (0: no WAL frames), frame count, salt1, salt2. */
export const U32_FIELDS = 6;
/** A chunk's bytes: 48 per transaction (two float64, one uint64, six uint32). */
const CHUNK_BYTES = CHUNK * (8 + 8 + 8 + 4 * U32_FIELDS);

/** One chunk of columns, in one buffer so that it can be written out and read back whole. */
export class Chunk {
  timestamp!: Float64Array;
  committedAt!: Float64Array;
  postChecksum!: BigUint64Array;
  u32!: Uint32Array;
  /** Where it is in the overflow file while its columns are not in memory. */
  slot: number | null = null;
  private bytes: Uint8Array | null = null;

  constructor(bytes: Uint8Array = new Uint8Array(CHUNK_BYTES)) {
    this.attach(bytes);
  }

  get resident(): boolean {
    return this.bytes !== null;
  }

  /** The columns as one byte array (resident chunks only). */
  raw(): Uint8Array {
    return this.bytes!;
  }

  attach(bytes: Uint8Array): void {
    const b = bytes.buffer;
    const at = bytes.byteOffset;
    this.bytes = bytes;
    this.timestamp = new Float64Array(b, at, CHUNK);
    this.committedAt = new Float64Array(b, at + CHUNK * 8, CHUNK);
    this.postChecksum = new BigUint64Array(b, at + CHUNK * 16, CHUNK);
    this.u32 = new Uint32Array(b, at + CHUNK * 24, CHUNK * U32_FIELDS);
  }

  /** Lets go of the columns (they are in the overflow file at `slot`). */
  detach(slot: number): void {
    this.slot = slot;
    this.bytes = null;
    const none = new Uint8Array(0).buffer;
    this.timestamp = new Float64Array(none);
    this.committedAt = new Float64Array(none);
    this.postChecksum = new BigUint64Array(none);
    this.u32 = new Uint32Array(none);
  }
}

/**
 * A file of chunk-sized slots beside the database. It is unlinked as soon as it is open (where the
 * platform allows): nothing outlives the process, and a crash leaves nothing to clean up. The
 * queue it serves is rebuilt from the WAL at the next open, so the file is never read after a restart.
 */
export class ChunkFile {
  private fd: number | null = null;
  private linked = false;
  private readonly free: number[] = [];
  private slots = 0;
  /** Set when the file could not be written: chunks stay in memory from then on. */
  failure: Error | null = null;

  /** `onFailure`: told once, when the file cannot be written. */
  constructor(
    private readonly path: string,
    private readonly onFailure: (error: Error) => void = () => undefined,
  ) {}

  /** Writes `chunk` out and detaches it; when the file cannot be written the chunk stays in memory. */
  spill(chunk: Chunk): void {
    if (this.failure) return;
    try {
      if (this.fd === null) this.open();
      const slot = this.free.pop() ?? this.slots++;
      const bytes = chunk.raw();
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(this.fd!, bytes, done, bytes.byteLength - done, slot * CHUNK_BYTES + done);
      chunk.detach(slot);
    } catch (e) {
      this.failure = e as Error;
      this.onFailure(this.failure);
    }
  }

  /** Reads a detached chunk back into memory and frees its slot. */
  load(chunk: Chunk): void {
    const slot = chunk.slot!;
    chunk.attach(this.read(slot));
    chunk.slot = null;
    this.free.push(slot);
  }

  /** A copy of a detached chunk's columns, leaving it where it is (a look into the middle of the queue). */
  peek(chunk: Chunk): Chunk {
    return new Chunk(this.read(chunk.slot!));
  }

  /** Forgets every slot (the queue emptied); the file stays open for the next outage. */
  clear(): void {
    this.free.length = 0;
    this.slots = 0;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    if (this.linked) rmSync(this.path, { force: true });
    this.linked = false;
  }

  private open(): void {
    this.fd = openSync(this.path, 'w+', 0o600);
    this.linked = true;
    try {
      rmSync(this.path);
      this.linked = false;
    } catch {
      // Where an open file cannot be removed, close() removes it.
    }
  }

  private read(slot: number): Uint8Array {
    const bytes = new Uint8Array(CHUNK_BYTES);
    let done = 0;
    try {
      while (done < CHUNK_BYTES) {
        const n = readSync(this.fd!, bytes, done, CHUNK_BYTES - done, slot * CHUNK_BYTES + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw this.lost(slot, (e as Error).message, e);
    }
    if (done !== CHUNK_BYTES) throw this.lost(slot, `read ${done} of ${CHUNK_BYTES} bytes`);
    return bytes;
  }

  private lost(slot: number, why: string, cause?: unknown): WalshipError {
    return new WalshipError('ERR_PENDING_OVERFLOW_LOST', `the list of transactions waiting for the store could not be read back from ${this.path} (slot ${slot}: ${why}); the transactions are still in the WAL and the next open ships them`, {
      details: { path: this.path, slot },
      ...(cause !== undefined ? { cause } : {}),
    });
  }
}
