export { openDatabase, WalshipDatabase } from './open.js';
export type { OpenOptions, CheckpointOptions, CheckpointResult, RecoveryReport, DiscardedWal, DatabaseStatus, Synchronous, CommittedTransaction, CapturedPage, WalLocation } from './open.js';
export { Database, Statement } from './database.js';
export type { RunResult, BindValue, BindParams, ColumnDefinition, FileOptions, TransactionFunction, AggregateOptions, FunctionOptions, TableDefinition, BackupMetadata, BackupOptions } from './database.js';
export { WalshipError, WalshipTypeError, WalshipRangeError, SqliteError } from './errors.js';
export type { FsOps } from './fs-ops.js';
export { nodeFs } from './fs-ops.js';
export { loadSqlite } from './sqlite.js';
export { processAlive } from './process-lock.js';
