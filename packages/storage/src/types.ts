/**
 * The storage seam: the handful of object-store operations walship needs. The shipper writes through
 * it, restore reads through it, and the contract suite in test/ runs against every implementation.
 * Keys are full object keys (the prefix is already applied by the caller).
 */
export interface ObjectInfo {
  key: string;
  size: number;
  etag?: string;
  lastModified?: Date;
}

export interface PutOptions {
  /** Send `If-None-Match: *` (create-only). Stores without conditional writes fail with ERR_STORAGE_UNSUPPORTED. */
  ifNoneMatch?: boolean;
  /** Abort the request (a fenced writer cancels in-flight uploads with this). */
  signal?: AbortSignal;
  contentType?: string;
}

export interface PutStreamOptions extends PutOptions {
  /** Multipart part size in bytes (>= 5 MiB; default 8 MiB). Bodies below one part are a single PUT. */
  partSize?: number;
}

export interface GetOptions {
  /** Inclusive byte range. */
  range?: { start: number; end: number };
  signal?: AbortSignal;
  /**
   * The version of the object this read belongs to: an answer with another ETag fails with
   * ERR_STORAGE_OBJECT_CHANGED (the object was replaced since `etag` was learned). Compared on the
   * response, so every store supports it; a store that sends no ETag is not checked.
   */
  etag?: string;
  /** Told the ETag of the answer (undefined when the store sent none), to pass as `etag` to later reads. */
  onEtag?: (etag: string | undefined) => void;
  /**
   * A buffer the store may read the body into, and return a view of, when the body fits: a caller
   * that recycles buffers saves an allocation per GET (and, on Linux, faulting in its fresh pages).
   * A hint: check `result.buffer === into.buffer` before assuming it was used. Its bytes are
   * unspecified after a failed or null answer. One buffer per request in flight: two GETs given
   * the same buffer at once overwrite each other.
   */
  into?: Uint8Array;
}

export interface ListOptions {
  prefix: string;
  /** Keys strictly after this one (any string, in UTF-8 byte order). */
  startAfter?: string;
  /** Page size for each LIST request (the iterator pages through everything). */
  pageSize?: number;
  signal?: AbortSignal;
}

/** One HTTP request made to the store, for metrics and cost accounting. */
export interface RequestEvent {
  operation: 'put' | 'get' | 'head' | 'list' | 'delete' | 'multipart';
  key?: string;
  /** Bytes sent (put) or received (get). */
  bytes: number;
  /** HTTP status, or 0 when no response arrived. */
  status: number;
  durationMs: number;
  /** 1 for the first try. */
  attempt: number;
  error?: string;
}

export interface ObjectStorage {
  /** Human-readable location for messages and logs, e.g. `s3://bucket/prefix`. */
  readonly location: string;
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }>;
  /** Streams a body of unknown length; multipart above one part. */
  putStream(key: string, body: AsyncIterable<Uint8Array>, options?: PutStreamOptions): Promise<{ etag?: string; size: number }>;
  /** The object's bytes, or null when it does not exist. */
  get(key: string, options?: GetOptions): Promise<Uint8Array | null>;
  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | null>;
  /** Every key under the prefix after startAfter, in key order, paging as needed. */
  list(options: ListOptions): AsyncIterable<ObjectInfo>;
  /** Deletes the keys (batched); missing keys are not an error. */
  delete(keys: readonly string[], options?: { signal?: AbortSignal }): Promise<void>;
}
