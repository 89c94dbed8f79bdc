// Reading a GET response's body: the S3 client's (readBody) and the ranged reader's share the
// error for a body that ends before its Content-Length.

/** A GET body shorter than its Content-Length: the connection dropped mid-body. Retryable. */
export class TruncatedBodyError extends Error {
  readonly code = 'ERR_STORAGE_TRUNCATED';
  constructor(got: number, expected: number) {
    super(`response body ended after ${got} of ${expected} bytes`);
    this.name = 'TruncatedBodyError';
  }
}

/**
 * A response body's bytes. With `into` and a Content-Length that fits it, they are read straight
 * into `into` (a view of it is returned); otherwise into one new buffer.
 */
export async function readBody(body: unknown, signal: AbortSignal, into?: Uint8Array, contentLength?: number): Promise<Uint8Array> {
  if (body === undefined || body === null) return new Uint8Array(0);
  const stream = body as AsyncIterable<Uint8Array> & { destroy?: (e?: Error) => void };
  // The handler destroys the request on abort, but a response already handed over is not always
  // its socket's only reader; destroy it too so a stalled body cannot outlive the attempt.
  const onAbort = () => stream.destroy?.(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal.aborted) onAbort();
    const chunks: Uint8Array[] = [];
    let total = 0;
    // The caller's buffer while the body fits it; undefined once it does not (or without one).
    let target = into !== undefined && contentLength !== undefined && contentLength <= into.byteLength ? into : undefined;
    let filled = 0;
    for await (const chunk of stream) {
      // An attempt that timed out must not write into a buffer the next attempt fills.
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      if (target !== undefined) {
        if (filled + chunk.byteLength <= target.byteLength) {
          target.set(chunk, filled);
          filled += chunk.byteLength;
          continue;
        }
        // More than the Content-Length said: collect the rest (the caller's length check fails it).
        chunks.push(target.slice(0, filled));
        total = filled;
        target = undefined;
      }
      chunks.push(chunk);
      total += chunk.byteLength;
    }
    if (target !== undefined) return target.subarray(0, filled);
    if (chunks.length === 1) return chunks[0]!;
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
