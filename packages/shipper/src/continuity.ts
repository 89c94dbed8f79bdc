/**
 * The two refusals at open that keep acknowledged transactions restorable: the replica is behind
 * the high-water mark the lease item records (objects were deleted), or the local file is not a
 * continuation of the replica (starting a new generation from it would bury the replica's tip).
 */

import { WalshipError } from '@walship/vfs';
import { compareMarks, type DurableMark } from '@walship/lease';

const hex64 = (v: bigint): string => v.toString(16).padStart(16, '0');

/** The replica's newest restorable point as the writer found it, or null when it has none. */
export type ReplicaPoint = { generation: string; txid: number } | null;

/** True when the store does not reach what the lease item says was durable. */
export function behindMark(mark: DurableMark | null, found: ReplicaPoint): boolean {
  if (mark === null) return false;
  return found === null || compareMarks(found, mark) < 0;
}

export function replicaBehindError(where: { location: string; table: string; key: string }, mark: DurableMark, found: ReplicaPoint): WalshipError {
  const has = found ? `txid ${found.txid} of generation ${found.generation}` : 'no restorable state';
  return new WalshipError(
    'ERR_REPLICA_BEHIND',
    `${where.location} is behind its high-water mark: lease table ${where.table} (key ${where.key}) records txid ${mark.txid} of generation ${mark.generation} as durable, but the bucket has ${has}. ` +
      'Objects were deleted or the bucket was rolled back (an operator, a lifecycle rule, a restore of a bucket backup, or someone with write access to it). ' +
      'Find the missing objects (bucket versioning, a replicated copy) and put them back; to go on from what the bucket has on purpose, open with allowRollback: true (a new generation starts; the mark moves to it)',
    {
      details: {
        location: where.location,
        table: where.table,
        key: where.key,
        markGeneration: mark.generation,
        markTxid: mark.txid,
        replicaGeneration: found?.generation ?? null,
        replicaTxid: found?.txid ?? null,
      },
    },
  );
}

export interface Divergence {
  location: string;
  path: string;
  /** Why the file cannot be proven to continue the replica. */
  reason: string;
  localTxid: number;
  localChecksum: bigint;
  /** The file's checksum at the replica's tip txid, when the WAL still shows that state. */
  localChecksumAtTip: bigint | undefined;
  tip: { generation: string; txid: number; checksum: bigint; key: string };
}

/**
 * Starting a new generation from a file that diverged would make every later restore of the latest
 * state return the file's history instead of the replica's: transactions another writer flushed
 * (acknowledged as durable) would be buried in an older generation.
 */
export function divergedError(d: Divergence): WalshipError {
  return new WalshipError(
    'ERR_DIVERGED',
    `${d.path} (txid ${d.localTxid}, checksum ${hex64(d.localChecksum)}) does not continue ${d.location}, whose tip is txid ${d.tip.txid} of generation ${d.tip.generation} (checksum ${hex64(d.tip.checksum)}): ${d.reason}. ` +
      'Replicating it would start a new generation and bury the replica\u2019s transactions (another writer may have flushed them). ' +
      'To keep the replica: restore its latest state (walship restore) and redo the local changes there. To keep this file instead (it was written without replication, or the replica is to be abandoned), open with allowRollback: true',
    {
      details: {
        path: d.path,
        location: d.location,
        reason: d.reason,
        localTxid: d.localTxid,
        localChecksum: hex64(d.localChecksum),
        localChecksumAtTip: d.localChecksumAtTip === undefined ? null : hex64(d.localChecksumAtTip),
        replicaGeneration: d.tip.generation,
        replicaTxid: d.tip.txid,
        replicaChecksum: hex64(d.tip.checksum),
        replicaKey: d.tip.key,
      },
    },
  );
}
