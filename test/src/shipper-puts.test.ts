// Request cost under steady writes: one segment PUT per batch window, also while checkpoints run
// (issue 11: a checkpoint's marker cut every window's batch in two, so a steady load made two
// segment PUTs a window, ~100 ms apart). s3rver over HTTP, started here on a random loopback port.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { openReplicated } from '@walship/shipper';
import { loadFormat, parseObjectKey } from '@walship/format';
import { startS3rver, type S3Server } from './servers/index.js';
import { rebuildFromReplica } from './util/replica.js';
import { s3Location, storageFor } from './util/s3.js';

let server: S3Server;
let dir: string;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-puts-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('segment PUTs under steady writes', () => {
  test('one segment per batch window while a checkpoint runs after every upload', async () => {
    const prefix = `puts/steady-${randomBytes(4).toString('hex')}`;
    const path = join(dir, 'steady.db');
    const windowMs = 200;
    const segmentKeys = new Set<string>();
    const db = await openReplicated(path, {
      lease: false,
      s3: s3Location(server, prefix),
      batchWindowMs: windowMs,
      // Every window's upload crosses it: a checkpoint (and its marker transaction) after each one.
      checkpointBytes: 16 * 1024,
      logLevel: 'silent',
      onRequest: (e) => {
        if (e.operation === 'put' && e.status >= 200 && e.status < 300 && e.key?.endsWith('.seg')) segmentKeys.add(e.key);
      },
    });
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
    await db.flush();
    const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
    // Commit times by txid, on the shipper's clock (performance.now()); a checkpoint's marker is
    // committed by the shipper between two of these (the one before it stands in for it).
    const committedAt = new Map<number, number>();
    const load = async (ms: number): Promise<void> => {
      const t0 = performance.now();
      while (performance.now() - t0 < ms) {
        insert.run(randomBytes(200));
        committedAt.set(db.txid, performance.now());
        // Commits keep coming while an upload is in flight, as in a server under steady load.
        await delay(1);
      }
    };
    // A warm-up stretch first: the measured one starts in the steady state.
    await load(4 * windowMs);
    const firstTxid = db.txid + 1;
    const from = performance.now();
    const checkpointsSoFar = async (): Promise<number> => Number(/^walship_checkpoints_total\S*\s+(\d+)/m.exec(await db.metrics())?.[1]);
    await load(20 * windowMs);
    // A loaded machine uploads less often: load on until ten checkpoints ran (a liveness bound).
    while ((await checkpointsSoFar()) < 10 && performance.now() - from < 60_000) await load(windowMs);
    const spanMs = performance.now() - from;
    const lastTxid = db.txid;
    await db.flush();
    const checkpoints = await checkpointsSoFar();
    await db.close();

    // A segment's batch leaves once its first transaction is a window old, so the first
    // transactions of two segments are at least a window apart: over the measured commits, at
    // most one segment per window, +1 for the stretch's two ends, +1 to spare.
    const starts = [...segmentKeys]
      .map((key) => parseObjectKey(prefix, key))
      .flatMap((p) => (p?.kind === 'segment' && p.minTxid >= firstTxid && p.minTxid <= lastTxid ? [committedAt.get(p.minTxid) ?? committedAt.get(p.minTxid - 1)!] : []))
      .sort((a, b) => a - b);
    assert.ok(checkpoints >= 10, `checkpoints ran during the load (${checkpoints})`);
    assert.ok(
      starts.length <= Math.floor(spanMs / windowMs) + 2,
      `${starts.length} segments start within ${Math.round(spanMs)} ms of commits (window ${windowMs} ms); gaps between their first commits: ${starts
        .slice(1)
        .map((t, i) => Math.round(t - starts[i]!))
        .join(', ')} ms`,
    );

    const rebuilt = await rebuildFromReplica(storageFor(server, prefix), prefix);
    assert.ok(Buffer.from(rebuilt.bytes).equals(readFileSync(path)), 'the replica rebuilds the database byte for byte');
  });

  test('periodic snapshots are taken only at a txid where a level-0 segment starts', async () => {
    const prefix = `puts/snapshots-${randomBytes(4).toString('hex')}`;
    const path = join(dir, 'snapshots.db');
    const db = await openReplicated(path, {
      lease: false,
      s3: s3Location(server, prefix),
      batchWindowMs: 100,
      checkpointBytes: 16 * 1024,
      // Due between checkpoints: the checkpoints before it shipped their markers inside segments.
      snapshotIntervalMs: 500,
      logLevel: 'silent',
    });
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
    const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
    const snapshotsSoFar = async (): Promise<number> => {
      let n = 0;
      for await (const o of storageFor(server, prefix).list({ prefix })) if (parseObjectKey(prefix, o.key)?.kind === 'snapshot') n++;
      return n;
    };
    // At least 4 s, then on until three snapshots landed (a loaded machine takes them later; a liveness bound).
    const t0 = performance.now();
    for (let next = 4000; ; next += 500) {
      while (performance.now() - t0 < next) {
        insert.run(randomBytes(200));
        await delay(1);
      }
      if ((await snapshotsSoFar()) >= 3 || performance.now() - t0 > 30_000) break;
    }
    await db.close();

    const snapshots: number[] = [];
    const starts = new Set<number>();
    for await (const o of storageFor(server, prefix).list({ prefix })) {
      const p = parseObjectKey(prefix, o.key);
      if (p?.kind === 'snapshot') snapshots.push(p.txid);
      else if (p?.kind === 'segment' && p.level === 0) starts.add(p.minTxid);
    }
    snapshots.sort((a, b) => a - b);
    assert.ok(snapshots.length >= 3, `periodic snapshots were taken (${snapshots.join(', ')})`);
    // The first is the generation's, taken before any segment; every later one starts a segment.
    const inside = snapshots.slice(1).filter((txid) => !starts.has(txid));
    assert.deepEqual(inside, [], `snapshots at txids no segment starts at: ${inside.join(', ')}`);
    const rebuilt = await rebuildFromReplica(storageFor(server, prefix), prefix);
    assert.ok(Buffer.from(rebuilt.bytes).equals(readFileSync(path)), 'the replica rebuilds the database byte for byte');
  });
});
