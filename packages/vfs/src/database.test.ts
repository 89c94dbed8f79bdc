import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Database, type DatabaseOptions } from './database.js';
import { SqliteError, WalshipError } from './errors.js';
import { loadSqlite, type Sqlite3 } from './sqlite.js';

const sqlite3: Sqlite3 = await loadSqlite();
const { capi, wasm } = sqlite3;

/** Opens a fresh `:memory:` connection with the raw C API and wraps it. */
function openMemory(options?: DatabaseOptions): Database {
  const pp = wasm.alloc(4);
  try {
    const rc = capi.sqlite3_open_v2(':memory:', pp, capi.SQLITE_OPEN_READWRITE | capi.SQLITE_OPEN_CREATE, 0);
    const pDb = wasm.peekPtr(pp) as number;
    if (rc !== 0) throw new Error(`sqlite3_open_v2 failed: ${rc}`);
    return new Database({ sqlite3, pDb, filename: ':memory:' }, options);
  } finally {
    wasm.dealloc(pp);
  }
}

/** SQLite's MEMORY_USED counter: every allocation SQLite still holds. */
function memoryUsed(): bigint {
  const p = wasm.alloc(16);
  try {
    capi.sqlite3_status64(capi.SQLITE_STATUS_MEMORY_USED, p, p + 8, 0);
    return wasm.peek64(p) as bigint;
  } finally {
    wasm.dealloc(p);
  }
}

function withDb(fn: (db: Database) => void): void {
  const db = openMemory();
  try {
    fn(db);
  } finally {
    db.close();
  }
}

