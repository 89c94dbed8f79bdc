// How a test reaches one of the harness's S3 servers: the connection part of openReplicated's and
// restore's `s3` option, and a storage client on it.
import { createS3Storage, type ObjectStorage } from '@walship/storage';
import type { S3Server } from '../servers/index.js';

export function s3Location(server: S3Server, prefix: string, endpoint: string = server.endpoint) {
  return {
    bucket: server.bucket,
    prefix,
    endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  };
}

export function storageFor(server: S3Server, prefix: string): ObjectStorage {
  return createS3Storage(s3Location(server, prefix));
}
