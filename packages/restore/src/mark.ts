/**
 * The durable high-water mark: the writer records on its lease item (DynamoDB) the newest
 * (generation, txid) it had in the bucket. Someone with only bucket access can delete the newest
 * objects, and a restore would then return an older state with no error; with the lease table,
 * restore, verify and status compare the bucket with the mark and report ERR_REPLICA_BEHIND.
 * Without a lease table there is nothing to compare with: such a rollback cannot be detected.
 */

import { compareMarks, readLease, type DurableMark, type LeaseTableOptions } from '@walship/lease';
import type { WalshipError } from '@walship/vfs';
import { restoreError } from './errors.js';
import { acceptable, type HeaderReader, type ReplicaCatalog } from './replica.js';

/** The writer's lease table, in the shape of openReplicated's `lease` option; `key` defaults to `s3://bucket/prefix`. */
export interface ReplicaLease extends LeaseTableOptions {
  key?: string;
}

export interface HighWaterMark extends DurableMark {
  table: string;
  key: string;
}

/** A point of the bucket: a generation and a txid it reaches. */
export type BucketPoint = { generation: string; txid: number } | null;

type LeaseSource = { lease?: ReplicaLease | undefined; s3?: { bucket: string; prefix: string } | undefined; storage?: unknown };

/** Option checks (ERR_INVALID_OPTION) before anything is read. */
export function validateLeaseOption(o: LeaseSource): void {
  const l = o.lease;
  if (l === undefined) return;
  const fail = (option: string, why: string, value: unknown): never => {
    throw restoreError('ERR_INVALID_OPTION', `option ${option} ${why} (got ${typeof value === 'string' ? JSON.stringify(value) : typeof value})`, { option });
  };
  if (typeof l !== 'object' || l === null) fail('lease', 'must be { table, key?, endpoint?, region?, credentials? } (the writer\u2019s lease table)', l);
  if (typeof l.table !== 'string' || l.table === '') fail('lease.table', 'must be the DynamoDB lease table name', l.table);
  if (l.key !== undefined && (typeof l.key !== 'string' || l.key === '')) fail('lease.key', 'must be a non-empty string (the database id the writer used)', l.key);
  if (l.key === undefined && o.s3 === undefined) fail('lease.key', 'is required with a storage source (there is no s3://bucket/prefix to default to)', l.key);
}

/**
 * Reads the mark (one consistent GetItem). Read before the bucket is listed: the mark only claims
 * what was already in the bucket when it was written, so a listing made after it can only be ahead.
 * Null without a lease option, or when the item has no mark (a replica written without one).
 */
export async function readMark(o: LeaseSource): Promise<HighWaterMark | null> {
  if (o.lease === undefined) return null;
  const { key: given, ...connection } = o.lease;
  const key = given ?? `s3://${o.s3?.bucket}/${o.s3?.prefix}`;
  const item = await readLease({ ...connection, key });
  return item?.durable ? { ...item.durable, table: connection.table, key } : null;
}

export function isBehind(mark: DurableMark, found: BucketPoint): boolean {
  return found === null || compareMarks(found, mark) < 0;
}

export function replicaBehind(location: string, mark: HighWaterMark, found: BucketPoint, cause?: unknown): WalshipError {
  const has = found ? `txid ${found.txid} of generation ${found.generation}` : 'no restorable state';
  return restoreError(
    'ERR_REPLICA_BEHIND',
    `${location} is behind its high-water mark: lease table ${mark.table} (key ${mark.key}) records txid ${mark.txid} of generation ${mark.generation} as durable, but the bucket reaches ${has}. ` +
      'Objects were deleted or the bucket was rolled back (an operator, a lifecycle rule, a restore of a bucket backup, or someone with write access to it); a restore now would silently lose transactions. ' +
      'Put the missing objects back (bucket versioning, a replicated copy). To take the older state knowingly, restore without the lease table',
    { location, table: mark.table, key: mark.key, markGeneration: mark.generation, markTxid: mark.txid, replicaGeneration: found?.generation ?? null, replicaTxid: found?.txid ?? null },
    cause,
  );
}

/**
 * The newest point the bucket's listing and headers reach: the newest generation with a snapshot
 * that survives fencing, and the highest txid of an object of it that does. For a restore to an
 * explicit older point, which is fine as long as the bucket still reaches the mark; the chain up
 * to that point is not proven here (a latest restore proves it by building it).
 */
export async function bucketTip(catalog: ReplicaCatalog, headers: HeaderReader): Promise<BucketPoint> {
  for (let i = catalog.generations.length - 1; i >= 0; i--) {
    const g = catalog.generations[i]!;
    const snapshots = g.snapshots.filter((s) => acceptable(g.epochs, s.epoch, s.minTxid, s.minTxid));
    if (snapshots.length === 0) continue;
    let txid = Math.max(...snapshots.map((s) => s.minTxid));
    let level0Done = false;
    for (let j = g.segments.length - 1; j >= 0; j--) {
      const seg = g.segments[j]!;
      let max = seg.keyMaxTxid;
      if (max === undefined) {
        // Level-0 segments do not overlap: below the newest acceptable one, none reaches further.
        if (level0Done) continue;
        try {
          max = (await headers.header(seg)).maxTxid;
        } catch {
          continue; // an unreadable object reaches nothing
        }
        if (!acceptable(g.epochs, seg.epoch, seg.minTxid, max)) continue;
        level0Done = true;
      } else if (!acceptable(g.epochs, seg.epoch, seg.minTxid, max)) {
        continue;
      }
      txid = Math.max(txid, max);
    }
    return { generation: g.id, txid };
  }
  return null;
}
