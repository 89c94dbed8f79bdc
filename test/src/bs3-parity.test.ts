import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, openDatabase, SqliteError, WalshipError, type CommittedTransaction } from '@walship/vfs';
import { Replay, fileDigest, nativeSqlite } from './util/replay.js';
import { loadOracle, type Bs3 } from './util/bs3-oracle.js';

// The methods added for better-sqlite3 parity, run side by side on better-sqlite3 itself (the
// oracle) and on walship's Database, must give the same results; and on a captured database they
// must never write outside capture.

const oracle = loadOracle();

await Database.ready();

function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'walship-bs3-'));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** The same script on any better-sqlite3-shaped database; returns everything it observed. */
async function script(db: any, dir: string, tag: string): Promise<unknown[]> {
  const out: unknown[] = [];
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL, data BLOB, big INTEGER)');
  db.function('twice', { deterministic: true }, (x: number) => x * 2);
  db.function('joinall', { varargs: true }, (...parts: unknown[]) => parts.join('|'));
  db.function('kind', { safeIntegers: true }, (x: unknown) => typeof x);
  db.aggregate('total', { start: 0, step: (acc: number, x: number) => acc + x, inverse: (acc: number, x: number) => acc - x, result: (acc: number) => acc * 10 });
  db.table('series', { columns: ['value'], *rows(from: number, to: number) { for (let i = from; i <= to; i++) yield [i]; } });
  const ins = db.prepare('INSERT INTO t (name, score, data, big) VALUES (@name, @score, @data, @big)');
  out.push(ins.run({ name: 'ada', score: 1.5, data: Buffer.from([1, 2, 3]), big: 9007199254740993n }));
  out.push(db.prepare('INSERT INTO t (name, score) SELECT ?, twice(value) FROM series(?, ?)').run(['v'], 1, 1));
  out.push(db.prepare('INSERT INTO t (name, score) SELECT \'n\' || value, twice(value) FROM series(2, 4)').run());
  out.push(db.prepare('SELECT * FROM t ORDER BY id').all());
  out.push(db.prepare('SELECT big FROM t WHERE id = 1').safeIntegers().pluck().get());
  out.push(db.prepare('SELECT joinall(1, \'a\', NULL), kind(7), kind(?)').raw().get(3n));
  out.push(db.prepare('SELECT total(score) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t').pluck().all());
  out.push(db.prepare('SELECT total(score) FROM t').pluck().get());
  out.push(db.prepare('SELECT t.name, score + 1 AS s FROM t WHERE id = ?').expand().get(1));
  out.push(db.prepare('SELECT name, score AS s, 1 AS one FROM t').columns());
  const bound = db.prepare('SELECT name FROM t WHERE id > ? ORDER BY id').bind(2);
  out.push(bound.pluck().all(), bound.reader, bound.readonly, db.prepare('DELETE FROM t WHERE 0').readonly);
  out.push(db.pragma('user_version', { simple: true }), db.inTransaction, db.memory, db.readonly);
  const err = (() => {
    try {
      ins.run({ name: 'ada', score: 0, data: null, big: 0 });
    } catch (e) {
      return e as { name: string; code: string };
    }
    return undefined;
  })();
  out.push(err?.name, err?.code);
  const kinds = (fn: () => unknown): string => {
    try {
      fn();
      return 'none';
    } catch (e) {
      return e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'RangeError' : e instanceof Error ? e.constructor.name : typeof e;
    }
  };
  out.push(
    kinds(() => db.prepare('SELECT 1; SELECT 2')),
    kinds(() => db.prepare('SELECT ?').get()),
    kinds(() => db.prepare('SELECT ?').get(new Date())),
    kinds(() => db.function('', () => 1)),
    kinds(() => bound.bind(1)),
  );
  const tx = db.transaction((n: number) => {
    db.prepare('INSERT INTO t (name) VALUES (?)').run(`tx${n}`);
    if (n === 2) throw new Error('rollback');
  });
  tx(1);
  out.push(kinds(() => tx.immediate(2)), db.prepare('SELECT count(*) FROM t').pluck().get());
  const serialized = db.serialize();
  const copy = new (db.constructor as Bs3)(serialized);
  out.push(copy.prepare('SELECT name FROM t ORDER BY id').pluck().all(), copy.memory);
  copy.close();
  const progress: unknown[] = [];
  const result = await db.backup(join(dir, `${tag}-backup.db`), { progress: (p: unknown) => void progress.push(p) });
  out.push(result.remainingPages, result.totalPages > 0);
  const restored = new (db.constructor as Bs3)(join(dir, `${tag}-backup.db`), { readonly: true, fileMustExist: true });
  out.push(restored.prepare('SELECT name FROM t ORDER BY id').pluck().all(), restored.readonly);
  restored.close();
  out.push(db.close() === db, db.open);
  return out;
}

