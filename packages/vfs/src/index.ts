export { openDatabase, WalshipDatabase } from './open.js';
export type { OpenOptions, CheckpointOptions, CheckpointResult, RecoveryReport, DiscardedWal, DatabaseStatus, Synchronous, CommittedTransaction, CapturedPage, WalLocation } from './open.js';
export { Database, Statement } from './database.js';
export type { RunResult, BindValue } from './database.js';
export { WalshipError, SqliteError } from './errors.js';
export type { FsOps } from './fs-ops.js';
export { nodeFs } from './fs-ops.js';
export { loadSqlite } from './sqlite.js';
export { processAlive } from './process-lock.js';
