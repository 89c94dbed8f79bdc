// A plain reading of the replica for tests: list one generation, decode every object with the
// format's decoder, check that the txid chain is contiguous and that each object's pre-apply
// checksum is the previous post-apply one, and apply the pages to a byte array. Kept independent
// of @walship/restore on purpose, so the shipper's tests do not trust the code they check.

import { PageHashes, decodeObject, formatKeys, parseObjectKey, type Keyring } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { acceptable, readLineage } from '@walship/shipper';

export interface Rebuilt {
  bytes: Uint8Array;
  txid: number;
  generation: string;
  objects: string[];
  checksum: bigint;
  pageSize: number;
}

export async function rebuildFromReplica(storage: ObjectStorage, prefix: string, options: { keyring?: Keyring; toTxid?: number } = {}): Promise<Rebuilt> {
  const lineage = await readLineage(storage, prefix);
  if (!lineage.generation || !lineage.lastSnapshot) throw new Error(`no restorable generation under ${prefix}`);
  const generation = lineage.generation;
  const keys = formatKeys(prefix);
  const epochs = lineage.epochs;
  const snapshots: { key: string; txid: number }[] = [];
  for await (const o of storage.list({ prefix: keys.snapshotDir(generation) })) {
    const p = parseObjectKey(prefix, o.key);
    if (p?.kind === 'snapshot' && acceptable(epochs, p.epoch, p.txid, p.txid) && (options.toTxid === undefined || p.txid <= options.toTxid)) snapshots.push({ key: o.key, txid: p.txid });
  }
  const snap = snapshots.at(-1);
  if (!snap) throw new Error(`no snapshot at or before ${options.toTxid}`);
  const segs: { key: string; minTxid: number; epoch: number }[] = [];
  for await (const o of storage.list({ prefix: keys.levelDir(generation, 0) })) {
    const p = parseObjectKey(prefix, o.key);
    if (p?.kind === 'segment') segs.push({ key: o.key, minTxid: p.minTxid, epoch: p.epoch });
  }
  let pageSize = 0;
  let pages = new Map<number, Uint8Array>();
  let commitSize = 0;
  let txid = 0;
  let checksum = 0n;
  const objects: string[] = [];
  /** Applies one object; null (nothing applied) for a segment the epoch rule leaves out (a fenced writer's late upload). */
  const apply = async (key: string, stopAt: number | undefined, expectPre: bigint | null, fenced = false): Promise<{ minTxid: number; maxTxid: number; epoch: number } | null> => {
    const bytes = await storage.get(key);
    if (!bytes) throw new Error(`${key} is missing`);
    const staged: { txid: number; commitSize: number; postChecksum: bigint; pages: { pgno: number; data: Uint8Array }[] }[] = [];
    let header: { minTxid: number; maxTxid: number; epoch: number; preChecksum: bigint; pageSize: number } | undefined;
    let ended = false;
    for await (const ev of decodeObject(bytes, { ...(options.keyring ? { keyring: options.keyring } : {}), name: key })) {
      if (ev.type === 'header') header = ev.header;
      else if (ev.type === 'transaction') staged.push(ev);
      else if (ev.type === 'end') ended = true;
    }
    if (!header || !ended) throw new Error(`${key} did not decode to the end`);
    if (fenced && !acceptable(epochs, header.epoch, header.minTxid, header.maxTxid)) return null;
    if (expectPre !== null && header.preChecksum !== expectPre) {
      throw new Error(`chain broken at ${key}: pre-apply checksum ${header.preChecksum.toString(16)} != previous post-apply ${expectPre.toString(16)}`);
    }
    pageSize = header.pageSize;
    for (const t of staged) {
      if (t.txid <= txid) continue;
      if (stopAt !== undefined && t.txid > stopAt) break;
      if (txid !== 0 && t.txid !== txid + 1) throw new Error(`gap: ${txid} then ${t.txid} in ${key}`);
      for (const p of t.pages) pages.set(p.pgno, p.data);
      commitSize = t.commitSize;
      for (const pgno of [...pages.keys()]) if (pgno > commitSize) pages.delete(pgno);
      txid = t.txid;
      checksum = t.postChecksum;
    }
    objects.push(key);
    return header;
  };
  await apply(snap.key, undefined, null);
  pages = new Map(pages);
  for (const s of segs) {
    if (options.toTxid !== undefined && txid >= options.toTxid) break;
    if (s.minTxid > txid + 1) {
      const near = segs.filter((x) => Math.abs(x.minTxid - txid) < 40).map((x) => x.key.slice(prefix.length + 1));
      throw new Error(`gap before ${s.key}: replica has txids up to ${txid} (segments near: ${near.join(', ')}; epochs ${JSON.stringify([...epochs])}; snapshot ${snap.key})`);
    }
    if (s.minTxid < snap.txid) continue;
    await apply(s.key, options.toTxid, s.minTxid === txid + 1 ? checksum : null, true);
  }
  const bytes = new Uint8Array(commitSize * pageSize);
  const hashes = new PageHashes(pageSize);
  for (const [pgno, data] of pages) {
    bytes.set(data, (pgno - 1) * pageSize);
    hashes.set(pgno, data);
  }
  if (hashes.value !== checksum) throw new Error(`rebuilt database checksum ${hashes.value.toString(16)} != replica's ${checksum.toString(16)} at txid ${txid}`);
  return { bytes, txid, generation, objects, checksum, pageSize };
}
