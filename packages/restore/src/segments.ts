import { decodeObject, hex64, type Keyring } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { PAGES_PER_EVENT, PIECES_AHEAD, PIECE_SIZE, changed, objectBytes, sameHeader, type PageFile } from './apply.js';
import { abortedError, objectFailure, restoreError, storageFailure } from './errors.js';
import { missing } from './replica.js';
import type { PlannedObject } from './plan.js';

/**
 * Stored bytes of the segments after the one being applied that may be held in memory at once.
 * Decoded pages are never held ahead: a segment is decoded while it is applied, so what a restore
 * holds does not grow with what an object decodes to (a few hundred KiB of zstd can stand for
 * gigabytes of pages).
 */
export const PREFETCH_BYTES = 16 * 1024 * 1024;

/**
 * Downloads the next segments' stored bytes while the current one is applied: up to `concurrency`
 * objects and PREFETCH_BYTES at a time, in plan order. An object larger than a ranged piece is not
 * prefetched: it streams in pieces when its turn comes.
 */
export class Prefetcher {
  readonly #storage: ObjectStorage;
  readonly #objects: readonly PlannedObject[];
  readonly #concurrency: number;
  readonly #signal: AbortSignal;
  readonly #pending = new Map<number, Promise<Uint8Array>>();
  #bytes = 0;
  #next = 0;

  constructor(storage: ObjectStorage, objects: readonly PlannedObject[], options: { concurrency: number; signal: AbortSignal }) {
    this.#storage = storage;
    this.#objects = objects;
    this.#concurrency = options.concurrency;
    this.#signal = options.signal;
  }

  /** Starts downloads while the window has room. */
  fill(): void {
    while (this.#next < this.#objects.length && this.#pending.size < this.#concurrency) {
      const i = this.#next;
      const o = this.#objects[i] as PlannedObject;
      if (o.size > PIECE_SIZE || (this.#pending.size > 0 && this.#bytes + o.size > PREFETCH_BYTES)) return;
      this.#next++;
      this.#bytes += o.size;
      const p = this.#get(o);
      p.catch(() => undefined);
      this.#pending.set(i, p);
    }
  }

  async #get(o: PlannedObject): Promise<Uint8Array> {
    let bytes: Uint8Array | null;
    try {
      bytes = await this.#storage.get(o.key, { signal: this.#signal });
    } catch (e) {
      throw storageFailure(e, `downloading ${o.key}`);
    }
    if (bytes === null) throw missing(this.#storage, o.key);
    return bytes;
  }

  /** The bytes of object `i` (taken in order): prefetched, or streamed in ranged pieces. */
  take(i: number): AsyncIterable<Uint8Array> {
    const o = this.#objects[i] as PlannedObject;
    const pending = this.#pending.get(i);
    if (pending === undefined) {
      if (this.#next === i) this.#next++;
      const stream = objectBytes(this.#storage, o.key, o.size, this.#signal, PIECES_AHEAD);
      this.fill();
      return stream;
    }
    this.#pending.delete(i);
    const release = (): void => {
      this.#bytes -= o.size;
      this.fill();
    };
    return (async function* () {
      let bytes: Uint8Array;
      try {
        bytes = await pending;
      } finally {
        release();
      }
      yield bytes;
    })();
  }
}

/**
 * Decodes a segment while applying the transactions the plan takes from it, after checking that it
 * continues the chain at `txid`. Pages go to the scratch file as each chunk is verified; the whole
 * object is still verified to its end (trailer, index) before the next object is applied, and the
 * scratch file becomes the database only when every object and check has passed. Returns the
 * stored bytes read.
 */
export async function applySegment(
  file: PageFile,
  source: AsyncIterable<Uint8Array>,
  o: PlannedObject,
  options: { keyring: Keyring | undefined; txid: number; signal?: AbortSignal | undefined },
): Promise<number> {
  let bytes = 0;
  let at = options.txid;
  let ended = false;
  const counted = (async function* () {
    for await (const piece of source) {
      bytes += piece.length;
      yield piece;
    }
  })();
  try {
    const events = decodeObject(counted, { name: o.key, objectSize: o.size, maxPagesPerEvent: PAGES_PER_EVENT, reuseBuffers: true, ...(options.keyring ? { keyring: options.keyring } : {}) });
    for await (const event of events) {
      if (options.signal?.aborted) throw abortedError(options.signal.reason);
      if (event.type === 'header') {
        if (!sameHeader(event.header, o.header)) throw changed(o.key);
        continue;
      }
      if (event.type === 'end') {
        ended = true;
        continue;
      }
      const t = event;
      if (t.txid < o.applyFrom) {
        // The transaction the chain already has: its checksum proves the segment continues it.
        if (t.txid === o.applyFrom - 1 && t.postChecksum !== o.preChecksum) {
          throw restoreError('ERR_CHAIN_MISMATCH', `${o.key}: its txid ${t.txid} has checksum ${hex64(t.postChecksum)}, the chain has ${hex64(o.preChecksum)}`, {
            key: o.key,
            txid: t.txid,
            expected: hex64(o.preChecksum),
            actual: hex64(t.postChecksum),
          });
        }
        continue;
      }
      if (t.txid > o.applyThrough) continue;
      if (t.txid !== at) {
        if (o.header.transactionCount === o.maxTxid - o.minTxid + 1 && t.txid !== at + 1) {
          throw restoreError('ERR_CHAIN_GAP', `${o.key}: txid ${t.txid} follows txid ${at}; this segment holds every transaction of its range`, { key: o.key, lastTxid: at, nextTxid: t.txid });
        }
        at = t.txid;
      }
      for (const p of t.pages) file.stagePage(p.pgno, p.data);
      if (!t.more) file.commit(t, o.key);
    }
  } catch (e) {
    throw objectFailure(e, o.key, 'downloading');
  }
  if (!ended) throw restoreError('ERR_CORRUPT_OBJECT', `${o.key} ended before its trailer`, { key: o.key });
  if (at !== o.applyThrough) {
    throw restoreError('ERR_CORRUPT_OBJECT', `${o.key}: the plan applies txids ${o.applyFrom}..${o.applyThrough}, the object ended at ${at}`, { key: o.key, lastTxid: at });
  }
  return bytes;
}
