// The options and reports of openDatabase (open.ts), as plain types.
import type { CommittedTransaction } from './capture.js';
import type { WalshipError } from './errors.js';
import type { FsOps } from './fs-ops.js';
import type { ReadWindowOptions } from './read-window.js';

export type Synchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

export interface OpenOptions {
  /**
   * Receives every committed transaction, in txid order, synchronously after SQLite commits it.
   * Keep it short (queue the transaction). A sink that throws stops capture: the database then
   * refuses writes with ERR_CAPTURE_FAILED until it is reopened.
   */
  onCommit?: (txn: CommittedTransaction) => void;
  /** Transactions up to this txid are already durable downstream: not emitted again on open. */
  durableTxid?: number;
  /**
   * With a sink: may close() checkpoint a WAL with transactions in it, writing the marker transaction
   * the sink then receives (default true)? false: the sink's owner takes the last checkpoint itself
   * before closing (a shipper, whose sink has stopped by then), and close() only truncates a WAL
   * already checkpointed through its last transaction.
   */
  markerOnClose?: boolean;
  /**
   * The database file is the state after this txid (a database restored from a replica, whose
   * checksum the caller has matched). Only valid while the WAL holds no committed transaction; it
   * overrides the txid marker row, and open records it with a marker transaction (txid + 1).
   */
  baseTxid?: number;
  /** Capture WAL frames (default true). Off: a plain SQLite database on the walship VFS. */
  capture?: boolean;
  /** Page size for a new database (512..65536, power of two; default 8192 in this build). */
  pageSize?: number;
  /** PRAGMA synchronous (default NORMAL; see README "Durability"). */
  synchronous?: Synchronous;
  /** Report POWERSAFE_OVERWRITE to SQLite (default true, as SQLite's unix VFS does). */
  powersafeOverwrite?: boolean;
  /** Sector size reported to SQLite (default 4096). */
  sectorSize?: number;
  /** Create the file when missing (default true). */
  create?: boolean;
  /** File operations (default node:fs). A seam for fault-injection tests. */
  fs?: FsOps;
  /**
   * @internal Read the file through large windows, read-only (capture off only): for a check that
   * reads a whole file nobody else writes (a restore's integrity check). See read-window.ts.
   */
  readWindow?: ReadWindowOptions;
}

export interface CheckpointResult {
  checkpointed: boolean;
  /** Why nothing was checkpointed, when it was not. */
  reason?: 'not-durable' | 'empty' | 'busy';
  lastTxid: number;
  durableTxid: number;
}

export interface RecoveryReport {
  /** Committed transactions found in the WAL at open. */
  walTransactions: number;
  /** Transactions emitted again at open (txid > durableTxid). */
  reemitted: number;
  /** The lowest txid this open could still emit; lower ones were checkpointed into the database file. */
  firstAvailableTxid: number;
  /** Set when durableTxid is below firstAvailableTxid - 1: those transactions cannot be produced again. */
  gap: { fromTxid: number; toTxid: number } | null;
  /**
   * The txid marker row found at open: `txid` is the last checkpoint's marker transaction (every
   * transaction up to it may be in the database file), `note` what that checkpoint was given.
   */
  marker: { txid: number; note: string | null } | null;
  /** A `-wal` with a torn header (a crash while SQLite started the WAL over) that was moved aside at open. */
  discardedWal: DiscardedWal | null;
}

export interface DiscardedWal {
  problem: 'short' | 'bad-checksum';
  /** Its size in bytes. */
  size: number;
  /** Where it was moved (`<db>-wal.torn-<ms>`): nothing in it is missing from the database file. */
  movedTo: string;
}

export interface CheckpointOptions {
  /**
   * Stored in the marker row with the checkpoint, readable at the next open as `recovery.marker.note`.
   * A shipper records the checksum of the state before the marker here, so it can prove continuity later.
   */
  note?: string;
}

export interface DatabaseStatus {
  path: string;
  capture: boolean;
  lastTxid: number;
  durableTxid: number;
  walBytes: number;
  captureError: WalshipError | null;
}
