import { constants as fsc, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadSqlite, type Sqlite3 } from './sqlite.js';
import { NodeVfs } from './node-vfs.js';
import { nodeFs, type FsOps } from './fs-ops.js';
import { WalCapture, type CommittedTransaction } from './capture.js';
import { Database } from './database.js';
import { SqliteError, WalshipError } from './errors.js';
import { acquireProcessLock } from './process-lock.js';
import { WalFile } from './wal-file.js';
import { scanWalFile, type WalScanState } from './wal/scanner.js';
import type { WalHeader } from './wal/format.js';

import { checkTarget, checkWal, validateOptions } from './open-checks.js';
import type { CheckpointOptions, CheckpointResult, DatabaseStatus, DiscardedWal, OpenOptions, RecoveryReport } from './open-options.js';

export type { CommittedTransaction, CapturedPage, WalLocation } from './capture.js';
export type { CheckpointOptions, CheckpointResult, DatabaseStatus, DiscardedWal, OpenOptions, RecoveryReport, Synchronous } from './open-options.js';

const META_TABLE = '_walship';
/** After a RESTART checkpoint SQLite cuts a WAL file larger than this back to it; checkpoint() truncates one that is. */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;
const SQLITE_DENY = 1;
const SQLITE_DELETE = 9;
const SQLITE_DROP_TABLE = 11;
const SQLITE_INSERT = 18;
const SQLITE_PRAGMA = 19;
const SQLITE_UPDATE = 23;
const SQLITE_ATTACH = 24;
const SQLITE_ALTER_TABLE = 26;
const PRAGMAS_OWNED = new Set(['journal_mode', 'locking_mode', 'wal_autocheckpoint']);

/** A database opened through walship's VFS; the better-sqlite3-shaped API plus capture control. */
export class WalshipDatabase extends Database {
  readonly #ctx: OpenContext;

  /** @internal Use openDatabase(). */
  constructor(ctx: OpenContext) {
    super(
      { sqlite3: ctx.sqlite3, pDb: ctx.pDb, filename: ctx.path },
      {
        onClose: () => ctx.beforeClose(),
        authorizer: (code, a, b, dbName) => ctx.authorize(code, a, b, dbName),
        mapError: (e) => ctx.mapError(e),
      },
    );
    this.#ctx = ctx;
  }

  /** What open found in the WAL and emitted again. */
  get recovery(): RecoveryReport {
    return this.#ctx.recovery;
  }

  /** The txid of the last committed transaction (0 before the first). */
  get txid(): number {
    return this.#ctx.capture?.lastTxid ?? 0;
  }

  /** Tell walship that every transaction up to `txid` is durable downstream, so it may be checkpointed. */
  acknowledge(txid: number): void {
    if (!Number.isInteger(txid) || txid < 0) {
      throw new WalshipError('ERR_INVALID_ARGUMENT', `acknowledge(txid) needs a non-negative integer, got ${String(txid)}`);
    }
    if (txid > this.txid) {
      throw new WalshipError('ERR_INVALID_ARGUMENT', `acknowledge(${txid}) is ahead of the last committed txid ${this.txid}`, {
        details: { txid, lastTxid: this.txid },
      });
    }
    if (txid > this.#ctx.durableTxid) this.#ctx.durableTxid = txid;
  }

  /**
   * Copies the WAL into the database file and empties the WAL, but only when every transaction in
   * it is durable downstream (or no sink is attached). Returns what it did and why not.
   */
  checkpoint(options: CheckpointOptions = {}): CheckpointResult {
    return this.#ctx.checkpoint(options);
  }

  /** fsync the `-wal` file: a shipper calls it once per batch so nothing is shipped that a local crash could lose. */
  syncWal(): void {
    this.#ctx.syncWal();
  }

  status(): DatabaseStatus {
    return this.#ctx.status();
  }

  /**
   * While set, every write to the WAL fails (SQLITE_FULL inside SQLite) and the statement throws
   * this error, with the SqliteError as its cause; reads go on. A shipper sets it when too much WAL
   * is waiting for the object store. Pass null to accept writes again.
   */
  setWriteBarrier(error: Error | null): void {
    this.#ctx.writeBarrier = error;
  }

  override close(): this {
    const wasOpen = this.open;
    try {
      return super.close();
    } finally {
      // The handle is closed even when close throws: release the process lock all the same, or
      // every later open in this process would be ERR_DATABASE_LOCKED.
      if (wasOpen) this.#ctx.afterClose();
    }
  }
}

/**
 * Opens (or creates) the SQLite database at `path` through walship's VFS in WAL mode. With capture
 * on, every committed transaction is handed to `options.onCommit` with its txid and page images.
 */
export async function openDatabase(path: string, options: OpenOptions = {}): Promise<WalshipDatabase> {
  validateOptions(options);
  const sqlite3 = await loadSqlite();
  const vfs = NodeVfs.install(sqlite3);
  const abs = resolve(path);
  checkTarget(abs, options.create ?? true);
  const release = acquireProcessLock(abs);
  let discardedWal: DiscardedWal | null;
  try {
    discardedWal = checkWal(abs);
  } catch (e) {
    release();
    throw e;
  }
  const ctx = new OpenContext(sqlite3, vfs, abs, options, release);
  try {
    ctx.open();
    const db = new WalshipDatabase(ctx);
    ctx.attach(db);
    ctx.finishOpen();
    ctx.recovery = { ...ctx.recovery, discardedWal };
    return db;
  } catch (e) {
    ctx.abort();
    throw e;
  }
}

/** The state behind one open database: SQLite handle, capture, txid bookkeeping. */
class OpenContext {
  readonly sqlite3: Sqlite3;
  readonly path: string;
  pDb = 0;
  durableTxid: number;
  capture: WalCapture | null = null;
  private readonly vfs: NodeVfs;
  private readonly options: OpenOptions;
  private readonly releaseLock: () => void;
  private readonly fs: FsOps;
  private db: WalshipDatabase | null = null;
  private internal = false;
  private lastEmitted: CommittedTransaction | null = null;
  private readonly wal: WalFile;
  private closed = false;
  private closing = false;
  private checkpointedThrough = -1;
  writeBarrier: Error | null = null;

