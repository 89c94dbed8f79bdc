import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { openDatabase, type CommittedTransaction, type WalshipDatabase } from '@walship/vfs';
import { Replay, fileDigest, nativeSqlite } from './util/replay.js';

// Property: applying the transactions the VFS emits, in order, to an empty file reproduces the
// database byte for byte. Compared at every checkpoint (with checkpointEvery = 1 that is after
// every transaction), and the native sqlite3 shell must find the replayed file intact.

type Op =
  | { kind: 'insert'; rows: number; size: number; seed: number }
  | { kind: 'update'; modulo: number; size: number; seed: number }
  | { kind: 'delete'; modulo: number }
  | { kind: 'multi'; inserts: number; size: number; seed: number; end: 'commit' | 'rollback' }
  | { kind: 'savepoint'; size: number; seed: number }
  | { kind: 'spill'; rows: number; size: number; seed: number; end: 'commit' | 'rollback' }
  | { kind: 'failing'; seed: number }
  | { kind: 'vacuum' };

function bytes(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed | 0) ^ 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function opArb(pageSize: number): fc.Arbitrary<Op> {
  const size = fc.integer({ min: 0, max: pageSize * 3 });
  const seed = fc.integer();
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('insert' as const), rows: fc.integer({ min: 1, max: 12 }), size, seed }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('update' as const), modulo: fc.integer({ min: 1, max: 7 }), size, seed }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), modulo: fc.integer({ min: 2, max: 9 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('multi' as const), inserts: fc.integer({ min: 1, max: 6 }), size, seed, end: fc.constantFrom('commit' as const, 'rollback' as const) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('savepoint' as const), size, seed }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('spill' as const), rows: fc.integer({ min: 20, max: 60 }), size: fc.integer({ min: pageSize / 2, max: pageSize * 2 }), seed, end: fc.constantFrom('commit' as const, 'rollback' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('failing' as const), seed }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'vacuum' as const }) },
  );
}

function runOp(db: WalshipDatabase, op: Op): void {
  const insert = db.prepare('INSERT INTO t(k, v) VALUES (?, ?)');
  switch (op.kind) {
    case 'insert':
      db.transaction(() => {
        for (let i = 0; i < op.rows; i++) insert.run(op.seed + i, bytes(op.seed + i, op.size));
      })();
      return;
    case 'update':
      db.prepare('UPDATE t SET v = ? WHERE id % ? = 0').run(bytes(op.seed, op.size), op.modulo);
      return;
    case 'delete':
      db.prepare('DELETE FROM t WHERE id % ? = 1').run(op.modulo);
      return;
    case 'multi':
      db.exec('BEGIN');
      for (let i = 0; i < op.inserts; i++) insert.run(op.seed - i, bytes(op.seed - i, op.size));
      db.prepare('UPDATE t SET k = k + 1 WHERE id % 3 = 0').run();
      db.exec(op.end === 'commit' ? 'COMMIT' : 'ROLLBACK');
      return;
    case 'savepoint':
      db.exec('BEGIN');
      insert.run(1, bytes(op.seed, op.size));
      db.exec('SAVEPOINT a');
      insert.run(2, bytes(op.seed + 1, op.size * 2));
      db.prepare('DELETE FROM t WHERE id % 2 = 0').run();
      db.exec('ROLLBACK TO a');
      db.exec('RELEASE a');
      insert.run(3, bytes(op.seed + 2, op.size));
      db.exec('COMMIT');
      return;
    case 'spill':
      // cache_size is tiny in these runs, so this transaction writes frames before it commits.
      db.exec('BEGIN');
      for (let i = 0; i < op.rows; i++) insert.run(op.seed + i, bytes(op.seed + i, op.size));
      db.prepare('UPDATE t SET v = ? WHERE id % 5 = 0').run(bytes(op.seed, op.size));
      db.exec(op.end === 'commit' ? 'COMMIT' : 'ROLLBACK');
      return;
    case 'failing':
      // A statement that fails half way: SQLite rolls back just that statement.
      assert.throws(() => db.exec(`INSERT INTO u(x) VALUES (${op.seed}), (${op.seed + 1}), (${op.seed})`), { code: 'SQLITE_CONSTRAINT_UNIQUE' });
      return;
    case 'vacuum':
      db.exec('VACUUM');
      return;
  }
}

interface Variant {
  pageSize: number;
  runs: number;
  /** false makes SQLite pad synced commits to the sector size: padding frames must not become transactions. */
  powersafeOverwrite: boolean;
}

async function property({ pageSize, runs, powersafeOverwrite }: Variant): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb(pageSize), { minLength: 1, maxLength: 18 }), fc.constantFrom(1, 3, 1000), async (ops, checkpointEvery) => {
      const dir = mkdtempSync(join(tmpdir(), 'walship-oracle-'));
      try {
        const replay = new Replay(join(dir, 'replay.db'));
        const db = await openDatabase(join(dir, 'src.db'), {
          pageSize,
          powersafeOverwrite,
          synchronous: powersafeOverwrite ? 'NORMAL' : 'FULL',
          onCommit: (txn: CommittedTransaction) => replay.apply(txn),
        });
        const compare = (when: string): void => {
          db.acknowledge(db.txid);
          const r = db.checkpoint();
          assert.ok(r.checkpointed || r.reason === 'empty', `checkpoint ${when}: ${JSON.stringify(r)}`);
          assert.equal(replay.lastTxid, db.txid, `replay is at the database's txid ${when}`);
          assert.equal(fileDigest(join(dir, 'replay.db')), fileDigest(join(dir, 'src.db')), `replayed file equals the database ${when}`);
        };
        try {
          db.pragma('cache_size = 8');
          db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB); CREATE INDEX t_k ON t(k); CREATE TABLE u(x INTEGER UNIQUE)');
          for (let i = 0; i < ops.length; i++) {
            runOp(db, ops[i]!);
            assert.equal(replay.lastTxid, db.txid, `every commit was emitted (op ${i} ${ops[i]!.kind})`);
            if ((i + 1) % checkpointEvery === 0) compare(`after op ${i} (${ops[i]!.kind})`);
          }
          compare('at the end');
        } finally {
          db.close();
        }
        assert.equal(nativeSqlite(join(dir, 'replay.db'), 'PRAGMA integrity_check'), 'ok');
        assert.equal(fileDigest(join(dir, 'replay.db')), fileDigest(join(dir, 'src.db')), 'replayed file equals the database after close');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: runs, verbose: 1 },
  );
}

const variants: Variant[] = [
  { pageSize: 512, runs: 25, powersafeOverwrite: true },
  { pageSize: 4096, runs: 20, powersafeOverwrite: true },
  { pageSize: 65536, runs: 8, powersafeOverwrite: true },
  { pageSize: 512, runs: 15, powersafeOverwrite: false },
  { pageSize: 4096, runs: 10, powersafeOverwrite: false },
];

for (const variant of variants) {
  const padding = variant.powersafeOverwrite ? '' : ', synchronous FULL with sector padding';
  test(`replaying emitted transactions reproduces the database byte for byte (page size ${variant.pageSize}${padding})`, async () => {
    await property(variant);
  });
}
