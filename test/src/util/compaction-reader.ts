// An independent reader of a replica for the retention and compaction tests: every object of a
// generation decoded with @walship/format alone, the fencing rule written again, and the database
// rebuilt transaction by transaction from level 0 or level 1, each step checked against the rolling
// checksum the object claims. It shares no code with @walship/restore, so a bug there cannot hide
// behind the same bug here.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ObjectStorage } from '@walship/storage';
import { PageHashes, decodeSegment, formatKeys, type ObjectHeader } from '@walship/format';

export interface Txn {
  txid: number;
  timestamp: number;
  commitSize: number;
  postChecksum: bigint;
  pages: { pgno: number; data: Uint8Array }[];
}

export interface Obj {
  key: string;
  header: ObjectHeader;
  txns: Txn[];
}

export interface Catalog {
  generation: string;
  epochs: Map<number, number>;
  /** Accepted by the fencing rule, in txid order. */
  snapshots: Obj[];
  l0: Obj[];
  l1: Obj[];
  keys: string[];
}

/** The fencing rule, written again here: epoch e counts for txids in [start(e), start of any later epoch). */
export function fencingAccepts(epochs: Map<number, number>, h: ObjectHeader): boolean {
  const start = epochs.get(h.epoch);
  if (start === undefined || h.minTxid < start) return false;
  for (const [e, s] of epochs) if (e > h.epoch && s <= h.maxTxid) return false;
  return true;
}

export class Replica {
  private readonly cache = new Map<string, Obj>();
  constructor(
    readonly storage: ObjectStorage,
    readonly prefix: string,
  ) {}

  async keys(under = `${this.prefix}/`): Promise<string[]> {
    const out: string[] = [];
    for await (const o of this.storage.list({ prefix: under })) out.push(o.key);
    return out.sort();
  }

  async object(key: string): Promise<Obj> {
    const cached = this.cache.get(key);
    if (cached) return cached;
    const bytes = await this.storage.get(key);
    if (!bytes) throw new Error(`${key} is missing`);
    const d = await decodeSegment(bytes, { name: key });
    const obj = { key, header: d.header, txns: d.transactions.map((t) => ({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: t.postChecksum, pages: t.pages })) };
    this.cache.set(key, obj);
    return obj;
  }

  async generations(): Promise<string[]> {
    const keys = formatKeys(this.prefix);
    return [...new Set((await this.keys()).map((k) => keys.parse(k)).flatMap((p) => (p && p.kind !== 'database' ? [p.generation] : [])))].sort();
  }

  async catalog(generation: string): Promise<Catalog> {
    const f = formatKeys(this.prefix);
    const keys = await this.keys(f.generationDir(generation));
    const epochs = new Map<number, number>();
    const cat: Catalog = { generation, epochs, snapshots: [], l0: [], l1: [], keys };
    for (const key of keys) {
      const p = f.parse(key);
      if (p?.kind === 'epoch') epochs.set(p.epoch, (JSON.parse(new TextDecoder().decode((await this.storage.get(key)) as Uint8Array)) as { startTxid: number }).startTxid);
    }
    for (const key of keys) {
      const p = f.parse(key);
      if (p?.kind !== 'snapshot' && p?.kind !== 'segment') continue;
      const obj = await this.object(key);
      if (!fencingAccepts(epochs, obj.header)) continue;
      if (p.kind === 'snapshot') cat.snapshots.push(obj);
      else if (p.level === 0) cat.l0.push(obj);
      else cat.l1.push(obj);
    }
    const byMin = (a: Obj, b: Obj): number => a.header.minTxid - b.header.minTxid;
    cat.snapshots.sort(byMin);
    cat.l0.sort(byMin);
    cat.l1.sort(byMin);
    return cat;
  }
}

export class Image {
  pages = new Map<number, Uint8Array>();
  commitSize = 0;
  constructor(readonly pageSize: number) {}

  apply(t: Txn): void {
    for (const p of t.pages) this.pages.set(p.pgno, p.data);
    this.commitSize = t.commitSize;
    for (const pgno of [...this.pages.keys()]) if (pgno > t.commitSize) this.pages.delete(pgno);
  }

  checksum(): bigint {
    const h = new PageHashes(this.pageSize);
    for (const [pgno, data] of this.pages) h.set(pgno, data);
    return h.value;
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.commitSize * this.pageSize);
    for (const [pgno, data] of this.pages) out.set(data, (pgno - 1) * this.pageSize);
    return out;
  }

  sha(): string {
    return createHash('sha256').update(this.bytes()).digest('hex');
  }
}