  constructor(sqlite3: Sqlite3, vfs: NodeVfs, path: string, options: OpenOptions, releaseLock: () => void) {
    this.sqlite3 = sqlite3;
    this.vfs = vfs;
    this.path = path;
    this.options = options;
    this.releaseLock = releaseLock;
    this.fs = options.fs ?? nodeFs;
    this.wal = new WalFile(this.fs, path);
    this.durableTxid = options.durableTxid ?? 0;
  }

  private get sink(): ((txn: CommittedTransaction) => void) | undefined {
    return this.options.onCommit;
  }

  recovery: RecoveryReport = { walTransactions: 0, reemitted: 0, firstAvailableTxid: 1, gap: null, marker: null, discardedWal: null };

  open(): void {
    const captureOn = this.options.capture ?? true;
    const powersafe = this.options.powersafeOverwrite ?? true;
    const sectorSize = this.options.sectorSize ?? 4096;
    if (captureOn) {
      this.capture = new WalCapture({
        readWal: (offset, length) => this.wal.read(offset, length),
        // Always apply the padding rule, whatever powersafeOverwrite is now: a WAL written by an
        // earlier open with other settings must be counted the same way (txids must not shift).
        paddingSectorSize: sectorSize,
        emit: (txn) => this.emit(txn),
      });
    }
    this.vfs.registerDatabase(this.path, {
      ...(this.capture ? { observer: this.capture } : {}),
      writeBarrier: () => this.writeBarrier,
      powersafeOverwrite: powersafe,
      sectorSize,
      fs: this.fs,
      ...(this.options.readWindow ? { readWindow: this.options.readWindow } : {}),
    });
    this.openHandle();
  }

  private openHandle(): void {
    const { capi, wasm } = this.sqlite3;
    const flags = capi.SQLITE_OPEN_READWRITE | (this.options.create === false ? 0 : capi.SQLITE_OPEN_CREATE) | capi.SQLITE_OPEN_EXRESCODE;
    const stack = wasm.pstack.pointer;
    try {
      const ppDb = wasm.pstack.allocPtr() as number;
      const rc = capi.sqlite3_open_v2(this.path, ppDb, flags, this.vfs.name);
      this.pDb = wasm.peekPtr(ppDb) as number;
      if (rc !== 0) {
        const reason = this.vfs.takeLastError() ?? (this.pDb ? capi.sqlite3_errmsg(this.pDb) : capi.sqlite3_errstr(rc));
        throw new SqliteError(rcName(this.sqlite3, rc), rc, `cannot open ${this.path}: ${reason}`, { details: { path: this.path } });
      }
    } finally {
      wasm.pstack.restore(stack);
    }
  }

  attach(db: WalshipDatabase): void {
    this.db = db;
  }

