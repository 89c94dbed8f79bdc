// follow()'s options, status and handle (follow.ts), and the check of the options.
import { bad, checkInteger, validateSource, type ReplicaSource } from './options.js';
import { checkMode } from './scratch.js';

export interface FollowOptions extends ReplicaSource {
  /** The read replica file kept current. */
  path: string;
  /** Time between polls for the next segment while the writer is quiet (ms, default 1000). */
  intervalMs?: number;
  /**
   * Time between polls for ACTIVE_FOR_MS (5 s) after a segment was applied (ms, default 50; 0: always
   * `intervalMs`): a writer that shipped one is likely to ship the next soon, so it is applied within
   * about this long of its arrival. Costs up to 1000 / activeIntervalMs GETs a second while the writer ships.
   */
  activeIntervalMs?: number;
  /** Replace an existing file that is not the replica's current state (default false: ERR_TARGET_EXISTS). */
  overwrite?: boolean;
  /** After `probeEvery` x `intervalMs` without a new segment (default 5), look for a new writer epoch or generation. */
  probeEvery?: number;
  /** LIST the replica again after this long without a new segment (ms, default 600000; 0 = never). */
  rescanIntervalMs?: number;
  /** Segments applied per file swap at most (default 64). */
  maxBatch?: number;
  /** Parallel reads for the initial restore and rescans (default 8). */
  concurrency?: number;
  /** Permission bits of the replica file and its scratch copies (default 0o600), set whatever the umask. */
  mode?: number;
  onApply?: (event: FollowApplyEvent) => void;
  /** Errors the follower recovers from (it retries on the next poll); status().lastError keeps the last one. */
  onError?: (error: Error) => void;
  signal?: AbortSignal;
}

export interface FollowApplyEvent {
  /** 'segments': new segments applied; 'restore': the whole file rebuilt (start, new generation, or fencing). */
  kind: 'segments' | 'restore';
  generation: string;
  fromTxid: number;
  txid: number;
  timestamp: number;
  keys: string[];
  lagMs: number;
}

export type FollowState = 'starting' | 'following' | 'stopping' | 'stopped';

export interface FollowStatus {
  state: FollowState;
  path: string;
  location: string;
  generation: string | null;
  /** The writer epoch whose segments are polled. */
  epoch: number | null;
  txid: number;
  /** Commit time of `txid` (ms since the epoch). */
  timestamp: number | null;
  checksum: string | null;
  /** ms since the commit of the last applied transaction (grows while the writer is idle). */
  lagMs: number | null;
  /** Transactions known to exist beyond `txid` (null when unknown: polling cannot see ahead). */
  behindTxids: number | null;
  segmentsApplied: number;
  restores: number;
  lastPollAt: string | null;
  lastApplyAt: string | null;
  lastError: { code: string; message: string; at: string } | null;
  requests: { get: number; head: number; list: number };
  /** The current time between polls: `activeIntervalMs` shortly after a segment was applied, else `intervalMs`. */
  pollIntervalMs: number;
}

export interface FollowHandle {
  /** Stops polling; resolves once no apply is in progress. The file stays as the last consistent state. */
  stop(): Promise<void>;
  status(): FollowStatus;
}

export function validateFollowOptions(o: FollowOptions): void {
  validateSource(o);
  if (typeof o.path !== 'string' || o.path === '') bad('path', 'must be the path of the read replica file', o.path);
  checkInteger('intervalMs', o.intervalMs, 10, 3_600_000);
  checkInteger('activeIntervalMs', o.activeIntervalMs, 0, 3_600_000);
  if (o.activeIntervalMs !== undefined && o.activeIntervalMs > 0 && o.activeIntervalMs < 10) bad('activeIntervalMs', 'must be 0 (off) or at least 10 ms', o.activeIntervalMs);
  checkInteger('probeEvery', o.probeEvery, 1, 1_000_000);
  checkInteger('rescanIntervalMs', o.rescanIntervalMs, 0, 86_400_000);
  checkInteger('maxBatch', o.maxBatch, 1, 10_000);
  checkInteger('concurrency', o.concurrency, 1, 256);
  checkMode('mode', o.mode);
  if (o.overwrite !== undefined && typeof o.overwrite !== 'boolean') bad('overwrite', 'must be a boolean', o.overwrite);
  for (const f of ['onApply', 'onError'] as const) if (o[f] !== undefined && typeof o[f] !== 'function') bad(f, 'must be a function', typeof o[f]);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) bad('signal', 'must be an AbortSignal', typeof o.signal);
}
