export type { GetOptions, ListOptions, ObjectInfo, ObjectStorage, PutOptions, PutStreamOptions, RequestEvent } from './types.js';
export { StorageError, isStorageError, redactUrl, type StorageErrorCode, type StorageErrorDetails, type StorageOperation } from './errors.js';
export { DEFAULT_RETRY, backoffDelay, type RetryOptions } from './retry.js';
export {
  S3Storage,
  createS3Storage,
  DEFAULT_PART_SIZE,
  DELETE_BATCH,
  MIN_PART_SIZE,
  type S3StorageOptions,
} from './s3.js';
export { MAX_PARTS } from './multipart.js';