  /** Pragmas, WAL recovery scan, txid bookkeeping, re-emission; then live capture. */
  finishOpen(): void {
    const db = this.db!;
    const pageSize = this.options.pageSize;
    this.runInternal(() => {
      db.pragma('locking_mode = EXCLUSIVE');
      if (pageSize !== undefined) db.pragma(`page_size = ${pageSize}`);
      let mode: unknown;
      try {
        mode = db.pragma('journal_mode = WAL', { simple: true });
      } catch (e) {
        if (e instanceof SqliteError && e.code === 'SQLITE_NOTADB') {
          throw new WalshipError('ERR_NOT_A_DATABASE', `${this.path} is not an SQLite database: ${e.message}`, { cause: e, details: { path: this.path } });
        }
        throw e;
      }
      if (String(mode).toLowerCase() !== 'wal') {
        throw new WalshipError('ERR_WAL_UNAVAILABLE', `SQLite refused WAL mode for ${this.path} (journal_mode is ${String(mode)})`, { details: { path: this.path } });
      }
      db.pragma(`synchronous = ${this.options.synchronous ?? 'NORMAL'}`);
      // better-sqlite3 is built with foreign keys on; code written for it relies on that (a per-connection setting: nothing is written).
      db.pragma('foreign_keys = ON');
      if (this.capture) {
        db.pragma('wal_autocheckpoint = 0');
        db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
        const rc = this.sqlite3.capi.sqlite3_db_config(this.pDb, this.sqlite3.capi.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, 0);
        // Without this, closing would checkpoint frames that may not be durable downstream yet.
        if (rc !== 0) throw new SqliteError(rcName(this.sqlite3, rc), rc, `cannot turn off checkpoint-on-close for ${this.path}`);
      }
    });
    if (this.capture) this.startCapture();
  }

