import { closeSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import { basename, dirname, resolve } from 'node:path';
import { hex64, loadFormat, restoredNotePath, type Keyring, type RestoredNote } from '@walship/format';
import type { ObjectStorage } from '@walship/storage';
import { processAlive } from '@walship/vfs';
import { PIECES_AHEAD, PageFile, hashFile } from './apply.js';
import { CHECK_PRAGMA, INTEGRITY_CHECK_MODES, type IntegrityCheckMode } from './check-modes.js';
import { checkFile, type FileCheck } from './integrity.js';
import { restoreSnapshot } from './snapshot-thread.js';
import { abortedError, restoreError } from './errors.js';
import { bad, checkInteger, resolveSource } from './options.js';
import { planFromCatalog, validatePlanOptions, type PlanOptions, type PlannedObject, type RestorePlan } from './plan.js';
import { HeaderReader, scanReplica, type ReplicaCatalog } from './replica.js';
import { DEFAULT_FILE_MODE, checkMode, removeStaleScratch, scratchName } from './scratch.js';
import { bucketTip, isBehind, readMark, replicaBehind, type HighWaterMark } from './mark.js';
import { Prefetcher, applySegment } from './segments.js';

export type RestorePhase = 'plan' | 'download' | 'verify' | 'rename' | 'done';

export interface RestoreProgress {
  phase: RestorePhase;
  objectsDone: number;
  objectsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** The txid the file being built has reached (0 before the snapshot is in). */
  txid: number;
  /** The restore's target txid, once planned. */
  targetTxid: number;
}

export interface RestoreOptions extends PlanOptions {
  /** Where the database file goes. Its directory is created if missing. */
  path: string;
  /** Replace an existing file at `path` (its -wal, -shm and -journal are removed). Default false. */
  overwrite?: boolean;
  /** Objects downloaded and decoded in parallel (default 8). */
  concurrency?: number;
  /** Permission bits of the restored file, its scratch copy and note (default 0o600), set whatever the umask. */
  mode?: number;
  /**
   * The check of the finished file before it is moved into place (default `full`: PRAGMA
   * integrity_check; `quick`: PRAGMA quick_check; `none`: no SQLite check). Whatever the mode, the
   * file is read back from the device and its size and checksum must be the replica's.
   */
  integrityCheck?: IntegrityCheckMode;
  onProgress?: (progress: RestoreProgress) => void;
}

export interface RestoreResult {
  path: string;
  txid: number;
  /** Commit time of `txid` (ms since the epoch). Restored from a snapshot alone: an upper bound of it (the first commit after it, or when the snapshot was taken). */
  timestamp: number;
  generation: string;
  /** Objects downloaded (the snapshot and the segments). */
  objects: number;
  bytes: number;
  durationMs: number;
  /** Rolling checksum of the restored database (16 hex digits), as the replica records it. */
  checksum: string;
  pageSize: number;
  commitSize: number;
  /** The mark the lease item records (with the `lease` option), which the bucket was checked to reach; else null. */
  highWaterMark: HighWaterMark | null;
  /** The SQLite check the file passed (`none`: only its size and checksum, read back from the device). */
  integrityCheck: IntegrityCheckMode;
}

function validateRestoreOptions(o: RestoreOptions): ReturnType<typeof validatePlanOptions> {
  const stop = validatePlanOptions(o);
  if (typeof o.path !== 'string' || o.path === '') bad('path', 'must be the path of the database file to write', o.path);
  if (o.overwrite !== undefined && typeof o.overwrite !== 'boolean') bad('overwrite', 'must be a boolean', o.overwrite);
  checkInteger('concurrency', o.concurrency, 1, 256);
  checkMode('mode', o.mode);
  if (o.integrityCheck !== undefined && !INTEGRITY_CHECK_MODES.includes(o.integrityCheck)) bad('integrityCheck', `must be one of ${INTEGRITY_CHECK_MODES.join(', ')}`, o.integrityCheck);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') bad('onProgress', 'must be a function', typeof o.onProgress);
  return stop;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Refuses a target that is in use or would be replaced without `overwrite`. A database open in
 * walship holds `<path>.walship-lock` with its pid; replacing its file under it would corrupt it.
 */
export function checkTarget(path: string, overwrite: boolean): void {
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    isDirectory = false;
  }
  if (isDirectory) throw restoreError('ERR_INVALID_OPTION', `option path ${path} is a directory; give the path of the database file to write`, { option: 'path', path });
  const lock = `${path}.walship-lock`;
  if (exists(lock)) {
    let pid = NaN;
    try {
      pid = Number.parseInt(readFileSync(lock, 'utf8'), 10);
    } catch {
      pid = NaN;
    }
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
      throw restoreError('ERR_TARGET_LOCKED', `${path} is open in process ${pid} (${lock}); close that database before restoring over it`, { path, pid });
    }
  }
  if (overwrite) return;
  for (const p of [path, `${path}-wal`]) {
    if (exists(p)) {
      throw restoreError('ERR_TARGET_EXISTS', `${p} exists; restore writes a new file and replaces an existing one only with overwrite: true (CLI: --overwrite)`, { path: p });
    }
  }
}