test('the better-sqlite3 methods give better-sqlite3\'s results', { skip: oracle.skip }, async () => {
  await withDir(async (dir) => {
    const expected = await script(new oracle.Bs3!(join(dir, 'oracle.db')), dir, 'oracle');
    const actual = await script(new Database(join(dir, 'walship.db')), dir, 'walship');
    assert.deepEqual(actual, expected);
  });
});

test('SqliteError has better-sqlite3\'s shape and stays a WalshipError', () => {
  const e = new SqliteError('boom', 'SQLITE_ERROR');
  assert.equal(e.message, 'boom');
  assert.equal(e.code, 'SQLITE_ERROR');
  assert.equal(e.name, 'SqliteError');
  assert.ok(e instanceof Error && e instanceof WalshipError && e instanceof SqliteError);
  assert.equal(Database.SqliteError, SqliteError);
  assert.throws(() => new SqliteError('boom', 1 as never), TypeError);
  const db = new Database(':memory:');
  try {
    assert.throws(() => db.loadExtension('/lib/x.so'), (x: unknown) => x instanceof WalshipError && x.code === 'ERR_UNSUPPORTED');
    assert.deepEqual(Object.keys(db), [], 'no internals are enumerable');
    assert.deepEqual(Object.keys(db.prepare('SELECT 1')), ['source', 'reader']);
  } finally {
    db.close();
  }
});

test('functions, aggregates, virtual tables, backup and serialize never write outside capture', async () => {
  await withDir(async (dir) => {
    const replay = new Replay(join(dir, 'replay.db'));
    const txids: number[] = [];
    const db = await openDatabase(join(dir, 'src.db'), {
      onCommit: (txn: CommittedTransaction) => {
        txids.push(txn.txid);
        replay.apply(txn);
      },
    });
    try {
      db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n REAL)');
      db.function('label', { deterministic: true }, (i: number) => `row-${i}`);
      db.aggregate('acc', { start: 0, step: (a: number, x: number) => a + x });
      db.table('nums', { columns: ['i'], *rows(count: number) { for (let i = 1; i <= count; i++) yield [i]; } });
      db.prepare('INSERT INTO t (v, n) SELECT label(i), i FROM nums(?)').run(50);
      db.prepare('UPDATE t SET n = (SELECT acc(u.id) FROM t AS u WHERE u.id <= t.id)').run();
      db.exec("CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('searchable text')");
      const before = db.txid;
      const bytes = db.serialize();
      assert.ok(bytes.length > 0);
      await db.backup(join(dir, 'backup.db'));
      assert.equal(db.txid, before, 'serialize and backup commit nothing');
      assert.deepEqual(txids, Array.from({ length: txids.length }, (_, i) => txids[0]! + i), 'txids stay contiguous');
      db.acknowledge(db.txid);
      assert.ok(db.checkpoint().checkpointed);
      assert.equal(replay.lastTxid, db.txid);
      assert.equal(fileDigest(join(dir, 'replay.db')), fileDigest(join(dir, 'src.db')), 'the replayed pages are the database');
      assert.equal(db.prepare('SELECT sum(n) FROM t').pluck().get(), 22100, 'sum over k of k(k+1)/2, k = 1..50');
    } finally {
      db.close();
    }
    assert.equal(nativeSqlite(join(dir, 'replay.db'), 'SELECT count(*), max(v), sum(n) FROM t'), '50|row-9|22100.0');
    assert.equal(nativeSqlite(join(dir, 'backup.db'), 'SELECT count(*) FROM t'), '50');
  });
});

test('a captured database enforces foreign keys, as better-sqlite3 does by default', async () => {
  await withDir(async (dir) => {
    const db = await openDatabase(join(dir, 'fk.db'), { onCommit: () => {} });
    try {
      db.exec('CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) ON DELETE CASCADE)');
      db.prepare('INSERT INTO parent VALUES (?)').run(1n);
      db.prepare('INSERT INTO child VALUES (?, ?)').run(1n, 1n);
      assert.throws(() => db.prepare('INSERT INTO child VALUES (?, ?)').run(2n, 99n), { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });
      db.prepare('DELETE FROM parent WHERE id = ?').run(1n);
      assert.equal(db.prepare('SELECT count(*) FROM child').pluck().get(), 0, 'ON DELETE CASCADE ran');
    } finally {
      db.close();
    }
  });
});