  private startCapture(): void {
    const db = this.db!;
    const capture = this.capture!;
    // The first statement made SQLite recover the WAL; now read the same file the same way.
    const scan = scanWalFile((offset, length) => this.wal.read(offset, length), {
      sectorSize: this.options.sectorSize ?? 4096,
    });
    const hasMeta = this.runInternal(() => db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '${META_TABLE}'`).get() !== undefined);
    const marker = hasMeta
      ? (this.runInternal(() => db.prepare(`SELECT * FROM ${META_TABLE} WHERE id = 1`).get()) as
          | { txid: number; salt1: number; salt2: number; commits: number; note?: string | null }
          | undefined)
      : undefined;
    const header: WalHeader | null = scan.header;
    const commits = scan.result?.commits ?? [];
    const base = this.options.baseTxid;
    if (base !== undefined && (scan.result?.commits.length ?? 0) > 0) {
      throw new WalshipError(
        'ERR_TXID_STATE',
        `${this.path}: baseTxid ${base} was given but the WAL holds ${scan.result?.commits.length} committed transactions; baseTxid describes a database file with an empty WAL`,
        { details: { path: this.path, baseTxid: base, walCommits: scan.result?.commits.length } },
      );
    }
    const markerTxid = base ?? marker?.txid ?? 0;
    // The marker row says: "I am transaction `txid`, commit number commits+1 of the WAL with these
    // salts". If that WAL is the one on disk, count from the marker's position; otherwise the marker
    // was checkpointed into the database file and every WAL commit comes after it.
    let firstWalTxid = markerTxid + 1;
    let markerInWal = false;
    if (base === undefined && marker && header && marker.salt1 === header.salt1 && marker.salt2 === header.salt2 && marker.txid > 0) {
      if (marker.commits + 1 > commits.length) {
        throw new WalshipError(
          'ERR_TXID_STATE',
          `${this.path}: the txid marker (txid ${marker.txid}) names commit ${marker.commits + 1} of the WAL, which has ${commits.length}; the WAL and database disagree`,
          { details: { path: this.path, marker, walCommits: commits.length } },
        );
      }
      firstWalTxid = marker.txid - marker.commits;
      markerInWal = true;
    }
    const lastTxid = firstWalTxid + commits.length - 1;
    const durable = this.options.durableTxid;
    let reemitted = 0;
    let firstAvailable = commits.length > 0 ? firstWalTxid : lastTxid + 1;
    if (base !== undefined) {
      firstAvailable = base + 1;
    } else if (!markerInWal && markerTxid > 0) {
      // The marker transaction is the last one in the database file and only wrote its own page, so
      // it can be rebuilt from the file if the sink does not have it yet.
      firstAvailable = markerTxid;
      if (this.sink && (durable === undefined || durable < markerTxid)) {
        this.emit(this.rebuildMarker(markerTxid));
        reemitted++;
      }
    }
    if (header && scan.result) {
      for (const commit of commits) {
        const txid = firstWalTxid + commit.index - 1;
        if (!this.sink || (durable !== undefined && txid <= durable)) continue;
        this.emit(capture.buildTransaction(header, commit, true, txid, (o, l) => this.wal.read(o, l)));
        reemitted++;
      }
    }
    if (durable !== undefined && durable > lastTxid) {
      throw new WalshipError(
        'ERR_DURABLE_AHEAD',
        `durableTxid ${durable} is ahead of the database's last transaction ${lastTxid}: the local database is older than what was shipped; restore it first`,
        { details: { path: this.path, durableTxid: durable, lastTxid } },
      );
    }
    const gap = durable !== undefined && durable < firstAvailable - 1 ? { fromTxid: durable + 1, toTxid: firstAvailable - 1 } : null;
    this.recovery = { walTransactions: commits.length, reemitted, firstAvailableTxid: firstAvailable, gap, marker: marker && marker.txid > 0 ? { txid: marker.txid, note: marker.note ?? null } : null, discardedWal: null };
    const state: WalScanState | null = scan.result?.state ?? null;
    capture.resume(state, lastTxid + 1);
    if (base !== undefined && hasMeta && marker?.txid !== base) {
      // The marker row still describes the replica's last checkpoint; record the new base so a
      // reopen before the next checkpoint numbers the WAL from here. Salts 0 match no WAL.
      this.runInternal(() => db.prepare(`UPDATE ${META_TABLE} SET txid = ?, salt1 = 0, salt2 = 0, commits = 0 WHERE id = 1`).run(base));
      this.throwIfCaptureFailed();
    }
    if (hasMeta && marker && !('note' in marker)) {
      // Tables made before the note column existed get it now (one schema transaction).
      this.runInternal(() => db.exec(`ALTER TABLE ${META_TABLE} ADD COLUMN note TEXT`));
      this.throwIfCaptureFailed();
    }
    if (!hasMeta) {
      this.runInternal(() =>
        db.exec(
          `BEGIN; CREATE TABLE ${META_TABLE}(id INTEGER PRIMARY KEY CHECK (id = 1), txid INTEGER NOT NULL, salt1 INTEGER NOT NULL, salt2 INTEGER NOT NULL, commits INTEGER NOT NULL, note TEXT);` +
            `INSERT INTO ${META_TABLE} VALUES (1, 0, 0, 0, 0, NULL); COMMIT;`,
        ),
      );
      this.throwIfCaptureFailed();
    }
  }

  /**
   * The pages a marker update writes. Normally just the marker table's page; without
   * POWERSAFE_OVERWRITE SQLite's pager rewrites every page that shares a sector with it (skipping
   * the lock-byte page), so the whole sector group is part of the transaction.
   */
  private markerPages(root: number, pageSize: number, commitSize: number): number[] {
    const sectorSize = this.options.sectorSize ?? 4096;
    if ((this.options.powersafeOverwrite ?? true) || sectorSize <= pageSize) return [root];
    const perSector = sectorSize / pageSize;
    const first = Math.floor((root - 1) / perSector) * perSector + 1;
    const lockPage = Math.floor(0x40000000 / pageSize) + 1;
    const pages: number[] = [];
    for (let pg = first; pg < first + perSector && pg <= commitSize; pg++) if (pg !== lockPage) pages.push(pg);
    return pages;
  }

  /** The marker transaction is the last one in the database file, so its pages can be read back from it. */
  private rebuildMarker(txid: number): CommittedTransaction {
    const db = this.db!;
    const root = this.metaRoot();
    const pageSize = this.runInternal(() => db.pragma('page_size', { simple: true })) as number;
    const fd = this.fs.openSync(this.path, fsc.O_RDONLY);
    try {
      const commitSize = Math.floor(this.fs.fstatSync(fd).size / pageSize);
      const pages = this.markerPages(root, pageSize, commitSize).map((pgno) => {
        const data = new Uint8Array(pageSize);
        if (this.fs.readSync(fd, data, 0, pageSize, (pgno - 1) * pageSize) !== pageSize) {
          throw new WalshipError('ERR_TXID_STATE', `${this.path}: cannot read page ${pgno} of the txid marker transaction`, { details: { path: this.path, page: pgno } });
        }
        return { pgno, data };
      });
      return { txid, pageSize, commitSize, pages, timestamp: Date.now(), wal: null, recovered: true };
    } finally {
      this.fs.closeSync(fd);
    }
  }