function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic, only its durability is the OS's.
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
}

/** Removes a scratch file and whatever SQLite or walship left beside it. */
export function removeScratch(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`, `${path}.walship-lock`]) rmSync(p, { force: true });
}

/** A scratch path beside the target, so the final rename stays on one filesystem. */
export function scratchPath(path: string, label: string): string {
  return resolve(dirname(path), scratchName(basename(path), label));
}

export interface BuildOptions {
  storage: ObjectStorage;
  keyring: Keyring | undefined;
  concurrency: number;
  mode?: number | undefined;
  integrityCheck?: IntegrityCheckMode | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: RestoreProgress) => void) | undefined;
}

/**
 * Builds the database of a plan into `tmp` (a new file) and runs every check: each object fully
 * verified before it is applied, the checksum after every transaction, the final checksum re-read
 * from disk, and PRAGMA integrity_check. Returns the bytes downloaded.
 */
export async function buildDatabase(plan: RestorePlan, tmp: string, o: BuildOptions): Promise<number> {
  await loadFormat();
  const { storage, keyring, signal } = o;
  const objects = plan.objects;
  const total = objects.length;
  let done = 0;
  let bytes = 0;
  let txid = 0;
  const report = (phase: RestorePhase): void =>
    o.onProgress?.({ phase, objectsDone: done, objectsTotal: total, bytesDone: bytes, bytesTotal: plan.bytes, txid, targetTxid: plan.txid });
  const file = new PageFile(tmp, plan.pageSize, { create: true, mode: o.mode ?? DEFAULT_FILE_MODE });
  // Segments download ahead of the one being applied (stored bytes only, see Prefetcher); each
  // is decoded while it is applied.
  const segments = objects.slice(1);
  const controller = new AbortController();
  // Every request in flight listens to it: the snapshot's pieces ahead and the prefetched segments.
  setMaxListeners(2 * (o.concurrency + PIECES_AHEAD) + 8, controller.signal);
  const onAbort = (): void => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const prefetch = new Prefetcher(storage, segments, { concurrency: o.concurrency, signal: controller.signal });
  try {
    report('download');
    prefetch.fill();
    const snapshot = objects[0] as PlannedObject;
    await restoreSnapshot(storage, file, snapshot, keyring, (n) => (bytes += n), controller.signal);
    txid = snapshot.applyThrough;
    done++;
    report('download');
    for (let i = 0; i < segments.length; i++) {
      if (signal?.aborted) throw abortedError(signal.reason);
      const segment = segments[i] as PlannedObject;
      bytes += await applySegment(file, prefetch.take(i), segment, { keyring, txid, signal });
      txid = segment.applyThrough;
      done++;
      report('download');
    }
    file.finish(plan.commitSize, { sync: false });
    await file.settle();
  } catch (e) {
    controller.abort(e);
    throw signal?.aborted ? abortedError(signal.reason) : e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    file.close();
  }
  if (file.hashes.value !== plan.checksum) {
    throw restoreError('ERR_VERIFY_FAILED', `the restored database has checksum ${hex64(file.hashes.value)}, the plan expected ${hex64(plan.checksum)} at txid ${plan.txid}`, {
      txid: plan.txid,
      expected: hex64(plan.checksum),
      actual: hex64(file.hashes.value),
    });
  }
  report('verify');
  // The device writes the file back while it is read and checked (on a VM, an fsync of 1 GiB took
  // 0.6 s of waiting on the host); the rename waits for both.
  const durable = fsyncPath(tmp);
  try {
    await verifyFile(tmp, plan, o.integrityCheck ?? 'full');
  } finally {
    await durable.catch(() => undefined);
  }
  await durable;
  return bytes;
}

/**
 * fsync of a file through a descriptor of its own (any descriptor of a file flushes all of it),
 * queued to libuv's threads at once: it runs while this thread checks the file.
 */
function fsyncPath(path: string): Promise<void> {
  const fd = openSync(path, 'r+');
  return new Promise<void>((resolve, reject) =>
    fsync(fd, (e) => {
      try {
        closeSync(fd);
      } catch {
        // The sync's answer is what counts; a failed close of a read descriptor loses nothing.
      }
      if (e) reject(e);
      else resolve();
    }),
  );
}

/**
 * The checks on the finished file: PRAGMA integrity_check (quick_check, or none, as `mode` says), reading the file once (from the
 * device where the file system allows it) and hashing every page as it is read, so the same read
 * proves that the disk kept what was written (size and checksum) and that the database is sound.
 * The check's VFS refuses writes to the file (see checkFile). A disk that did not keep the bytes is
 * reported first: integrity_check's findings on such a file say less than that.
 */
export async function verifyFile(path: string, plan: { pageSize: number; commitSize: number; checksum: bigint; txid: number }, mode: IntegrityCheckMode = 'full'): Promise<void> {
  const mismatch = (size: number, checksum: bigint, when: string): Error =>
    restoreError(
      'ERR_VERIFY_FAILED',
      `${path} ${when}: ${size} bytes with checksum ${hex64(checksum)}, expected ${plan.commitSize * plan.pageSize} bytes with ${hex64(plan.checksum)} (txid ${plan.txid}); the disk did not keep what was written`,
      { path, size, expectedSize: plan.commitSize * plan.pageSize, checksum: hex64(checksum), expected: hex64(plan.checksum) },
    );
  const differs = (size: number, checksum: bigint): boolean => size !== plan.commitSize * plan.pageSize || checksum !== plan.checksum;
  let check: FileCheck;
  try {
    check = await checkFile(path, { pageSize: plan.pageSize, mode });
  } catch (e) {
    const disk = hashFile(path, plan.pageSize);
    if (differs(disk.size, disk.checksum)) throw mismatch(disk.size, disk.checksum, 'read back');
    throw restoreError('ERR_VERIFY_FAILED', `${path}: ${mode === 'none' ? 'the file could not be read back' : `PRAGMA ${CHECK_PRAGMA[mode]} could not run`}: ${(e as Error).message}`, { path, txid: plan.txid, integrityCheck: mode }, e);
  } finally {
    for (const p of [`${path}-wal`, `${path}-shm`]) removeQuietly(p);
  }
  if (differs(check.size, check.checksum)) throw mismatch(check.size, check.checksum, mode === 'none' ? 'read back' : `read back during ${CHECK_PRAGMA[mode]}`);
  if (mode !== 'none' && (check.rows.length !== 1 || check.rows[0] !== 'ok')) {
    throw restoreError('ERR_VERIFY_FAILED', `${path}: PRAGMA ${CHECK_PRAGMA[mode]} at txid ${plan.txid} reports: ${check.rows.slice(0, 10).join('; ')}`, {
      path,
      txid: plan.txid,
      integrityCheck: mode,
      integrity: check.rows.slice(0, 100),
    });
  }
}

/**
 * Moves a verified scratch file into place. When replacing a database, its WAL files go first, so
 * they can never be replayed onto the new file; follow mode keeps them (they belong to readers of
 * the previous file, and a read replica's WAL stays empty).
 */
export function moveIntoPlace(tmp: string, path: string, options: { overwrite: boolean; keepWal?: boolean }): void {
  checkTarget(path, options.overwrite);
  if (options.overwrite && !options.keepWal) for (const p of [`${path}-wal`, `${path}-shm`, `${path}-journal`]) removeQuietly(p);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** A writer opening the file later numbers its transactions from this note (see @walship/format). */
function writeRestoredNote(path: string, note: RestoredNote, mode: number): void {
  writeFileSync(restoredNotePath(path), `${JSON.stringify(note, null, 2)}\n`, { mode });
}

/**
 * ERR_REPLICA_BEHIND unless the bucket reaches the lease item's mark. A latest restore is held to
 * what it would build; a restore to an explicit point (txid, time or generation) may be older than
 * the mark, as long as the bucket still reaches it (judged from the listing and object headers).
 */
async function checkMark(mark: HighWaterMark, on: { catalog: ReplicaCatalog; plan: RestorePlan; latest: boolean; headers: HeaderReader }): Promise<void> {
  const planned = { generation: on.plan.generation, txid: on.plan.txid };
  if (!isBehind(mark, planned)) return;
  const found = on.latest ? planned : await bucketTip(on.catalog, on.headers);
  if (isBehind(mark, found)) throw replicaBehind(on.catalog.location, mark, found);
}

/**
 * Restores a database from its replica: validates the options, plans (see plan()), downloads and
 * verifies every object, builds the file beside the target, checks it, and renames it into place.
 * The target is never half-written: on any error it is untouched and the scratch file removed.
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const stop = validateRestoreOptions(options);
  const path = resolve(options.path);
  const overwrite = options.overwrite ?? false;
  const concurrency = options.concurrency ?? 8;
  const signal = options.signal;
  const mode = options.mode ?? DEFAULT_FILE_MODE;
  const integrityCheck = options.integrityCheck ?? 'full';
  checkTarget(path, overwrite);
  removeStaleScratch(dirname(path), basename(path));
  const source = resolveSource(options);
  const progress = options.onProgress;
  let tmp: string | null = null;
  try {
    progress?.({ phase: 'plan', objectsDone: 0, objectsTotal: 0, bytesDone: 0, bytesTotal: 0, txid: 0, targetTxid: 0 });
    const mark = await readMark(options);
    const catalog = await scanReplica(source.storage, source.prefix, { signal, concurrency, keyring: source.keyring, originalPrefix: source.originalPrefix });
    const headers = new HeaderReader(source.storage, catalog.manifest, signal);
    const p = await planFromCatalog(catalog, { storage: source.storage, keyring: source.keyring, stop, generation: options.generation, concurrency, signal }).catch(async (e: unknown) => {
      // Nothing restorable, or not the point asked for, while the bucket no longer reaches what the
      // lease item says was durable: the deletion is the news, the planner's error its cause.
      const found = mark ? await bucketTip(catalog, headers) : null;
      throw mark && isBehind(mark, found) ? replicaBehind(catalog.location, mark, found, e) : e;
    });
    if (mark) await checkMark(mark, { catalog, plan: p, latest: stop.kind === 'latest' && options.generation === undefined, headers });
    mkdirSync(dirname(path), { recursive: true });
    tmp = scratchPath(path, 'restore');
    const bytes = await buildDatabase(p, tmp, { storage: source.storage, keyring: source.keyring, concurrency, mode, integrityCheck, signal, onProgress: progress });
    if (signal?.aborted) throw abortedError(signal.reason);
    progress?.({ phase: 'rename', objectsDone: p.objects.length, objectsTotal: p.objects.length, bytesDone: bytes, bytesTotal: p.bytes, txid: p.txid, targetTxid: p.txid });
    rmSync(restoredNotePath(path), { force: true });
    moveIntoPlace(tmp, path, { overwrite });
    tmp = null;
    writeRestoredNote(path, { format: 1, replica: source.storage.location, generation: p.generation, txid: p.txid, checksum: p.checksum.toString(16).padStart(16, '0'), restoredAt: new Date().toISOString() }, mode);
    progress?.({ phase: 'done', objectsDone: p.objects.length, objectsTotal: p.objects.length, bytesDone: bytes, bytesTotal: p.bytes, txid: p.txid, targetTxid: p.txid });
    return {
      path,
      txid: p.txid,
      timestamp: p.timestamp,
      generation: p.generation,
      objects: p.objects.length,
      bytes,
      durationMs: Math.round(performance.now() - started),
      checksum: p.checksum.toString(16).padStart(16, '0'),
      pageSize: p.pageSize,
      commitSize: p.commitSize,
      highWaterMark: mark,
      integrityCheck,
    };
  } catch (e) {
    // Whatever an abort interrupted (a request, a decode), the caller asked for it: say so.
    if (signal?.aborted) throw abortedError(signal.reason);
    throw e;
  } finally {
    if (tmp !== null) removeScratch(tmp);
    source.close();
  }
}
