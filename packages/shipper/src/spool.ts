import { closeSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { decodeSegment, encodeSegment, type ObjectHeaderInit, type TransactionEvent } from '@walship/format';
import type { CapturedPage } from '@walship/vfs';

/**
 * The overflow spool. SQLite checkpoints the whole WAL, so under writes without a pause there is
 * never a moment when every frame in it is durable in the object store. Then the few transactions
 * still in flight are written, fsynced, to `<db>-walship-spool` in the segment format before the
 * checkpoint copies them into the database file: they stay exactly as durable as they were in the
 * WAL, and a restart after a crash ships them from there with their own txids and checksums.
 */
export const spoolPath = (dbPath: string): string => `${dbPath}-walship-spool`;

export interface SpoolTxn {
  txid: number;
  timestamp: number;
  commitSize: number;
  postChecksum: bigint;
  pages: CapturedPage[];
}

export function writeSpool(dbPath: string, header: ObjectHeaderInit, txns: SpoolTxn[]): void {
  const bytes = encodeSegment(
    { ...header, compression: 'none' },
    txns.map((t) => ({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages })),
  );
  const target = spoolPath(dbPath);
  const tmp = `${target}.tmp`;
  // Plaintext pages (never encrypted, whatever the replica's keys): the owner's only. fchmod too:
  // a .tmp left by a crash of an earlier version keeps the mode it was created with.
  const fd = openSync(tmp, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600);
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, target);
  const dir = openSync(dirname(target), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** The spooled transactions, verified end to end, or null when there is no spool. */
export async function readSpool(dbPath: string): Promise<{ preChecksum: bigint; minTxid: number; maxTxid: number; transactions: TransactionEvent[] } | null> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(spoolPath(dbPath));
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return null;
    throw e;
  }
  const decoded = await decodeSegment(bytes, { name: spoolPath(dbPath) });
  return { preChecksum: decoded.header.preChecksum, minTxid: decoded.header.minTxid, maxTxid: decoded.header.maxTxid, transactions: decoded.transactions };
}

export function removeSpool(dbPath: string): void {
  rmSync(spoolPath(dbPath), { force: true });
}