  private metaRoot(): number {
    const db = this.db!;
    return this.runInternal(() => db.prepare(`SELECT rootpage FROM sqlite_schema WHERE name = '${META_TABLE}'`).pluck().get()) as number;
  }

  private emit(txn: CommittedTransaction): void {
    this.lastEmitted = txn;
    this.sink?.(txn);
  }

  /** SQLite's authorizer: refuses what would bypass capture or break the txid lineage. */
  authorize(code: number, a: string | null, b: string | null, dbName: string | null): number {
    if (this.internal) return 0;
    const captureOn = this.capture !== null;
    if (code === SQLITE_PRAGMA && a !== null) {
      const name = a.toLowerCase();
      if (name === 'wal_checkpoint' && captureOn) return SQLITE_DENY;
      if (PRAGMAS_OWNED.has(name) && b !== null) return SQLITE_DENY;
      return 0;
    }
    if (!captureOn) return 0;
    // Another database file written through this connection would have its own WAL, which
    // walship does not capture; temporary and in-memory ones (VACUUM attaches one) are fine.
    if (code === SQLITE_ATTACH) return a === null || a === '' || a === ':memory:' ? 0 : SQLITE_DENY;
    const ownTable = dbName === null || dbName === 'main';
    if ((code === SQLITE_INSERT || code === SQLITE_UPDATE || code === SQLITE_DELETE || code === SQLITE_DROP_TABLE) && a === META_TABLE && ownTable) return SQLITE_DENY;
    if (code === SQLITE_ALTER_TABLE && a === 'main' && b === META_TABLE) return SQLITE_DENY;
    return 0;
  }

  mapError(e: SqliteError): Error {
    const barrier = this.writeBarrier;
    if (barrier && (e.code === 'SQLITE_FULL' || e.code.startsWith('SQLITE_FULL_'))) {
      // The barrier's own class (a LeaseLostError stays one), with SQLite's error as its cause.
      const err = Object.create(Object.getPrototypeOf(barrier) as object) as Error;
      Object.assign(err, barrier);
      Object.defineProperties(err, {
        message: { value: barrier.message, writable: true, configurable: true },
        stack: { value: `${barrier.name}: ${barrier.message}\n${(e.stack ?? '').split('\n').slice(1).join('\n')}`, writable: true, configurable: true },
        cause: { value: e, writable: true, configurable: true },
      });
      return err;
    }
    return e;
  }

  private runInternal<T>(fn: () => T): T {
    const was = this.internal;
    this.internal = true;
    try {
      return fn();
    } finally {
      this.internal = was;
    }
  }

  private throwIfCaptureFailed(): void {
    const failed = this.capture?.failed;
    if (failed) throw failed;
  }

  checkpoint(options: CheckpointOptions = {}): CheckpointResult {
    const db = this.db!;
    const capture = this.capture;
    if (!capture) {
      this.runInternal(() => db.pragma('wal_checkpoint(TRUNCATE)'));
      return { checkpointed: true, lastTxid: 0, durableTxid: 0 };
    }
    this.throwIfCaptureFailed();
    const result = (checkpointed: boolean, reason?: CheckpointResult['reason']): CheckpointResult => ({
      checkpointed,
      ...(reason ? { reason } : {}),
      lastTxid: capture.lastTxid,
      durableTxid: this.durableTxid,
    });
    if (this.sink && this.durableTxid < capture.lastTxid) return result(false, 'not-durable');
    if (capture.lastTxid === this.checkpointedThrough) {
      // Nothing committed since the last checkpoint: the WAL is fully copied already. A marker
      // written now would restart the WAL under itself.
      if (this.closing) this.runInternal(() => db.pragma('wal_checkpoint(TRUNCATE)'));
      return result(false, 'empty');
    }
    const pos = capture.position;
    if (!pos || pos.commits === 0) return result(false, 'empty');
    if (db.inTransaction) return result(false, 'busy');
    const note = options.note ?? null;
    if (!this.writeMarker(note) && !this.writeMarker(note)) {
      throw new WalshipError('ERR_TXID_STATE', `${this.path}: the txid marker did not land where it was written for, twice; not checkpointing`, {
        details: { path: this.path, lastTxid: capture.lastTxid },
      });
    }
    // RESTART keeps the WAL file's blocks for the next commits (TRUNCATE measured ~35% slower
    // with a checkpoint every 1000 commits); close() truncates. Frames left behind by RESTART are
    // still numbered correctly on open: the marker names their WAL's salts. A WAL past
    // journal_size_limit is truncated here, by the checkpoint: after RESTART, SQLite would cut it
    // inside the application's next commit (41 ms of a 590 ms commit after a 170 MB WAL).
    const mode = this.closing || this.wal.size() > JOURNAL_SIZE_LIMIT ? 'TRUNCATE' : 'RESTART';
    const row = this.runInternal(() => db.pragma(`wal_checkpoint(${mode})`)) as { busy: number }[];
    if (row[0]?.busy) return result(false, 'busy');
    this.checkpointedThrough = capture.lastTxid;
    return result(true);
  }

