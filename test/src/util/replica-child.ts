// A child process that holds an openReplica database and runs queries on request (IPC). A replica's
// page reads block its thread while the fetch worker waits for S3: a fault proxy in the test
// process itself could not answer them, so the database lives here and the proxy stays in the parent.
import { openReplica, type OpenReplicaOptions, type ReplicaDatabase } from '@walship/restore';

export type ChildRequest = { op: 'open'; options: OpenReplicaOptions } | { op: 'get'; sql: string } | { op: 'status' } | { op: 'close' };
export type ChildReply = { ok: true; value: unknown } | { ok: false; error: { code?: string; message: string } };

let db: ReplicaDatabase | null = null;

async function handle(req: ChildRequest): Promise<unknown> {
  if (req.op === 'open') {
    db = await openReplica(req.options);
    return db.status();
  }
  if (!db) throw new Error('no replica open');
  if (req.op === 'get') return db.prepare(req.sql).get();
  if (req.op === 'status') return db.status();
  db.close();
  db = null;
  return null;
}

process.on('message', (req: ChildRequest) => {
  handle(req).then(
    (value) => process.send?.({ ok: true, value } satisfies ChildReply),
    (e: Error & { code?: string }) => process.send?.({ ok: false, error: { ...(e.code ? { code: e.code } : {}), message: e.message } } satisfies ChildReply),
  );
});
