// Compaction and retention over an in-memory store and a simulated database: the cases a real
// SQLite writer rarely produces (a page truncated away and counted again without an image, a base
// snapshot that is damaged or does not continue the chain, a clock that stepped back) and the
// planner's boundaries.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ObjectInfo, ObjectStorage } from '@walship/storage';
import { PageHashes, decodeSegment, encodeSegment, formatKeys, loadFormat, type ObjectHeader, type TransactionInput } from '@walship/format';
import { COMPACTION_DEFAULTS, planRuns, type PlanStep } from './compaction.js';
import { runMaintenancePass } from './maintenance.js';
import type { LogEntry } from './log.js';

class MemoryStorage implements ObjectStorage {
  readonly objects = new Map<string, Uint8Array>();
  readonly location = 'memory://test';
  async put(key: string, body: Uint8Array): Promise<{ etag?: string }> {
    this.objects.set(key, body.slice());
    return {};
  }
  async putStream(key: string, body: AsyncIterable<Uint8Array>): Promise<{ size: number }> {
    const parts: Uint8Array[] = [];
    for await (const p of body) parts.push(p);
    const bytes = Buffer.concat(parts);
    this.objects.set(key, new Uint8Array(bytes));
    return { size: bytes.length };
  }
  async get(key: string, o?: { range?: { start: number; end: number } }): Promise<Uint8Array | null> {
    const b = this.objects.get(key);
    if (!b) return null;
    return o?.range ? b.slice(o.range.start, o.range.end + 1) : b;
  }
  async head(key: string): Promise<ObjectInfo | null> {
    const b = this.objects.get(key);
    return b ? { key, size: b.length } : null;
  }
  async *list(o: { prefix: string; startAfter?: string }): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(o.prefix) && (o.startAfter === undefined || k > o.startAfter)).sort();
    for (const key of keys) yield { key, size: (this.objects.get(key) as Uint8Array).length };
  }
  async delete(keys: readonly string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k);
  }
}

const PREFIX = 'db';
const GEN = '0000000100000000';
const PAGE = 512;
const DB_ID = '00112233445566778899aabbccddeeff';
const keys = formatKeys(PREFIX);

/** A database as a page map, shipping snapshots and level-0 segments the way the writer does. */
class Sim {
  readonly storage = new MemoryStorage();
  pages = new Map<number, Uint8Array>();
  hashes = new PageHashes(PAGE);
  txid = 0;
  clock = 1_000_000;
  history = new Map<number, bigint>();

  async epoch(epoch: number, startTxid: number): Promise<void> {
    await this.storage.put(keys.epoch(GEN, epoch), new TextEncoder().encode(JSON.stringify({ format: 1, epoch, generation: GEN, startTxid })));
  }

  /** One transaction: `writes` pages get a new image (filled with `fill`), then the size is `size`. */
  txn(writes: number[], fill: number, size = Math.max(this.pages.size, ...writes)): TransactionInput {
    this.txid++;
    const pages = writes.map((pgno) => ({ pgno, data: new Uint8Array(PAGE).fill(fill + pgno) }));
    for (const p of pages) {
      this.pages.set(p.pgno, p.data);
      this.hashes.set(p.pgno, p.data);
    }
    for (const pgno of [...this.pages.keys()]) if (pgno > size) this.pages.delete(pgno);
    this.hashes.truncate(size);
    this.history.set(this.txid, this.hashes.value);
    return { txid: this.txid, timestamp: this.clock, commitSize: size, postChecksum: this.hashes.value, pages };
  }

