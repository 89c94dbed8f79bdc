// What the database thread and a replica's fetch thread share (page-fetch.ts, page-fetch-worker.ts).
// No imports with side effects: the fetch thread loads this module, and its start-up time is part
// of a replica's open + first query.
import type { ReplicaSource } from './options.js';

/** One ranged GET: bytes start..end-1 of `key`, written at `at` of the request's data buffer. */
export interface FetchRange {
  key: string;
  start: number;
  end: number;
  at: number;
  /** The version the replica opened: an answer with another ETag fails (ERR_STORAGE_OBJECT_CHANGED). */
  etag?: string;
}

/** @internal What the database thread posts to the fetch thread. */
export interface FetchRequest {
  ranges: FetchRange[];
  /** Ranges to start fetching now and keep (up to PREFETCH_BYTES) for a later request of exactly that range. */
  prefetch: FetchRange[];
  /** Int32 [state (0 waiting, 1 done, 2 failed), error length]. */
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  error: SharedArrayBuffer;
}

/** @internal */
export interface FetchWorkerData {
  quietSdkWarning: boolean;
  s3: Omit<NonNullable<ReplicaSource['s3']>, 'client'>;
  /** Float64 [GETs, bytes received, when the thread was ready (ms since the epoch), 1 when it reads without the SDK], written by the fetch thread. */
  stats: SharedArrayBuffer;
}

/** Bytes the fetch thread may hold for prefetched ranges nobody asked for yet. */
export const PREFETCH_BYTES = 64 * 1024 * 1024;
