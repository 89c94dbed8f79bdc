import { setTimeout as delay } from 'node:timers/promises';
import { WalshipError } from '@walship/vfs';
import type { ObjectStorage } from '@walship/storage';
import { LeaseLostError, type Lease } from '@walship/lease';
import type { ResolvedOptions } from './options.js';
import type { Logger } from './log.js';
import type { ShipperMetrics } from './metrics.js';

/** A failure as status() reports it. */
export interface ErrorInfo {
  code: string;
  message: string;
  at: string;
}

export interface UploadContext {
  storage: ObjectStorage;
  /** null: lease: false. */
  lease: Lease | null;
  /** Per-request timeout of the store: uploads start only if one fits before the lease deadline. */
  requestTimeoutMs: number;
  options: ResolvedOptions;
  log: Logger;
  metrics: ShipperMetrics;
}

/**
 * The upload pipeline: PUTs one object at a time (the caller awaits each), retrying with backoff,
 * gated by the lease. It owns the stop signal, the lease loss that ended uploads, and the last
 * error status() reports (uploads clear it when one lands; the coordinator notes checkpoint and
 * fatal failures into it).
 */
export class UploadPipeline {
  /** Set by stop(): no upload starts or retries after it. */
  stopped = false;
  private leaseError: LeaseLostError | null = null;
  /** The lease ran out and is being re-acquired (see heal.ts): no upload starts or lands meanwhile. */
  private leaseless: LeaseLostError | null = null;
  private last: ErrorInfo | null = null;
  private readonly abort = new AbortController();
  private uploadSignal: AbortSignal | null = null;

  /** `epoch`: the writer's current epoch, named in a lease error. */
  constructor(
    private readonly ctx: UploadContext,
    private readonly epoch: () => number,
  ) {}

  get lastError(): ErrorInfo | null {
    return this.last;
  }

  noteError(error: ErrorInfo): void {
    this.last = error;
  }

  /** Records the lease loss uploads fail with from now on; false when one was recorded already. */
  recordLeaseLoss(e: LeaseLostError): boolean {
    if (this.leaseError) return false;
    this.leaseError = e;
    return true;
  }

  /**
   * Uploads fail with `e` until resumeAfterLease(), also once the lease is held again: an upload of
   * the lost grant's epoch never lands under the new grant (the coordinator waits for the run that
   * started it to end before it changes the epoch).
   */
  pauseForLease(e: LeaseLostError): void {
    this.leaseless = e;
  }

  resumeAfterLease(): void {
    this.leaseless = null;
  }

  /** Aborts uploads and retry waits in flight; `reason` becomes the abort reason. */
  abortAll(reason?: unknown): void {
    this.abort.abort(reason);
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  /** PUTs one object, retrying with exponential backoff and jitter until it lands or the shipper stops. */
  async upload(key: string, body: () => AsyncIterable<Uint8Array>, what: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new WalshipError('ERR_CLOSED', `shipper stopped before ${key} was uploaded`, { details: { key } });
      await this.leaseGate(key);
      try {
        const signal = this.ctx.lease ? AbortSignal.any([this.abort.signal, this.leaseSignal()]) : this.abort.signal;
        const res = await this.ctx.storage.putStream(key, body(), { signal });
        this.assertLease(key);
        if (this.last) this.ctx.log.info('object store reachable again', { key });
        this.last = null;
        return res.size;
      } catch (e) {
        if (this.stopped) throw e;
        if (isFormatBug(e)) throw e;
        // Create-only PUTs: someone else's object under this writer's key. Never overwrite it.
        if ((e as { code?: string }).code === 'ERR_STORAGE_PRECONDITION_FAILED') throw e;
        if (this.ctx.lease && this.ctx.lease.state !== 'held') throw this.leaseError ?? e;
        const err = e as Error & { code?: string };
        this.last = { code: err.code ?? 'ERR_UNKNOWN', message: err.message, at: new Date().toISOString() };
        this.ctx.metrics.uploadFailures.inc();
        const wait = Math.min(this.ctx.options.backoffMaxMs, this.ctx.options.backoffBaseMs * 2 ** Math.min(attempt, 20)) * Math.random();
        this.ctx.log.warn(`${what} upload failed; retrying`, { key, attempt: attempt + 1, code: err.code, error: err.message, retryInMs: Math.round(wait) });
        await delay(wait, undefined, { signal: this.abort.signal }).catch(() => undefined);
      }
    }
  }

  /** One lease watch shared by uploads until it fires (each watch is a timer inside the lease). */
  private leaseSignal(): AbortSignal {
    if (!this.uploadSignal || this.uploadSignal.aborted) this.uploadSignal = this.ctx.lease!.abortSignalForUpload();
    return this.uploadSignal;
  }

  /** Waits until an upload can finish before the lease deadline (renewals move it), or throws on loss. */
  private async leaseGate(key: string): Promise<void> {
    const lease = this.ctx.lease;
    if (!lease) return;
    while (this.leaseless || !lease.canStartUpload(this.ctx.requestTimeoutMs)) {
      this.assertLease(key);
      if (this.stopped) throw new WalshipError('ERR_CLOSED', `shipper stopped before ${key} was uploaded`, { details: { key } });
      await delay(10);
    }
  }

  private assertLease(key: string): void {
    const lease = this.ctx.lease;
    if (this.leaseless) throw this.leaseless;
    if (lease && lease.state !== 'held') {
      throw this.leaseError ?? new LeaseLostError({ epoch: this.epoch(), reason: 'expired', key } as never);
    }
  }
}

/** Errors a retry cannot fix: a format bug, a lost spool, a dead or stuck encoder worker. */
function isFormatBug(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? '';
  return e instanceof WalshipError ? ['ERR_SNAPSHOT_MISMATCH', 'ERR_SPOOL_LOST', 'ERR_INTERNAL', 'ERR_SNAPSHOT_READ', 'ERR_SHIPPER_WORKER_CRASHED', 'ERR_SHIPPER_WORKER_STALLED'].includes(code) : (e as Error)?.name === 'FormatError';
}
