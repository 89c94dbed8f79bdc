import { SegmentEncoder, decodeObject, decodeSegment, hex64, type ObjectHeader, type ObjectHeaderInit } from '@walship/format';
import { checkAbort, signalOf, type MaintenanceContext } from './compaction-context.js';
import type { PlannedRun } from './compaction-plan.js';

// Merging: a planned run's inputs decoded into one level-1 object, compared with a stored one and uploaded.

export interface MergedTransaction {
  txid: number;
  timestamp: number;
  commitSize: number;
  postChecksum: bigint;
  pages: { pgno: number; data: Uint8Array }[];
}

export interface MergedRun {
  header: ObjectHeaderInit;
  /** Every transaction of the run in txid order, each with its own pages (as level 0 shipped them). */
  transactions: MergedTransaction[];
}

/** A run the data itself refuses (found while decoding the inputs): it stays at level 0. */
export class RunRefused extends Error {
  override readonly name = 'RunRefused';
}

/**
 * Downloads and decodes the inputs (every chunk, the trailer and index checked) and concatenates
 * their transactions in [minTxid, maxTxid]. Checks on the way: txids contiguous, each input's
 * pre-apply checksum equal to the post-apply checksum before it, timestamps not decreasing.
 */
export async function mergeRun(ctx: MaintenanceContext, run: PlannedRun): Promise<MergedRun> {
  const transactions: MergedTransaction[] = [];
  let pre: bigint | null = null;
  let post = 0n;
  let expected = run.minTxid;
  let first: ObjectHeader | null = null;
  for (const input of run.inputs) {
    checkAbort(ctx.signal);
    const bytes = await ctx.storage.get(input.key, signalOf(ctx));
    if (bytes === null) throw new RunRefused(`${input.key} is gone`);
    const decoded = await decodeSegment(bytes, { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: input.key });
    const h = decoded.header;
    const planned = input.header;
    if (h.minTxid !== planned.minTxid || h.maxTxid !== planned.maxTxid || h.epoch !== planned.epoch || h.preChecksum !== planned.preChecksum || h.postChecksum !== planned.postChecksum) {
      throw new RunRefused(`${input.key} changed since its header was read`);
    }
    first ??= h;
    if (h.databaseId !== first.databaseId || h.pageSize !== first.pageSize) throw new RunRefused(`${input.key} belongs to another database or page size`);
    if (input.from === h.minTxid) {
      if (pre === null) pre = h.preChecksum;
      else if (h.preChecksum !== post) {
        throw new RunRefused(`${input.key} expects checksum ${hex64(h.preChecksum)} before txid ${h.minTxid}, the run leaves ${hex64(post)}`);
      }
    }
    for (const t of decoded.transactions) {
      if (t.txid < input.from) {
        if (t.txid === input.from - 1 && pre === null) pre = t.postChecksum;
        continue;
      }
      if (t.txid > input.to) break;
      if (t.txid !== expected) throw new RunRefused(`${input.key}: txid ${t.txid} where ${expected} belongs`);
      const previous = transactions.at(-1);
      if (previous && t.timestamp < previous.timestamp) throw new RunRefused(`${input.key}: txid ${t.txid} has a timestamp before txid ${previous.txid}'s`);
      transactions.push({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages.map((p) => ({ pgno: p.pgno, data: p.data })) });
      post = t.postChecksum;
      expected++;
    }
  }
  if (first === null || pre === null || expected !== run.maxTxid + 1) {
    throw new RunRefused(`the inputs hold txids ${run.minTxid}..${expected - 1}, not ${run.minTxid}..${run.maxTxid}`);
  }
  const head = transactions[0] as MergedTransaction;
  const last = transactions[transactions.length - 1] as MergedTransaction;
  const header: ObjectHeaderInit = {
    kind: 'segment',
    databaseId: first.databaseId,
    generation: first.generation,
    epoch: run.epoch,
    level: 1,
    minTxid: run.minTxid,
    maxTxid: run.maxTxid,
    pageSize: first.pageSize,
    commitSize: last.commitSize,
    firstTimestamp: head.timestamp,
    lastTimestamp: last.timestamp,
    preChecksum: pre,
    postChecksum: post,
    transactionCount: transactions.length,
    pageCount: transactions.reduce((n, t) => n + t.pages.length, 0),
    compression: ctx.compression,
  };
  return { header, transactions };
}

/** Why the stored object is not exactly `merged`, or null when it is. */
export async function compareStored(ctx: MaintenanceContext, key: string, merged: MergedRun): Promise<string | null> {
  const bytes = await ctx.storage.get(key, signalOf(ctx));
  if (bytes === null) return 'the object is not there';
  const want = merged.header;
  let i = 0;
  try {
    // The header is compared before any page is decoded: an object planted under this key cannot
    // make the writer hold more pages than the run it compares with. Transactions are compared as
    // they stream, so only one chunk of the stored object is held.
    for await (const event of decodeObject(bytes, { ...(ctx.keyring ? { keyring: ctx.keyring } : {}), name: key })) {
      if (event.type === 'header') {
        const h = event.header;
        for (const field of ['kind', 'databaseId', 'generation', 'epoch', 'level', 'minTxid', 'maxTxid', 'pageSize', 'commitSize', 'firstTimestamp', 'lastTimestamp', 'preChecksum', 'postChecksum', 'transactionCount', 'pageCount'] as const) {
          if (h[field] !== want[field]) return `header ${field} is ${String(h[field])}, expected ${String(want[field])}`;
        }
      } else if (event.type === 'transaction') {
        const t = event;
        const exp = merged.transactions[i++];
        if (!exp) return `more transactions than the ${merged.transactions.length} of the run`;
        if (t.txid !== exp.txid || t.timestamp !== exp.timestamp || t.postChecksum !== exp.postChecksum || t.commitSize !== exp.commitSize) return `its record of txid ${exp.txid} does not match the run`;
        if (t.pages.length !== exp.pages.length) return `txid ${exp.txid}: ${t.pages.length} pages, expected ${exp.pages.length}`;
        for (let j = 0; j < t.pages.length; j++) {
          const got = t.pages[j] as { pgno: number; data: Uint8Array };
          const p = exp.pages[j] as { pgno: number; data: Uint8Array };
          if (got.pgno !== p.pgno || Buffer.compare(got.data, p.data) !== 0) return `txid ${exp.txid}: page ${p.pgno} differs from its input`;
        }
      }
    }
  } catch (e) {
    return `it does not decode: ${(e as Error).message}`;
  }
  if (i !== merged.transactions.length) return `${i} transactions, expected ${merged.transactions.length}`;
  return null;
}

export async function upload(ctx: MaintenanceContext, key: string, merged: MergedRun): Promise<number> {
  const keyring = ctx.keyring;
  const body = async function* (): AsyncGenerator<Uint8Array> {
    const enc = new SegmentEncoder(merged.header, keyring ? { keyring } : {});
    for (const t of merged.transactions) {
      enc.beginTransaction({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pageCount: t.pages.length });
      for (const p of t.pages) enc.writePage(p.pgno, p.data);
      enc.endTransaction();
      yield* enc.take();
    }
    enc.finish();
    yield* enc.take();
  };
  const res = await ctx.storage.putStream(key, body(), signalOf(ctx));
  return res.size;
}