  async segment(epoch: number, txns: TransactionInput[], at = this.clock): Promise<string> {
    const first = txns[0] as TransactionInput;
    const last = txns[txns.length - 1] as TransactionInput;
    for (const t of txns) t.timestamp = at;
    const key = keys.segment({ generation: GEN, level: 0, minTxid: first.txid, epoch });
    const header = {
      kind: 'segment' as const,
      databaseId: DB_ID,
      generation: GEN,
      epoch,
      level: 0,
      minTxid: first.txid,
      maxTxid: last.txid,
      pageSize: PAGE,
      commitSize: last.commitSize,
      firstTimestamp: at,
      lastTimestamp: at,
      preChecksum: this.history.get(first.txid - 1) ?? 0n,
      postChecksum: last.postChecksum,
      transactionCount: txns.length,
      pageCount: txns.reduce((n, t) => n + t.pages.length, 0),
    };
    await this.storage.put(key, encodeSegment(header, txns));
    return key;
  }

  async snapshot(epoch: number, at = this.clock): Promise<string> {
    const size = Math.max(...this.pages.keys());
    const pages = [...this.pages.entries()].sort((a, b) => a[0] - b[0]).map(([pgno, data]) => ({ pgno, data }));
    const key = keys.snapshot({ generation: GEN, txid: this.txid, epoch });
    const header = {
      kind: 'snapshot' as const,
      databaseId: DB_ID,
      generation: GEN,
      epoch,
      level: 0,
      minTxid: this.txid,
      maxTxid: this.txid,
      pageSize: PAGE,
      commitSize: size,
      firstTimestamp: at,
      lastTimestamp: at,
      preChecksum: 0n,
      postChecksum: this.hashes.value,
      transactionCount: 1,
      pageCount: pages.length,
    };
    await this.storage.put(key, encodeSegment(header, [{ txid: this.txid, timestamp: at, commitSize: size, postChecksum: this.hashes.value, pages }]));
    return key;
  }
}

function collect(): { logs: LogEntry[]; logger: (e: LogEntry) => void } {
  const logs: LogEntry[] = [];
  return { logs, logger: (e) => logs.push(e) };
}

before(async () => {
  await loadFormat();
});