/** Applies one transaction and checks the rolling checksum it claims (invariant C). */
export function step(image: Image, t: Txn, where: string): void {
  image.apply(t);
  const sum = image.checksum();
  assert.equal(sum, t.postChecksum, `${where}: checksum after txid ${t.txid}`);
}

/**
 * The database after txid t: the newest accepted snapshot at or before t, then level-0
 * transactions ('l0'), or a level-1 object wherever one holds the next txid, applied transaction
 * by transaction up to t ('l1'; level 0 where none does).
 */
export function restoreTo(cat: Catalog, t: number, mode: 'l0' | 'l1'): { image: Image; objects: string[] } {
  const snap = cat.snapshots.filter((s) => s.header.maxTxid <= t).at(-1);
  if (!snap) throw new Error(`txid ${t}: no snapshot at or before it`);
  const image = new Image(snap.header.pageSize);
  step(image, snap.txns[0] as Txn, snap.key);
  const objects = [snap.key];
  let cur = snap.header.maxTxid;
  let sum = snap.header.postChecksum;
  while (cur < t) {
    const l1 = mode === 'l1' ? cat.l1.find((o) => o.header.minTxid <= cur + 1 && o.header.maxTxid >= cur + 1) : undefined;
    const seg = l1 ?? cat.l0.find((o) => o.header.minTxid <= cur + 1 && o.header.maxTxid >= cur + 1);
    if (!seg) throw new Error(`txid ${t}: no ${mode === 'l1' ? 'level-1 or ' : ''}level-0 object holds txid ${cur + 1}`);
    if (seg.header.minTxid === cur + 1) assert.equal(seg.header.preChecksum, sum, `${seg.key} links to the state at txid ${cur}`);
    for (const x of seg.txns) {
      if (x.txid <= cur || x.txid > t) continue;
      assert.equal(x.txid, cur + 1, `${seg.key}: contiguous txids`);
      step(image, x, seg.key);
      cur = x.txid;
      sum = x.postChecksum;
    }
    objects.push(seg.key);
  }
  return { image, objects };
}

export interface Truth {
  sha: string;
  checksum: bigint;
  commitSize: number;
  timestamp: number;
}

/** Every txid of a generation, from its first snapshot through level-0 segments only. */
export function truthOf(cat: Catalog): Map<number, Truth> {
  const first = cat.snapshots[0] as Obj;
  const image = new Image(first.header.pageSize);
  const out = new Map<number, Truth>();
  step(image, first.txns[0] as Txn, first.key);
  out.set(first.header.maxTxid, { sha: image.sha(), checksum: first.header.postChecksum, commitSize: image.commitSize, timestamp: first.header.lastTimestamp });
  let cur = first.header.maxTxid;
  for (const seg of cat.l0) {
    for (const t of seg.txns) {
      if (t.txid <= cur) continue;
      assert.equal(t.txid, cur + 1, `${seg.key}: the level-0 chain is contiguous`);
      step(image, t, seg.key);
      out.set(t.txid, { sha: image.sha(), checksum: t.postChecksum, commitSize: t.commitSize, timestamp: t.timestamp });
      cur = t.txid;
    }
  }
  return out;
}

/** A compacted object must be exactly its level-0 inputs' transactions in order, each with its own pages. */
export function assertIsMergeOfInputs(cat: Catalog, l1: Obj, truth: Map<number, Truth>): void {
  const { minTxid, maxTxid } = l1.header;
  const inputs: Txn[] = [];
  for (const seg of cat.l0) for (const t of seg.txns) if (t.txid >= minTxid && t.txid <= maxTxid) inputs.push(t);
  assert.deepEqual(
    inputs.map((t) => t.txid),
    Array.from({ length: maxTxid - minTxid + 1 }, (_, i) => minTxid + i),
    `${l1.key}: level-0 holds every txid it covers`,
  );
  assert.equal(l1.header.level, 1);
  assert.equal(l1.header.transactionCount, maxTxid - minTxid + 1, `${l1.key}: one record per transaction`);
  assert.equal(l1.header.preChecksum, truth.get(minTxid - 1)?.checksum, `${l1.key}: pre-apply checksum is the chain's at ${minTxid - 1}`);
  assert.equal(l1.header.postChecksum, truth.get(maxTxid)?.checksum, `${l1.key}: post-apply checksum is the chain's at ${maxTxid}`);
  l1.txns.forEach((rec, i) => {
    const t = inputs[i] as Txn;
    assert.deepEqual([rec.txid, rec.timestamp, rec.commitSize, rec.postChecksum], [t.txid, t.timestamp, t.commitSize, t.postChecksum], `${l1.key}: the record of txid ${t.txid}`);
    assert.deepEqual(
      rec.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]),
      t.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]),
      `${l1.key}: the pages of txid ${t.txid}`,
    );
  });
}