  /**
   * Writes the marker row for the current WAL position and checks that its transaction landed
   * there. If it did not (SQLite restarted the WAL under it), the row is wrong until the next marker,
   * so the caller writes another one at once, from the now-known position.
   */
  private writeMarker(note: string | null): boolean {
    const db = this.db!;
    const capture = this.capture!;
    const pos = capture.position;
    if (!pos) return false;
    const markerTxid = capture.lastTxid + 1;
    this.runInternal(() =>
      db.prepare(`UPDATE ${META_TABLE} SET txid = ?, salt1 = ?, salt2 = ?, commits = ?, note = ? WHERE id = 1`).run(markerTxid, pos.salt1, pos.salt2, pos.commits, note),
    );
    this.throwIfCaptureFailed();
    const marker = this.lastEmitted;
    const expected = marker ? this.markerPages(this.metaRoot(), marker.pageSize, marker.commitSize) : [];
    return (
      marker !== null &&
      marker.txid === markerTxid &&
      marker.wal !== null &&
      marker.wal.salt1 === pos.salt1 &&
      marker.wal.salt2 === pos.salt2 &&
      marker.wal.commitIndex === pos.commits + 1 &&
      marker.pages.length === expected.length &&
      marker.pages.every((p, i) => p.pgno === expected[i])
    );
  }

  syncWal(): void {
    this.wal.sync();
  }

  status(): DatabaseStatus {
    let walBytes = 0;
    try {
      walBytes = statSync(`${this.path}-wal`).size;
    } catch {
      walBytes = 0;
    }
    return {
      path: this.path,
      capture: this.capture !== null,
      lastTxid: this.capture?.lastTxid ?? 0,
      durableTxid: this.durableTxid,
      walBytes,
      captureError: this.capture?.failed ?? null,
    };
  }

  /** Runs inside Database.close(), before statements are finalised. */
  beforeClose(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      const capture = this.capture;
      // Leave a clean database file and an empty WAL behind when nothing would be lost by it. A sink
      // whose owner took the last checkpoint (markerOnClose: false; a shipper, which ships that
      // checkpoint's marker before closing) never gets a marker written here: it would put a txid in
      // the file that the replica never gets (the next open would find the file diverged).
      const markerAllowed = !this.sink || (this.options.markerOnClose ?? true);
      const tidy = capture && !capture.failed && (markerAllowed || capture.lastTxid === this.checkpointedThrough);
      if (tidy) {
        this.closing = true;
        try {
          this.checkpoint();
        } catch (e) {
          // As in SQLite's own close: a checkpoint that fails (a full disk, an I/O error) leaves the
          // WAL with every frame, and the next open recovers it. Anything else is a bug: thrown.
          if (!(e instanceof SqliteError)) throw e;
        }
      }
    } finally {
      this.capture?.suspend();
      this.wal.close();
      this.vfs.unregisterDatabase(this.path);
    }
  }

  /** Runs after the SQLite handle is closed. */
  afterClose(): void {
    this.releaseLock();
  }

  abort(): void {
    try {
      if (this.db) this.db.close();
      else if (this.pDb) this.sqlite3.capi.sqlite3_close_v2(this.pDb);
    } catch {
      // Best effort: the open already failed with a better error.
    }
    this.wal.close();
    this.vfs.unregisterDatabase(this.path);
    this.releaseLock();
  }
}

function rcName(sqlite3: Sqlite3, rc: number): string {
  const fn = (sqlite3.capi as unknown as { sqlite3_js_rc_str?: (rc: number) => string | undefined }).sqlite3_js_rc_str;
  return fn?.(rc) ?? `SQLITE_${rc}`;
}