describe('compaction', () => {
  test('keeps every transaction of a run with its own pages, txid, timestamp and checksum (the inputs concatenated)', async () => {
    const sim = new Sim();
    await sim.epoch(1, 1);
    sim.txn([1, 2, 3, 4], 0);
    await sim.snapshot(1);
    const inputs: string[] = [];
    for (let i = 0; i < 4; i++) {
      inputs.push(await sim.segment(1, [sim.txn([2 + (i % 2), 5 + i], 10 * i), sim.txn([1], 7 * i)]));
      sim.clock += 3;
    }
    sim.clock += COMPACTION_DEFAULTS.bucketMs;
    await sim.segment(1, [sim.txn([2], 99)]);
    const r = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 0, logLevel: 'silent' });
    const key = keys.segment({ generation: GEN, level: 1, minTxid: 2, maxTxid: 9, epoch: 1 });
    assert.deepEqual(r.compaction?.written, [key]);
    const l1 = await decodeSegment(sim.storage.objects.get(key) as Uint8Array);
    assert.equal(l1.header.transactionCount, 8, 'one record per transaction');
    assert.equal(l1.header.preChecksum, sim.history.get(1));
    assert.equal(l1.header.postChecksum, sim.history.get(9));
    const expected: Awaited<ReturnType<typeof decodeSegment>>['transactions'] = [];
    for (const k of inputs) expected.push(...(await decodeSegment(sim.storage.objects.get(k) as Uint8Array)).transactions);
    assert.equal(l1.header.firstTimestamp, expected[0]?.timestamp);
    assert.equal(l1.header.lastTimestamp, expected.at(-1)?.timestamp);
    const view = (ts: typeof expected) => ts.map((t) => ({ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, post: t.postChecksum, pages: t.pages.map((p) => [p.pgno, Buffer.from(p.data).toString('hex')]) }));
    assert.deepEqual(view(l1.transactions), view(expected));
    for (const t of l1.transactions) assert.equal(t.postChecksum, sim.history.get(t.txid), `checksum after txid ${t.txid}`);
    // The default level0RetentionMs keeps the inputs for a while: a restore planned with them still finds them.
    assert.deepEqual(r.compaction?.dropped, []);
    for (const k of inputs) assert.ok(sim.storage.objects.has(k));
  });

  test('level-0 inputs go once their level-1 object is verified and old enough; the open tail stays', async () => {
    const sim = new Sim();
    await sim.epoch(1, 1);
    sim.txn([1, 2, 3, 4], 0);
    await sim.snapshot(1);
    const inputs: string[] = [];
    for (let i = 0; i < 3; i++) inputs.push(await sim.segment(1, [sim.txn([2, 5 + i], i)]));
    sim.clock += COMPACTION_DEFAULTS.bucketMs;
    const tail = await sim.segment(1, [sim.txn([2], 99)]);
    const compaction = { level0RetentionMs: 0 };
    let counted = 0;
    const r = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 0, compaction, logLevel: 'silent', onDeleted: (n) => (counted += n) });
    assert.equal(r.compaction?.written.length, 1);
    assert.deepEqual(r.compaction?.dropped.sort(), [...inputs].sort());
    assert.equal(counted, inputs.length, 'each deleted input counts (walship_objects_deleted_total)');
    for (const k of inputs) assert.ok(!sim.storage.objects.has(k), `${k} deleted`);
    assert.ok(sim.storage.objects.has(tail), 'the open tail stays');
    // A new process verifies the level-1 object (its inputs are gone: it decodes whole) and deletes nothing more.
    const again = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 0, compaction, logLevel: 'silent' });
    assert.deepEqual(again.compaction?.dropped, []);
    assert.deepEqual(again.compaction?.deleted, []);
  });

  test('objects written before boundaries were kept (one record, a jump): the newest is rewritten, an older one keeps its level-0 inputs', async () => {
    const sim = new Sim();
    await sim.epoch(1, 1);
    sim.txn([1, 2, 3, 4], 0);
    await sim.snapshot(1);
    const runs: string[][] = [[], []];
    for (const run of runs) {
      for (let i = 0; i < 2; i++) run.push(await sim.segment(1, [sim.txn([2, 5 + i], i)]));
      sim.clock += COMPACTION_DEFAULTS.bucketMs;
    }
    await sim.segment(1, [sim.txn([2], 99)]);
    // What the earlier compaction wrote for each run: one record at the max txid, each page's last image.
    const jumps: string[] = [];
    for (const run of runs) {
      const txns = [];
      for (const k of run) txns.push(...(await decodeSegment(sim.storage.objects.get(k) as Uint8Array)).transactions);
      const first = txns[0] as (typeof txns)[number];
      const last = txns.at(-1) as (typeof txns)[number];
      const pages = new Map<number, Uint8Array>();
      for (const t of txns) for (const p of t.pages) pages.set(p.pgno, p.data);
      const sorted = [...pages.entries()].sort((a, b) => a[0] - b[0]).map(([pgno, data]) => ({ pgno, data }));
      const key = keys.segment({ generation: GEN, level: 1, minTxid: first.txid, maxTxid: last.txid, epoch: 1 });
      const header = {
        kind: 'segment' as const, databaseId: DB_ID, generation: GEN, epoch: 1, level: 1, minTxid: first.txid, maxTxid: last.txid, pageSize: PAGE,
        commitSize: last.commitSize, firstTimestamp: last.timestamp, lastTimestamp: last.timestamp, preChecksum: sim.history.get(first.txid - 1) as bigint,
        postChecksum: last.postChecksum, transactionCount: 1, pageCount: sorted.length,
      };
      await sim.storage.put(key, encodeSegment(header, [{ txid: last.txid, timestamp: last.timestamp, commitSize: last.commitSize, postChecksum: last.postChecksum, pages: sorted }]));
      jumps.push(key);
    }
    let counted = 0;
    const r = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 0, compaction: { level0RetentionMs: 0 }, logLevel: 'silent', onDeleted: (n) => (counted += n) });
    assert.deepEqual(r.compaction?.deleted, [jumps[1]], 'the newest jump does not match a merge that keeps boundaries');
    assert.equal(counted, 1 + (runs[1] as string[]).length, 'the rechecked jump and its dropped inputs count (walship_objects_deleted_total)');
    assert.deepEqual(r.compaction?.written, [jumps[1]], 'and is written again with every boundary');
    assert.deepEqual(r.compaction?.dropped.sort(), [...(runs[1] as string[])].sort(), 'its inputs go');
    assert.ok(sim.storage.objects.has(jumps[0] as string), 'the older jump stays');
    for (const k of runs[0] as string[]) assert.ok(sim.storage.objects.has(k), `${k}: level 0 under a jump stays (the only exact copy of its boundaries)`);
  });

  test('a page truncated away and inside the database again: each transaction keeps its own pages, so the run compacts', async () => {
    const sim = new Sim();
    await sim.epoch(1, 1);
    sim.txn([1, 2, 3, 4], 0);
    await sim.snapshot(1);
    await sim.segment(1, [sim.txn([2], 1)]);
    await sim.segment(1, [sim.txn([1], 2, 2)]);
    await sim.segment(1, [sim.txn([3], 3, 4)]);
    sim.clock += COMPACTION_DEFAULTS.bucketMs;
    await sim.segment(1, [sim.txn([2], 4)]);
    const r = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 0, logLevel: 'silent' });
    assert.equal(r.compaction?.written.length, 1);
    const l1 = await decodeSegment(sim.storage.objects.get(r.compaction?.written[0] as string) as Uint8Array);
    assert.deepEqual(l1.transactions.map((t) => [t.txid, t.commitSize]), [[2, 4], [3, 2], [4, 4]]);
  });

  test('the planner: clipped at snapshots, split by epoch, bucket and size, the open tail left alone', () => {
    const h = (min: number, max: number, epoch: number, at: number, pages = 1): { key: string; header: ObjectHeader } => ({
      key: keys.segment({ generation: GEN, level: 0, minTxid: min, epoch }),
      header: { minTxid: min, maxTxid: max, epoch, firstTimestamp: at, lastTimestamp: at, pageCount: pages, pageSize: 1000, preChecksum: 0n, postChecksum: 0n } as ObjectHeader,
    });
    const segments = [h(11, 12, 1, 0), h(13, 14, 1, 0), h(15, 15, 1, 0), h(16, 18, 1, 0), h(19, 20, 1, 0), h(21, 22, 2, 0), h(23, 24, 2, 0), h(25, 25, 2, 100), h(26, 27, 2, 100, 60), h(28, 28, 2, 100, 50), h(29, 30, 2, 200)];
    const options = { ...COMPACTION_DEFAULTS, bucketMs: 100, maxInputBytes: 100_000 };
    const steps = planRuns({ keys, generation: GEN, epochs: new Map([[1, 1], [2, 21]]), segments, snapshotTxids: [10, 16], startTxid: 10, options });
    const summary = steps.map((s: PlanStep) => (s.kind === 'run' ? `run ${s.run.minTxid}-${s.run.maxTxid}` : `skip ${s.skip.minTxid}-${s.skip.maxTxid}`));
    // 11..15 | snapshot 16 (txid 16 in no run) | 17..20 | epoch 2: 21..24 | bucket: 25..27 | size: 28 alone | bucket: 29..30, open.
    assert.deepEqual(summary, ['run 11-15', 'run 17-20', 'run 21-24', 'run 25-27', 'skip 28-28']);
    const clipped = steps[1];
    assert.ok(clipped?.kind === 'run' && clipped.run.inputs[0]?.from === 17 && clipped.run.inputs[0]?.header.minTxid === 16);
  });
});

