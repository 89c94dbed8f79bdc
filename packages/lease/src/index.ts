export { createDynamoLease, type AcquireOptions, type Lease, type LeaseGrant, type LeaseState } from './lease.js';
export type { GrantPath } from './item.js';
export { checkLeaseTable, createLeaseTable, forceRelease, readLease, type ForceReleaseResult, type LeaseTableInfo, type LeaseTableOptions } from './table.js';
export {
  LeaseError,
  LeaseHeldError,
  LeaseLostError,
  isLeaseError,
  type LeaseErrorCode,
  type LeaseHeldDetails,
  type LeaseLostDetails,
  type LeaseLostReason,
} from './errors.js';
export { EXPECTED_KEY_SCHEMA, type KeySchemaEntry } from './dynamo.js';
export type { DynamoConnection, DynamoLeaseOptions, LeaseLogEntry, LogLevel } from './options.js';
export type { LeaseItem } from './item.js';
export { compareMarks, type DurableMark } from './mark.js';
