// Used by bs3-behaviour.test.ts: the same probes run on better-sqlite3 (the oracle) and walship.
function kind(fn: () => unknown): any { try {
    const v = fn();
    return { v };
  } catch (e: any) {
     return { err: e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'RangeError' : e.name, code: e.name === 'SqliteError' ? e.code : undefined }; } }
/**
 * Probes every better-sqlite3 behaviour issue 13 lists (run().changes, columns(), expand, binding,
 * big integers, constructor options, serialize, :memory:, close while iterating, error classes) on
 * a better-sqlite3-shaped constructor `D`; returns what each probe observed (errors as their class
 * and SqliteError code only: messages are ours).
 */
export function probe(D: any, dir: string, tag: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const db = new D(`${dir}/${tag}.db`);
  o.create = kind(() => db.prepare('CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c BLOB, d REAL)').run());
  o.ins3 = kind(() => db.prepare("INSERT INTO t (b) VALUES ('x'),('y'),('z')").run());
  o.selRun = kind(() => db.prepare('SELECT * FROM t').run());
  o.createIdx = kind(() => db.prepare('CREATE INDEX i ON t(b)').run());
  o.upd0 = kind(() => db.prepare('UPDATE t SET b = b WHERE 0').run());
  o.pragmaRun = kind(() => db.prepare('PRAGMA user_version = 3').run());
  o.beginRun = kind(() => db.prepare('BEGIN').run());
  o.commitRun = kind(() => db.prepare('COMMIT').run());
  o.delAll = kind(() => db.prepare('DELETE FROM t WHERE a > 2').run());
  o.dropRun = kind(() => db.prepare('DROP INDEX i').run());
  o.cols = kind(() => db.prepare('SELECT a, b AS bee, 1+1 AS two, t.c, (SELECT d FROM t) AS sub FROM t').columns());
  o.colsCount = kind(() => db.prepare('SELECT count(*) AS n, max(d) FROM t').columns());
  o.colsWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').columns());
  o.colsRet = kind(() => db.prepare('INSERT INTO t (b) VALUES (1) RETURNING a, b').columns());
  o.expand = kind(() => db.prepare('SELECT t.a, u.b, 5 AS five, t.b AS tb FROM t JOIN t AS u ON u.a = t.a').expand().all());
  o.expandDup = kind(() => db.prepare('SELECT a, a FROM t').expand().get());
  o.raw = kind(() => db.prepare('SELECT a, a FROM t').raw().get());
  o.get2 = kind(() => db.prepare('SELECT a, a FROM t').get());
  o.pluckExpand = kind(() => db.prepare('SELECT a FROM t').pluck().expand().get());
  o.rawWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').raw());
  o.pluckWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').pluck());
  o.getWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').get());
  o.allWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').all());
  o.flatten = kind(() => db.prepare('SELECT ?, ?, ?').raw().get([1, 2], 3));
  o.flattenNamed = kind(() => db.prepare('SELECT @x, ?').raw().get({ x: 1 }, 2));
  o.flattenNest = kind(() => db.prepare('SELECT ?, ?').raw().get([[1], 2]));
  o.missingNamed = kind(() => db.prepare('SELECT @x').get({}));
  o.extraNamed = kind(() => db.prepare('SELECT @x').get({ x: 1, y: 2 }));
  o.tooMany = kind(() => db.prepare('SELECT ?').get(1, 2));
  o.bindBool = kind(() => db.prepare('SELECT ?').get(true));
  o.bindSym = kind(() => db.prepare('SELECT ?').get(Symbol('x')));
  o.bindU8 = kind(() => db.prepare('SELECT ?').pluck().get(new Uint8Array([1, 2])));
  o.bindDV = kind(() => db.prepare('SELECT ?').pluck().get(new DataView(new ArrayBuffer(2))));
  o.bigRead = kind(() => db.prepare('SELECT 9007199254740993').pluck().get());
  o.bigBind = kind(() => db.prepare('SELECT ?').pluck().get(2n ** 63n));
  o.bigBindOk = kind(() => db.prepare('SELECT ?').pluck().safeIntegers().get(2n ** 62n));
  o.safeRun = kind(() => { const s = db.prepare('INSERT INTO t (a) VALUES (?)').safeIntegers(); return s.run(2n ** 60n); });
  o.safeRunNo = kind(() => db.prepare('INSERT INTO t (a) VALUES (?)').run(2n ** 60n + 5n));
  o.blob = kind(() => db.prepare("SELECT x'0102', zeroblob(0)").raw().get());
  o.fk = kind(() => db.pragma('foreign_keys', { simple: true }));
  o.stmtProps = kind(() => { const s = db.prepare('SELECT 1'); return [s.database === db, s.busy, s.reader, s.readonly, s.source]; });
  o.busy = kind(() => { const s = db.prepare('SELECT * FROM t'); const it = s.iterate(); it.next(); const b = s.busy; it.return(); return [b, s.busy]; });
  o.dbProps = kind(() => [db.name.endsWith(`${tag}.db`), db.open, db.inTransaction, db.readonly, db.memory]);
  o.iterExec = kind(() => { const it = db.prepare('SELECT * FROM t').iterate(); it.next(); try { return kind(() => db.exec('SELECT 1')); } finally { it.return(); } });
  o.iterPrep = kind(() => { const it = db.prepare('SELECT * FROM t').iterate(); it.next(); try { return kind(() => db.prepare('SELECT 1').get()); } finally { it.return(); } });
  o.iterSame = kind(() => { const s = db.prepare('SELECT * FROM t'); const it = s.iterate(); it.next(); try { return kind(() => s.get()); } finally { it.return(); } });
  o.unsafe = kind(() => { db.unsafeMode(); const it = db.prepare('SELECT a FROM t').iterate(); it.next(); const r = kind(() => db.prepare('UPDATE t SET d = 1 WHERE a = 1').run()); it.return(); db.unsafeMode(false); return r; });
  o.schemaWrite = kind(() => db.prepare('PRAGMA writable_schema = ON').run());
  o.txProps = kind(() => { const tx = db.transaction(() => db.inTransaction); return [tx(), typeof tx.deferred, typeof tx.immediate, typeof tx.exclusive, tx.database === db]; });
  o.ser = kind(() => { const b = db.serialize(); const c = new D(b); const r = [Buffer.isBuffer(b), c.memory, c.readonly, c.name, c.prepare('SELECT count(*) FROM t').pluck().get()]; c.close(); return r; });
  o.serRo = kind(() => { const c = new D(db.serialize(), { readonly: true }); const r = [c.readonly, kind(() => c.exec('DELETE FROM t'))]; c.close(); return r; });
  o.memory = kind(() => { const m = new D(':memory:'); const r = [m.memory, m.name, m.readonly]; m.close(); return r; });
  o.anon = kind(() => { const m = new D(''); const r = [m.memory, m.name]; m.close(); return r; });
  o.anon2 = kind(() => { const m = new D(); const r = [m.memory, m.name]; m.close(); return r; });
  o.memRo = kind(() => new D(':memory:', { readonly: true }));
  o.mustExist = kind(() => new D(`${dir}/${tag}-nope.db`, { fileMustExist: true }));
  o.roMissing = kind(() => new D(`${dir}/${tag}-nope2.db`, { readonly: true }));
  o.roWrite = kind(() => { const r = new D(`${dir}/${tag}.db`, { readonly: true }); try { return [r.readonly, kind(() => r.exec('DELETE FROM t'))]; } finally { r.close(); } });
  o.timeoutBad = kind(() => new D(':memory:', { timeout: -1 }));
  o.timeoutBig = kind(() => new D(':memory:', { timeout: 2 ** 31 }));
  o.timeoutFloat = kind(() => new D(':memory:', { timeout: 1.5 }));
  o.verbose = kind(() => { const log: unknown[] = []; const v = new D(':memory:', { verbose: (s: string, ...rest: unknown[]) => log.push([s, rest.length]) }); v.exec('CREATE TABLE x(y); INSERT INTO x VALUES (1)'); v.prepare('SELECT ? AS q').get('hi'); v.pragma('user_version'); v.close(); return log; });
  o.verboseLong = kind(() => {
    const log: string[] = [];
    const v = new D(':memory:', { verbose: (s: string) => log.push(s) });
    const s = v.prepare("SELECT ?, :name, '?' AS q, x'00ff', -- ?\n @at /* :x */");
    s.get('short', { name: "it's a fairly long value with 'quotes' that goes on", at: Buffer.alloc(40, 0xab) });
    s.get('é'.repeat(20), { name: null, at: 1.5 });
    s.get(2n ** 62n, { name: 'x'.repeat(32), at: Buffer.alloc(32, 1) });
    v.prepare('SELECT $a').get({ a: '0123456789'.repeat(4) });
    v.close();
    return log;
  });
  o.verboseBad = kind(() => new D(':memory:', { verbose: 1 }));
  o.closeRet = kind(() => { const c = new D(':memory:'); return [c.close() === c, c.open, kind(() => c.prepare('SELECT 1')), kind(() => c.close() === c)]; });
  o.closeIter = kind(() => { const c = new D(`${dir}/${tag}-ci.db`); c.exec('CREATE TABLE q(x); INSERT INTO q VALUES (1),(2)'); const it = c.prepare('SELECT x FROM q').iterate(); it.next(); const r = kind(() => c.close()); const n = kind(() => it.next()); try { it.return(); } catch { /* closed */ } if (c.open) { it.return(); c.close(); } const c2 = new D(`${dir}/${tag}-ci.db`); const m = c2.prepare('SELECT count(*) FROM q').pluck().get(); c2.close(); return [r.err ?? 'closed', n.err ?? n.v, m]; });
  o.errShape = kind(() => { try { db.exec('SELEC'); } catch (e: any) { return [e.name, e.code, e.message, e instanceof D.SqliteError, e instanceof Error]; } return null; });
  o.errCtor = kind(() => { const e = new D.SqliteError('m', 'SQLITE_X'); return [e.name, e.code, e.message, e instanceof Error]; });
  o.badSql = kind(() => db.prepare(''));
  o.badSql2 = kind(() => db.prepare('  -- c'));
  o.badType = kind(() => db.prepare(1));
  o.execBad = kind(() => db.exec(1));
  o.fnErrs = [kind(() => db.function('f')), kind(() => db.function('f', {}, 1)), kind(() => db.function('f', { varargs: 1 }, () => 1)), kind(() => db.aggregate('g', {})), kind(() => db.aggregate('g', { step: 1 }))];
  o.tableErr = kind(() => db.table('v', {}));
  o.backupBad = kind(() => db.backup().catch(() => {}));
  o.pragmaBad = kind(() => db.pragma('user_version', { simple: 1 }));
  o.dsi = kind(() => { db.defaultSafeIntegers(); const v = db.prepare('SELECT 1').pluck().get(); db.defaultSafeIntegers(false); return v; });
  o.dsiBad = kind(() => db.defaultSafeIntegers(1));
  o.lastRowid = kind(() => db.prepare("INSERT INTO t (a, b) VALUES (9007199254740993, 'big')").run());
  o.lastRowidSafe = kind(() => db.prepare("INSERT INTO t (b) VALUES ('big2')").safeIntegers().run());
  o.nullish = kind(() => db.prepare('SELECT ?, ?').raw().get(null, undefined));
  o.dateBind = kind(() => db.prepare('SELECT ?').get(new Date(0)));
  o.objBind = kind(() => db.prepare('SELECT ?').get({}));
  o.iterRaw = kind(() => [...db.prepare('SELECT a FROM t ORDER BY a LIMIT 2').raw().iterate()]);
  o.iterWrite = kind(() => db.prepare('INSERT INTO t (b) VALUES (1)').iterate());
  o.columnsAfter = kind(() => { db.exec('CREATE TABLE w (x INT, y VARCHAR(9))'); const s = db.prepare('SELECT * FROM w'); db.exec('ALTER TABLE w ADD COLUMN z'); return [s.columns(), s.all()]; });
  o.readonlyStmts = kind(() => ['SELECT 1', 'BEGIN', 'COMMIT', 'PRAGMA user_version', 'PRAGMA user_version = 1', 'CREATE TABLE IF NOT EXISTS t (a)', 'WITH x AS (SELECT 1) SELECT * FROM x', 'INSERT INTO t (b) VALUES (1) RETURNING a', 'EXPLAIN SELECT 1', 'SAVEPOINT a'].map((s: string) => { const p = db.prepare(s); return [s, p.reader, p.readonly]; }));
  db.close();
  return o;
}
