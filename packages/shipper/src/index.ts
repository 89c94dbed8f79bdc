export { openReplicated } from './replicated.js';
export type { ReplicatedDatabase, CloseOptions } from './replicated.js';
export type { ReplicatedOptions, Compression, EncryptionKey } from './options.js';
export type { ReplicationStatus, ShipperState } from './shipper.js';
export type { LogEntry, LogLevel } from './log.js';
export type { RequestRates } from './metrics.js';
export { S3_PRICES } from './metrics.js';
export { readLineage, acceptable } from './lineage.js';
export type { Lineage, DatabaseManifest, EpochMarker, GenerationMarker } from './lineage.js';
