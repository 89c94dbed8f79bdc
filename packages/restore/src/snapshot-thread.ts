import { Worker } from 'node:worker_threads';
import { FormatError, type FormatErrorCode, type Keyring, type ObjectHeader } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { WalshipError } from '@walship/vfs';
import { PAGES_PER_EVENT, PIECES_AHEAD, PIECE_SIZE, PiecePool, changed, checkSnapshot, objectBytes, sameHeader, writeSnapshot, type PageFile } from './apply.js';
import { abortedError, objectFailure } from './errors.js';
import type { PlannedObject } from './plan.js';

/** @internal What the snapshot thread is started with. */
export interface SnapshotWorkerData {
  path: string;
  pageSize: number;
  name: string;
  objectSize: number;
  pagesPerEvent: number;
  /** The size of the buffers worth moving back (PIECE_SIZE). */
  pieceSize: number;
}

/** @internal Restore's thread to the snapshot thread: the object's bytes in order, then the end. */
export type ToSnapshotThread = { type: 'piece'; bytes: Uint8Array } | { type: 'end' };

/** @internal The snapshot thread to restore's thread. */
export type FromSnapshotThread =
  | { type: 'consumed' }
  /** A piece's buffer the decoder is done with, moved back to be read into again. */
  | { type: 'free'; buffer: ArrayBuffer }
  | { type: 'header'; header: ObjectHeader }
  | { type: 'done'; ended: boolean; count: number; pgnos: Uint32Array; hashes: BigUint64Array }
  | { type: 'failed'; format: boolean; code: string; message: string; details: Record<string, unknown> };

/** Pieces posted to the snapshot thread and not yet taken by its decoder (on top of the GETs in flight). */
export const PIECES_QUEUED = 2;

/**
 * Downloads a snapshot on this thread while a worker thread verifies, decompresses and hashes it and
 * writes its pages into `file` (its own descriptor on the same scratch file). Each thread keeps one
 * core busy: HTTP and the S3 client here, decoding and writing there, so a large restore is not
 * held to what one thread can do. Memory: the GETs in flight plus PIECES_QUEUED pieces. The page
 * hashes come back at the end and are recorded in `file`; the caller checks the checksum as for
 * an in-thread snapshot. Returns whether the object's end was reached (its trailer verified).
 */
export async function decodeSnapshotInThread(
  storage: ObjectStorage,
  file: PageFile,
  object: PlannedObject,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<boolean> {
  const data: SnapshotWorkerData = { path: file.path, pageSize: file.pageSize, name: object.key, objectSize: object.size, pagesPerEvent: PAGES_PER_EVENT, pieceSize: PIECE_SIZE };
  const worker = new Worker(new URL('./snapshot-worker.js', import.meta.url), { workerData: data });
  let posted = 0;
  let consumed = 0;
  // Pieces are read into buffers the thread moves back once its decoder is done with them.
  const pool = new PiecePool(PIECE_SIZE, PIECES_AHEAD + PIECES_QUEUED + 2);
  let wake: (() => void) | null = null;
  let settle!: { resolve: (m: Extract<FromSnapshotThread, { type: 'done' }>) => void; reject: (e: unknown) => void };
  const finished = new Promise<Extract<FromSnapshotThread, { type: 'done' }>>((resolve, reject) => (settle = { resolve, reject }));
  let failure: unknown = null;
  const fail = (e: unknown): void => {
    if (failure === null) failure = e;
    settle.reject(e);
    wake?.();
  };
  // Awaited below; a failure while pieces are still being posted is not unhandled.
  finished.catch(() => undefined);
  worker.on('message', (m: FromSnapshotThread) => {
    if (m.type === 'consumed') {
      consumed++;
      wake?.();
    } else if (m.type === 'free') {
      pool.give(m.buffer);
    } else if (m.type === 'header') {
      if (!sameHeader(m.header, object.header)) fail(changed(object.key));
    } else if (m.type === 'done') {
      settle.resolve(m);
      wake?.();
    } else {
      fail(
        m.format
          ? new FormatError(m.code as FormatErrorCode, m.message, m.details)
          : new WalshipError(m.code, `${object.key}: the snapshot thread failed: ${m.message}`, { details: { ...m.details, key: object.key } }),
      );
    }
  });
  worker.on('error', (e) => fail(new WalshipError('ERR_SNAPSHOT_THREAD', `${object.key}: the snapshot thread stopped: ${e.message}; run the restore again`, { details: { key: object.key }, cause: e })));
  worker.on('exit', (code) => fail(new WalshipError('ERR_SNAPSHOT_THREAD', `${object.key}: the snapshot thread exited (code ${code}) before it finished; run the restore again`, { details: { key: object.key, exitCode: code } })));
  try {
    for await (const piece of objectBytes(storage, object.key, object.size, signal, PIECES_AHEAD, pool)) {
      if (signal?.aborted) throw abortedError(signal.reason);
      if (failure !== null) break;
      onBytes(piece.length);
      while (posted - consumed >= PIECES_QUEUED && failure === null) await new Promise<void>((resolve) => (wake = resolve));
      if (failure !== null) break;
      // Moved, not copied, when the piece owns its whole buffer (a ranged GET's body does, and so
      // does a view of a pool buffer the GET was read into).
      const own = piece.byteOffset === 0 && piece.buffer instanceof ArrayBuffer && (piece.byteLength === piece.buffer.byteLength || pool.owns(piece.buffer));
      const bytes = own ? piece : piece.slice();
      worker.postMessage({ type: 'piece', bytes } satisfies ToSnapshotThread, [bytes.buffer as ArrayBuffer]);
      posted++;
    }
    if (failure === null) worker.postMessage({ type: 'end' } satisfies ToSnapshotThread);
    const done = await finished;
    for (let i = 0; i < done.count; i++) file.recordPage(done.pgnos[i] as number, done.hashes[i] as bigint);
    return done.ended;
  } catch (e) {
    throw objectFailure(failure ?? e, object.key, 'downloading');
  } finally {
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}

/**
 * Writes a restore's snapshot into `file` and checks it: in a worker thread when it is larger than
 * one ranged piece and not encrypted (the keyring's keys stay on this thread), else on this thread.
 */
export async function restoreSnapshot(
  storage: ObjectStorage,
  file: PageFile,
  object: PlannedObject,
  keyring: Keyring | undefined,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  if (keyring !== undefined || object.size <= PIECE_SIZE || object.header.keyId !== null) {
    await writeSnapshot(storage, file, object, keyring, onBytes, signal);
    return;
  }
  checkSnapshot(file, object, await decodeSnapshotInThread(storage, file, object, onBytes, signal));
}