function throwsCode(fn: () => unknown, code: string, extra?: (e: WalshipError) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WalshipError, `expected a WalshipError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    extra?.(e);
    return true;
  });
}

test('run / get / all / iterate', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)');
    const ins = db.prepare('INSERT INTO t (name) VALUES (?)');
    assert.equal(ins.reader, false);
    assert.equal(ins.source, 'INSERT INTO t (name) VALUES (?)');
    assert.deepEqual(ins.run('a'), { changes: 1, lastInsertRowid: 1 });
    assert.deepEqual(ins.run('b'), { changes: 1, lastInsertRowid: 2 });
    ins.run('c');

    const one = db.prepare('SELECT id, name FROM t WHERE id = ?');
    assert.equal(one.reader, true);
    assert.deepEqual(one.get(2), { id: 2, name: 'b' });
    assert.equal(one.get(99), undefined);

    const all = db.prepare('SELECT * FROM t ORDER BY id');
    assert.deepEqual(all.all(), [
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
      { id: 3, name: 'c' },
    ]);
    assert.deepEqual([...all.iterate()].map((r) => r.name), ['a', 'b', 'c']);
    assert.deepEqual(db.prepare('SELECT * FROM t WHERE id > 10').all(), []);

    const upd = db.prepare('UPDATE t SET name = name || ?');
    assert.equal(upd.run('!').changes, 3);
    // Rows share one shape, keys in column order.
    const rows = all.all();
    assert.deepEqual(Object.keys(rows[0]!), ['id', 'name']);
    assert.equal(Object.getPrototypeOf(rows[0]), Object.prototype);

    // INSERT ... RETURNING through run() still counts the change.
    const ret = db.prepare('INSERT INTO t (name) VALUES (?) RETURNING id');
    assert.equal(ret.reader, true);
    assert.deepEqual(ret.run('d'), { changes: 1, lastInsertRowid: 4 });
    assert.deepEqual(ret.get('e'), { id: 5 });
  });
});

test('positional, numbered, named and mixed parameters', () => {
  withDb((db) => {
    assert.deepEqual(db.prepare('SELECT ? AS a, ? AS b').get(1, 'x'), { a: 1, b: 'x' });
    assert.deepEqual(db.prepare('SELECT ? AS a, ? AS b').get([1, 'x']), { a: 1, b: 'x' });
    assert.deepEqual(db.prepare('SELECT ?2 AS a, ?1 AS b').get('first', 'second'), { a: 'second', b: 'first' });
    const named = db.prepare('SELECT :x AS x, @y AS y, $z AS z, :x AS x2');
    assert.deepEqual(named.get({ x: 1, y: 'two', z: null }), { x: 1, y: 'two', z: null, x2: 1 });
    // Extra keys are ignored, as in better-sqlite3.
    assert.deepEqual(named.get({ x: 1, y: 2, z: 3, unused: 4 }), { x: 1, y: 2, z: 3, x2: 1 });
    const nullProto = Object.assign(Object.create(null) as Record<string, number>, { x: 7, y: 8, z: 9 });
    assert.deepEqual(named.get(nullProto), { x: 7, y: 8, z: 9, x2: 7 });

    const mixed = db.prepare('SELECT ? AS a, :n AS n, ? AS b');
    assert.deepEqual(mixed.get(1, 2, { n: 'named' }), { a: 1, n: 'named', b: 2 });

    throwsCode(() => named.get({ x: 1, y: 2 }), 'ERR_BIND_NAMED', (e) => assert.equal(e.details.parameter, 'z'));
    throwsCode(() => named.get(1, 2, 3), 'ERR_BIND_COUNT');
    throwsCode(() => named.get(), 'ERR_BIND_NAMED');
    throwsCode(() => db.prepare('SELECT ? AS a').get(), 'ERR_BIND_COUNT', (e) => {
      assert.equal(e.details.expected, 1);
      assert.equal(e.details.got, 0);
    });
    throwsCode(() => db.prepare('SELECT ? AS a').get(1, 2), 'ERR_BIND_COUNT');
    throwsCode(() => db.prepare('SELECT 1 AS a').get(1), 'ERR_BIND_COUNT');
    // An object is a bag of named parameters (better-sqlite3's reading): the positional value is then missing.
    throwsCode(() => db.prepare('SELECT ? AS a').get({ a: 1 } as never), 'ERR_BIND_COUNT');
    // undefined binds NULL, as in better-sqlite3.
    assert.deepEqual(db.prepare('SELECT ? AS a').get(undefined as never), { a: null });
    throwsCode(() => db.prepare('SELECT ? AS a').get((() => 1) as never), 'ERR_BIND_TYPE');
    throwsCode(() => db.prepare('SELECT ? AS a').get(new Date() as never), 'ERR_BIND_TYPE');
  });
});

test('value round trips and storage classes', () => {
  withDb((db) => {
    const echo = db.prepare('SELECT ? AS v, typeof(?1) AS t');
    // Every JavaScript number binds as a REAL (better-sqlite3 does the same); bigints bind as INTEGER.
    const cases: [unknown, unknown, string][] = [
      [0, 0, 'real'],
      [-0, -0, 'real'],
      [42, 42, 'real'],
      [-2147483648, -2147483648, 'real'],
      [2147483648, 2147483648, 'real'],
      [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 'real'],
      [Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 'real'],
      [1.5, 1.5, 'real'],
      [-0.25, -0.25, 'real'],
      [2 ** 60, 2 ** 60, 'real'],
      [Infinity, Infinity, 'real'],
      [123n, 123, 'integer'],
      [true, 1, 'integer'],
      [false, 0, 'integer'],
      [null, null, 'null'],
      ['', '', 'text'],
      ['plain ascii', 'plain ascii', 'text'],
      ['héllo wörld', 'héllo wörld', 'text'],
      ['emoji 😀🚀 and 中文', 'emoji 😀🚀 and 中文', 'text'],
      ['nul\u0000inside\u0000text', 'nul\u0000inside\u0000text', 'text'],
      ['x'.repeat(63) + 'é', 'x'.repeat(63) + 'é', 'text'],
      ['long ' + 'ünïcödé 😀 '.repeat(500), 'long ' + 'ünïcödé 😀 '.repeat(500), 'text'],
    ];
    for (const [input, expected, type] of cases) {
      assert.deepEqual(echo.get(input as never), { v: expected, t: type }, `round trip of ${String(input).slice(0, 40)}`);
    }

    // Blobs: Uint8Array and Buffer in, fresh Buffer copies out (a Buffer is a Uint8Array).
    const blob = echo.get(new Uint8Array([0, 1, 2, 255]))!;
    assert.equal(blob.t, 'blob');
    assert.ok(blob.v instanceof Uint8Array);
    assert.deepEqual([...(blob.v as Uint8Array)], [0, 1, 2, 255]);
    assert.notEqual((blob.v as Uint8Array).buffer, (wasm as unknown as { memory: { buffer: ArrayBuffer } }).memory.buffer);
    const empty = echo.get(new Uint8Array(0))!;
    assert.equal(empty.t, 'blob');
    assert.deepEqual(empty.v, Buffer.alloc(0), "blobs read back as Buffer (better-sqlite3 does the same)");
    const buf = echo.get(Buffer.from('buffer bytes'))!;
    assert.deepEqual(Buffer.from(buf.v as Uint8Array).toString(), 'buffer bytes');
    const sub = new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 4);
    assert.deepEqual([...(echo.get(sub)!.v as Uint8Array)], [8, 7, 6]);

    // Values larger than the scratch buffer (bound via an owned allocation).
    const big = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const bigOut = echo.get(big)!.v as Uint8Array;
    assert.equal(bigOut.length, big.length);
    assert.ok(Buffer.from(bigOut).equals(Buffer.from(big)));
    const bigText = 'ab€'.repeat(500_000);
    assert.equal(echo.get(bigText)!.v, bigText);

    // Stored and read back through a table.
    db.exec('CREATE TABLE v (i INTEGER, r REAL, s TEXT, b BLOB, n)');
    db.prepare('INSERT INTO v VALUES (?, ?, ?, ?, ?)').run(7, 0.5, 'str', new Uint8Array([1]), null);
    assert.deepEqual(db.prepare('SELECT * FROM v').get(), { i: 7, r: 0.5, s: 'str', b: Buffer.from([1]), n: null });
  });
});

test('big integers: safeIntegers, int64 bounds, overflow and range errors', () => {
  withDb((db) => {
    const MAX = 9223372036854775807n;
    const MIN = -9223372036854775808n;
    const echo = db.prepare('SELECT ? AS v');
    echo.safeIntegers();
    assert.equal(echo.get(MAX)!.v, MAX);
    assert.equal(echo.get(MIN)!.v, MIN);
    assert.equal(echo.get(5n)!.v, 5n);
    assert.equal(echo.get(5)!.v, 5, 'numbers bind as REAL, so they read back as numbers');
    assert.equal(echo.get(1.5)!.v, 1.5, 'floats stay numbers');
    assert.equal(echo.get(BigInt(Number.MAX_SAFE_INTEGER) + 2n)!.v, 9007199254740993n);
    echo.safeIntegers(false);
    assert.equal(echo.get(5)!.v, 5);

    throwsCode(() => echo.get(MAX + 1n), 'ERR_BIND_RANGE');
    throwsCode(() => echo.get(MIN - 1n), 'ERR_BIND_RANGE');

    // Unsafe integers without safeIntegers: the nearest number, as better-sqlite3 returns them by default.
    assert.equal(echo.get(2n ** 53n + 1n)!.v, 2 ** 53);
    assert.equal(echo.get(-(2n ** 53n))!.v, -(2 ** 53));
    assert.deepEqual(echo.all(MAX), [{ v: 9223372036854775807 }]);
    assert.equal(echo.get(2n ** 53n - 1n)!.v, Number.MAX_SAFE_INTEGER);
    assert.equal(echo.get(-(2n ** 53n) + 1n)!.v, -Number.MAX_SAFE_INTEGER);

    db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, x)');
    const ins = db.prepare('INSERT INTO big (id, x) VALUES (?, ?)');
    assert.deepEqual(ins.run(2n ** 40n, 1), { changes: 1, lastInsertRowid: 2 ** 40 });
    ins.safeIntegers();
    assert.deepEqual(ins.run(MAX, 1), { changes: 1, lastInsertRowid: MAX });
    const rows = db.prepare('SELECT id FROM big ORDER BY id').safeIntegers().pluck().all();
    assert.deepEqual(rows, [2n ** 40n, MAX]);
    // raw() rows honour safeIntegers too.
    assert.deepEqual(db.prepare('SELECT id, x FROM big WHERE id = ?').raw().safeIntegers().get(MAX), [MAX, 1], 'x was bound as a REAL');
  });
});

test('pluck and raw', () => {
  withDb((db) => {
    db.exec("CREATE TABLE t (a, b); INSERT INTO t VALUES (1, 'x'), (2, 'y')");
    const s = db.prepare('SELECT a, b FROM t ORDER BY a');
    assert.deepEqual(s.pluck().all(), [1, 2]);
    assert.equal(s.get(), 1);
    assert.deepEqual([...s.iterate()], [1, 2]);
    assert.deepEqual(s.raw().all(), [
      [1, 'x'],
      [2, 'y'],
    ]);
    assert.deepEqual(s.pluck().get(), 1, 'pluck() turns raw() off');
    assert.deepEqual(s.pluck(false).get(), { a: 1, b: 'x' });
    assert.deepEqual(s.raw(true).raw(false).get(), { a: 1, b: 'x' });
    assert.deepEqual(s.raw().pluck(false).get(), [1, 'x'], 'pluck(false) leaves raw() alone');
    assert.equal(db.prepare('SELECT count(*) FROM t').pluck().get<number>(), 2);
    throwsCode(() => db.prepare('DELETE FROM t').pluck(), 'ERR_NOT_READER');
    throwsCode(() => db.prepare('DELETE FROM t').raw(), 'ERR_NOT_READER');
    throwsCode(() => db.prepare('DELETE FROM t').get(), 'ERR_NOT_READER');
    throwsCode(() => db.prepare('DELETE FROM t').all(), 'ERR_NOT_READER');
    throwsCode(() => db.prepare('DELETE FROM t').iterate(), 'ERR_NOT_READER');
  });
});

test('columns(), odd column names and re-prepare after a schema change', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blobby BLOB)');
    assert.deepEqual(db.prepare('SELECT id, name AS n, 1 + 1 AS expr FROM t').columns(), [
      { name: 'id', column: 'id', table: 't', database: 'main', type: 'INTEGER' },
      { name: 'n', column: 'name', table: 't', database: 'main', type: 'TEXT' },
      { name: 'expr', column: null, table: null, database: null, type: null },
    ]);
    const odd = db.prepare(`SELECT 1 AS "__proto__", 2 AS "a""b", 3 AS "", 4 AS a, 5 AS a, 6 AS "constructor"`).get()!;
    assert.equal(Object.getPrototypeOf(odd), Object.prototype);
    assert.ok(Object.prototype.hasOwnProperty.call(odd, '__proto__'));
    assert.equal(Object.getOwnPropertyDescriptor(odd, '__proto__')!.value, 1);
    assert.equal(odd['a"b'], 2);
    assert.equal(odd[''], 3);
    assert.equal(odd.a, 5, 'the last duplicate wins');
    assert.equal(odd.constructor, 6);

    db.exec("INSERT INTO t (name) VALUES ('x')");
    const star = db.prepare('SELECT * FROM t');
    assert.deepEqual(star.get(), { id: 1, name: 'x', blobby: null });
    db.exec('ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 9');
    assert.deepEqual(star.get(), { id: 1, name: 'x', blobby: null, extra: 9 });
    assert.deepEqual(star.all(), [{ id: 1, name: 'x', blobby: null, extra: 9 }]);
  });
});

test('transactions: commit, rollback on throw, nesting, variants', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (x INTEGER)');
    const ins = db.prepare('INSERT INTO t VALUES (?)');
    const count = db.prepare('SELECT count(*) FROM t').pluck();

    const insertMany = db.transaction(function (this: unknown, xs: number[]) {
      assert.equal(db.inTransaction, true);
      for (const x of xs) ins.run(x);
      return { self: this, n: xs.length };
    });
    assert.equal(typeof insertMany.deferred, 'function');
    assert.equal(typeof (insertMany.immediate as unknown as { exclusive: unknown }).exclusive, 'function');
    const ctx = { me: 1 };
    assert.deepEqual(insertMany.call(ctx, [1, 2, 3]), { self: ctx, n: 3 });
    assert.equal(db.inTransaction, false);
    assert.equal(count.get(), 3);

    const failing = db.transaction((x: number) => {
      ins.run(x);
      throw new Error('boom');
    });
    assert.throws(() => failing(4), /boom/);
    assert.equal(db.inTransaction, false);
    assert.equal(count.get(), 3, 'rolled back');

    // SQLite errors inside also roll back.
    db.exec('CREATE UNIQUE INDEX tx ON t (x)');
    assert.throws(() => insertMany([10, 11, 1]), (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_CONSTRAINT_UNIQUE');
    assert.equal(count.get(), 3);

    // Nested calls use savepoints: an inner failure caught by the outer function only undoes the inner part.
    const inner = db.transaction((x: number, fail: boolean) => {
      ins.run(x);
      if (fail) throw new Error('inner');
    });
    const outer = db.transaction(() => {
      ins.run(100);
      inner(101, false);
      assert.throws(() => inner(102, true), /inner/);
      assert.equal(db.inTransaction, true);
      inner.immediate(103, false); // the variant is irrelevant when nested
      const deeper = db.transaction(() => {
        inner(104, false);
        throw new Error('deeper');
      });
      assert.throws(() => deeper(), /deeper/);
    });
    outer();
    assert.deepEqual(db.prepare('SELECT x FROM t WHERE x >= 100 ORDER BY x').pluck().all(), [100, 101, 103]);

    // An outer failure undoes committed-looking inner savepoints.
    assert.throws(
      () =>
        db.transaction(() => {
          inner(200, false);
          throw new Error('outer');
        })(),
      /outer/,
    );
    assert.equal(db.prepare('SELECT count(*) FROM t WHERE x = 200').pluck().get(), 0);

    // immediate/exclusive begin the matching transaction kind.
    for (const variant of ['immediate', 'exclusive'] as const) {
      const seen: boolean[] = [];
      insertMany[variant]([]);
      db.transaction(() => {
        seen.push(db.inTransaction);
        ins.run(variant === 'immediate' ? 300 : 301);
      })[variant]();
      assert.deepEqual(seen, [true]);
    }
    assert.equal(db.prepare('SELECT count(*) FROM t WHERE x IN (300, 301)').pluck().get(), 2);

    // A BEGIN while already in a (manual) transaction is not attempted: savepoint instead.
    db.exec('BEGIN');
    insertMany.exclusive([400]);
    assert.equal(db.inTransaction, true);
    db.exec('ROLLBACK');
    assert.equal(db.prepare('SELECT count(*) FROM t WHERE x = 400').pluck().get(), 0);

    // Async functions are refused and rolled back.
    const asyncTx = db.transaction(async () => {
      ins.run(500);
    });
    throwsCode(() => asyncTx(), 'ERR_TRANSACTION_ASYNC');
    assert.equal(db.inTransaction, false);
    assert.equal(db.prepare('SELECT count(*) FROM t WHERE x = 500').pluck().get(), 0);

    throwsCode(() => db.transaction(42 as never), 'ERR_INVALID_ARG');
  });
});

test('pragma: rows, simple, and pragmas without results', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (a INTEGER NOT NULL, b TEXT)');
    assert.equal(db.pragma('user_version', { simple: true }), 0);
    assert.deepEqual(db.pragma('user_version = 7'), []);
    assert.equal(db.pragma('user_version = 8', { simple: true }), undefined);
    assert.deepEqual(db.pragma('user_version'), [{ user_version: 8 }]);
    const info = db.pragma('table_info(t)') as { name: string; notnull: number }[];
    assert.deepEqual(
      info.map((c) => [c.name, c.notnull]),
      [
        ['a', 1],
        ['b', 0],
      ],
    );
    assert.equal(db.pragma('journal_mode', { simple: true }), 'memory');
    throwsCode(() => db.pragma('user_version; DROP TABLE t'), 'ERR_MULTIPLE_STATEMENTS');
  });
});

test('exec runs every statement', () => {
  withDb((db) => {
    const ret = db.exec(`
      -- a comment
      CREATE TABLE a (x);
      /* block */ INSERT INTO a VALUES (1); INSERT INTO a VALUES ('two');;
      SELECT * FROM a; -- rows are discarded
      CREATE TABLE b (y); INSERT INTO b SELECT x FROM a
      ;
    `);
    assert.equal(ret, db);
    assert.deepEqual(db.prepare('SELECT y FROM b ORDER BY rowid').pluck().all(), [1, 'two']);
    db.exec('');
    db.exec('  -- nothing  ');

    // A failing statement stops the script; earlier ones stay applied.
    assert.throws(
      () => db.exec("INSERT INTO a VALUES (3); INSERT INTO nope VALUES (1); INSERT INTO a VALUES ('never')"),
      (e: unknown) => {
        assert.ok(e instanceof SqliteError);
        assert.equal(e.code, 'SQLITE_ERROR');
        assert.match(e.message, /no such table: nope/);
        assert.match(String(e.details.sql), /INSERT INTO nope/);
        return true;
      },
    );
    assert.deepEqual(db.prepare('SELECT x FROM a ORDER BY rowid').pluck().all(), [1, 'two', 3]);
  });
});

test('SQLite errors carry the extended code, errno, message and sql', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0))');
    db.prepare('INSERT INTO t (id, email) VALUES (?, ?)').run(1, 'a@x');
    const dup = db.prepare('INSERT INTO t (id, email) VALUES (?, ?)');
    assert.throws(
      () => dup.run(2, 'a@x'),
      (e: unknown) => {
        assert.ok(e instanceof SqliteError);
        assert.equal(e.name, 'SqliteError');
        assert.equal(e.code, 'SQLITE_CONSTRAINT_UNIQUE');
        assert.equal(e.errno, 2067);
        assert.equal(e.message, 'UNIQUE constraint failed: t.email');
        assert.deepEqual(e.details, { sql: 'INSERT INTO t (id, email) VALUES (?, ?)' });
        return true;
      },
    );
    // The failed statement was reset: it runs again right away.
    assert.equal(dup.run(2, 'b@x').changes, 1);
    assert.throws(() => dup.run(1, 'c@x'), (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' && e.errno === 1555);
    assert.throws(
      () => db.prepare('UPDATE t SET n = -1').run(),
      (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_CONSTRAINT_CHECK' && e.errno === 275,
    );
    assert.throws(
      () => db.prepare('SELEKT 1'),
      (e: unknown) => {
        assert.ok(e instanceof SqliteError);
        assert.equal(e.code, 'SQLITE_ERROR');
        assert.equal(e.errno, 1);
        assert.match(e.message, /syntax error/);
        assert.equal(e.details.sql, 'SELEKT 1');
        return true;
      },
    );
    assert.throws(() => db.prepare('SELECT * FROM missing'), (e: unknown) => e instanceof SqliteError && /no such table/.test(e.message));
    // Runtime errors from step (not prepare).
    assert.throws(
      () => db.prepare("SELECT json_extract('not json', '$')").get(),
      (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_ERROR' && /JSON/i.test(e.message),
    );
  });
});

test('prepare accepts exactly one statement', () => {
  withDb((db) => {
    throwsCode(() => db.prepare('SELECT 1; SELECT 2'), 'ERR_MULTIPLE_STATEMENTS', (e) => assert.equal(e.details.sql, 'SELECT 1; SELECT 2'));
    throwsCode(() => db.prepare('SELECT 1; garbage'), 'ERR_MULTIPLE_STATEMENTS');
    throwsCode(() => db.prepare(''), 'ERR_NO_STATEMENT');
    throwsCode(() => db.prepare('  -- only a comment'), 'ERR_NO_STATEMENT');
    assert.equal(db.prepare('SELECT 1 AS x;').get()!.x, 1);
    assert.equal(db.prepare('SELECT 1 AS x ;  -- trailing comment\n /* block */ ;; ').get()!.x, 1);
    assert.equal(db.prepare('SELECT 2 AS x /* unterminated').get()!.x, 2);
    assert.equal(db.prepare("SELECT 'a;b' AS x").get()!.x, 'a;b');
  });
});

test('iterate: lazy, early break resets, busy while iterating', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3), (4)');
    const s = db.prepare('SELECT x FROM t ORDER BY x');
    const seen: number[] = [];
    for (const row of s.iterate()) {
      seen.push(row.x as number);
      throwsCode(() => s.get(), 'ERR_STATEMENT_BUSY');
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, [1, 2]);
    // The break reset the statement: it can run again, and it no longer holds a read on the table
    // (DROP TABLE fails with SQLITE_LOCKED while a statement is mid-step on it).
    assert.deepEqual(s.pluck().all(), [1, 2, 3, 4]);
    s.pluck(false);
    const it = s.iterate();
    assert.deepEqual(it.next(), { done: false, value: { x: 1 } });
    assert.throws(() => db.exec('DROP TABLE t'), (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_LOCKED');
    assert.deepEqual(it.return!(), { done: true, value: undefined });
    assert.deepEqual(it.next(), { done: true, value: undefined });

    // Exhaustion resets too; a stale iterator does not step a newer execution.
    const a = s.iterate();
    assert.equal([...a].length, 4);
    const b = s.iterate();
    assert.deepEqual(a.next(), { done: true, value: undefined });
    assert.deepEqual(b.next().value, { x: 1 });
    b.return!();

    // An exception inside the loop body (for-of calls return()) frees the statement.
    assert.throws(() => {
      for (const _ of s.iterate()) throw new Error('stop');
    }, /stop/);
    assert.equal(s.all().length, 4);

    // Errors while reading a row reset and release the statement.
    db.exec('INSERT INTO t VALUES (9223372036854775807)');
    db.function('boom', (x: unknown) => {
      if (x === 9223372036854775807) throw new Error('boom');
      return x;
    });
    const big = db.prepare('SELECT boom(x) AS x FROM t ORDER BY x DESC');
    const bit = big.iterate();
    assert.throws(() => bit.next(), /boom/);
    assert.deepEqual(bit.next(), { done: true, value: undefined });
    db.prepare('SELECT x FROM t ORDER BY x DESC').pluck().get();
    assert.equal(db.prepare('SELECT x FROM t ORDER BY x DESC').safeIntegers().pluck().get(), 9223372036854775807n);
    db.exec('DROP TABLE t');
  });
});

test('close: onClose first, finalizes statements, idempotent, later use throws ERR_DB_CLOSED', () => {
  const warm = openMemory();
  warm.close();
  const before = memoryUsed();

  let calls = 0;
  let openDuringOnClose: boolean | undefined;
  let countDuringOnClose: unknown;
  const db = openMemory({
    onClose: () => {
      calls++;
      openDuringOnClose = db.open;
      countDuringOnClose = db.prepare('SELECT count(*) FROM t').pluck().get();
      db.close(); // re-entrant close is ignored
    },
  });
  assert.equal(db.name, ':memory:');
  assert.equal(db.open, true);
  db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
  const stmts = [db.prepare('SELECT x FROM t'), db.prepare('INSERT INTO t VALUES (?)'), db.prepare('SELECT 1 AS one')];
  const it = stmts[0]!.iterate();
  it.next();
  db.transaction(() => stmts[1]!.run(2))();
  db.exec('BEGIN');
  stmts[1]!.run(3);

  db.close();
  assert.equal(calls, 1);
  assert.equal(openDuringOnClose, true);
  assert.equal(countDuringOnClose, 3);
  assert.equal(db.open, false);
  assert.equal(db.inTransaction, false);
  // Every statement was finalized, so sqlite3_close_v2 really closed (no zombie connection left).
  assert.equal(memoryUsed(), before);

  db.close();
  assert.equal(calls, 1, 'close() is idempotent');

  throwsCode(() => db.prepare('SELECT 1'), 'ERR_DB_CLOSED');
  throwsCode(() => db.exec('SELECT 1'), 'ERR_DB_CLOSED');
  throwsCode(() => db.pragma('user_version'), 'ERR_DB_CLOSED');
  throwsCode(() => db.transaction(() => 1)(), 'ERR_DB_CLOSED');
  throwsCode(() => stmts[1]!.run(4), 'ERR_DB_CLOSED');
  throwsCode(() => stmts[0]!.get(), 'ERR_DB_CLOSED');
  throwsCode(() => stmts[0]!.all(), 'ERR_DB_CLOSED');
  throwsCode(() => stmts[2]!.iterate(), 'ERR_DB_CLOSED');
  throwsCode(() => stmts[2]!.columns(), 'ERR_DB_CLOSED');
  throwsCode(() => it.next(), 'ERR_DB_CLOSED');
  assert.deepEqual(it.return!(), { done: true, value: undefined });
});

test('close still closes when onClose throws', () => {
  const db = openMemory({
    onClose: () => {
      throw new Error('owner failed');
    },
  });
  assert.throws(() => db.close(), /owner failed/);
  assert.equal(db.open, false);
  db.close();
});

test('authorizer option', () => {
  const actions: number[] = [];
  const db = openMemory({
    authorizer: (action, arg1) => {
      actions.push(action);
      if (action === capi.SQLITE_DELETE && arg1 === 'locked') return capi.SQLITE_DENY;
      if (action === capi.SQLITE_READ && arg1 === 'explode') throw new Error('authorizer bug');
      return capi.SQLITE_OK;
    },
  });
  try {
    db.exec('CREATE TABLE locked (x); CREATE TABLE explode (x)');
    assert.ok(actions.includes(capi.SQLITE_CREATE_TABLE));
    db.prepare('INSERT INTO locked VALUES (1)').run();
    assert.throws(
      () => db.prepare('DELETE FROM locked'),
      (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_AUTH' && e.errno === 23,
    );
    assert.throws(
      () => db.prepare('SELECT x FROM explode'),
      (e: unknown) => e instanceof SqliteError && e.code === 'SQLITE_AUTH' && e.cause instanceof Error && e.cause.message === 'authorizer bug',
    );
    assert.equal(db.prepare('SELECT count(*) FROM locked').pluck().get(), 1);
  } finally {
    db.close();
  }
});

test('many statements and large values survive wasm memory growth', () => {
  withDb((db) => {
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, b BLOB)');
    const ins = db.prepare('INSERT INTO t (s, b) VALUES (?, ?)');
    const get = db.prepare('SELECT s, b FROM t WHERE id = ?');
    const payload = new Uint8Array(256 * 1024).fill(7);
    db.transaction(() => {
      for (let i = 0; i < 200; i++) ins.run(`row ${i} ✓`, payload);
    })();
    for (const id of [1, 100, 200]) {
      const row = get.get(id)!;
      assert.equal(row.s, `row ${id - 1} ✓`);
      assert.equal((row.b as Uint8Array).length, payload.length);
      assert.equal((row.b as Uint8Array)[payload.length - 1], 7);
    }
  });
});

test('large bound values are released after the statement runs', () => {
  withDb((db) => {
    const s = db.prepare('SELECT length(?) AS n');
    s.get('warm up');
    const before = memoryUsed();
    assert.equal(s.get(new Uint8Array(2_000_000))!.n, 2_000_000);
    assert.equal(memoryUsed(), before);
    assert.equal(s.get('é'.repeat(1_000_000))!.n, 1_000_000);
    assert.equal(memoryUsed(), before);
    const it = s.iterate(new Uint8Array(1_500_000));
    assert.deepEqual([...it], [{ n: 1_500_000 }]);
    assert.equal(memoryUsed(), before);
  });
});

test('run().changes: 0 for statements that change nothing, as better-sqlite3 reports', () => {
  withDb((db) => {
    assert.equal(db.prepare('CREATE TABLE t (a)').run().changes, 0);
    assert.equal(db.prepare('INSERT INTO t VALUES (1), (2), (3)').run().changes, 3);
    // sqlite3_changes() still says 3 here: the last INSERT/UPDATE/DELETE's count.
    assert.equal(db.prepare('SELECT * FROM t').run().changes, 0);
    assert.equal(db.prepare('CREATE INDEX ti ON t (a)').run().changes, 0);
    assert.equal(db.prepare('UPDATE t SET a = a WHERE a > 5').run().changes, 0);
    assert.equal(db.prepare('UPDATE t SET a = a + 1 WHERE a > 1').run().changes, 2);
    assert.equal(db.prepare('DELETE FROM t').run().changes, 3);
  });
});

test('close() with an unfinished iterate() ends it and closes; the iterator then throws ERR_DB_CLOSED', () => {
  let checkpointed = false;
  const db = openMemory({ onClose: () => void (checkpointed = true) });
  db.exec('CREATE TABLE t (a); INSERT INTO t VALUES (1), (2), (3)');
  const it = db.prepare('SELECT a FROM t').iterate();
  assert.deepEqual(it.next().value, { a: 1 });
  db.close();
  assert.equal(checkpointed, true);
  assert.equal(db.open, false);
  assert.throws(() => it.next(), (e: unknown) => e instanceof WalshipError && e.code === 'ERR_DB_CLOSED');
});

test('close finalizes only its own statements: an FTS5 table (which owns prepared statements) closes cleanly', () => {
  // Finalizing every statement of the connection freed FTS5's statements, which FTS5 frees again
  // when its table disconnects: a double free that surfaced as "memory access out of bounds".
  for (let round = 0; round < 30; round++) {
    const db = openMemory();
    db.exec("CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('searchable text')");
    assert.equal(db.prepare("SELECT count(*) FROM docs WHERE docs MATCH 'searchable'").pluck().get(), 1);
    db.prepare('SELECT body FROM docs').iterate().next();
    db.close();
  }
});
