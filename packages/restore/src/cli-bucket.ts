import type { ReplicaSource } from './options.js';

/** Keys looked at when a bucket root holds no replica: enough to name a few, bounded on a big bucket. */
const LOOK_AT_KEYS = 1000;

/**
 * A replica at the bucket root has `database.json` there. Without it, a bucket URL with no prefix
 * would plan, list or describe every object of the bucket, none of them ours; instead this says so
 * and names the prefixes among the first keys that hold a replica (ERR_NO_REPLICA).
 */
export async function checkBucketRoot(source: ReplicaSource): Promise<void> {
  if (source.s3 === undefined || source.s3.prefix !== '') return;
  const { resolveSource } = await import('./options.js');
  const { restoreError, storageFailure } = await import('./errors.js');
  const r = resolveSource(source);
  const location = `s3://${source.s3.bucket}`;
  const found: string[] = [];
  let seen = 0;
  try {
    if (await r.storage.head('database.json')) return;
    for await (const o of r.storage.list({ prefix: '', pageSize: LOOK_AT_KEYS })) {
      if (++seen > LOOK_AT_KEYS) break;
      if (o.key.endsWith('/database.json')) found.push(o.key.slice(0, -'/database.json'.length));
    }
  } catch (e) {
    throw storageFailure(e, `looking for a replica at the root of ${location}`);
  } finally {
    r.close();
  }
  const named = found.slice(0, 10).map((p) => `${location}/${p}`);
  throw restoreError(
    'ERR_NO_REPLICA',
    `no walship replica at the root of ${location} (no database.json there); name the database's prefix: s3://${source.s3.bucket}/<prefix>. ` +
      (named.length > 0 ? `Replicas among the first ${Math.min(seen, LOOK_AT_KEYS)} keys: ${named.join(', ')}` : `None of the first ${Math.min(seen, LOOK_AT_KEYS)} keys is a replica's database.json`),
    { location, prefixes: found.slice(0, 10), keysLooked: Math.min(seen, LOOK_AT_KEYS) },
  );
}