describe('retention', () => {
  async function history(): Promise<{ sim: Sim; snaps: string[]; segs: string[] }> {
    const sim = new Sim();
    await sim.epoch(1, 1);
    sim.txn([1, 2, 3], 0);
    const snaps = [await sim.snapshot(1)];
    const segs: string[] = [];
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < 3; i++) {
        sim.clock += 1000;
        segs.push(await sim.segment(1, [sim.txn([1 + (i % 3)], s * 10 + i)]));
      }
      sim.clock += 1000;
      snaps.push(await sim.snapshot(1));
    }
    sim.clock += 1000;
    segs.push(await sim.segment(1, [sim.txn([2], 77)]));
    return { sim, snaps, segs };
  }

  test('a damaged base or one off the chain is not trusted: an older snapshot becomes the base; with none, nothing goes', async () => {
    const { sim, snaps, segs } = await history();
    const pass = async (): Promise<Awaited<ReturnType<typeof runMaintenancePass>>> =>
      runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 10, now: sim.clock + 10, compaction: false, logLevel: 'silent' });
    const newest = snaps[3] as string;
    const damaged = (sim.storage.objects.get(newest) as Uint8Array).slice();
    damaged[damaged.length >> 1] = (damaged[damaged.length >> 1] as number) ^ 1;
    sim.storage.objects.set(newest, damaged);
    // Snapshot 2 decodes but is not the state the chain has at its txid.
    const offChain = await decodeSegment(sim.storage.objects.get(snaps[2] as string) as Uint8Array);
    const page = offChain.transactions[0]?.pages[0] as { pgno: number; data: Uint8Array };
    const hashes = new PageHashes(PAGE);
    const pages = (offChain.transactions[0]?.pages ?? []).map((p) => (p === page ? { pgno: p.pgno, data: new Uint8Array(PAGE).fill(0xee) } : p));
    for (const p of pages) hashes.set(p.pgno, p.data);
    const t = offChain.transactions[0] as { txid: number; timestamp: number; commitSize: number };
    sim.storage.objects.set(snaps[2] as string, encodeSegment({ ...offChain.header, postChecksum: hashes.value }, [{ txid: t.txid, timestamp: t.timestamp, commitSize: t.commitSize, postChecksum: hashes.value, pages }]));

    const r = await pass();
    assert.equal(r.retention?.base?.key, snaps[1]);
    // The segment holding txid 4 starts at the base's txid: kept (it starts inside what the base restores).
    assert.deepEqual(new Set(r.retention?.deleted.map((d) => d.key)), new Set([snaps[0], ...segs.slice(0, 2)]));

    const oneLeft = (sim.storage.objects.get(snaps[1] as string) as Uint8Array).slice();
    oneLeft[oneLeft.length >> 1] = (oneLeft[oneLeft.length >> 1] as number) ^ 1;
    sim.storage.objects.set(snaps[1] as string, oneLeft);
    const before = [...sim.storage.objects.keys()];
    const none = await pass();
    assert.equal(none.retention?.base, null);
    assert.match(none.retention?.reason ?? '', /could be proven/);
    assert.deepEqual([...sim.storage.objects.keys()], before, 'nothing deleted');
  });

  test('a level-0 segment below the base with a commit after the cutoff (the clock stepped back): an older base', async () => {
    const { sim, snaps, segs } = await history();
    const late = segs[4] as string;
    const decoded = await decodeSegment(sim.storage.objects.get(late) as Uint8Array);
    const at = sim.clock + 5;
    const txns = decoded.transactions.map((t) => ({ ...t, timestamp: at }));
    sim.storage.objects.set(late, encodeSegment({ ...decoded.header, firstTimestamp: at, lastTimestamp: at }, txns));
    const { logs, logger } = collect();
    const r = await runMaintenancePass({ storage: sim.storage, prefix: PREFIX, retentionMs: 1, now: sim.clock + 1, compaction: false, logger });
    assert.equal(r.retention?.base?.key, snaps[1], 'the snapshot below the late segment');
    assert.ok(logs.some((e) => e.level === 'warn' && /stepped back/.test(String(e.reason))));
  });
});
