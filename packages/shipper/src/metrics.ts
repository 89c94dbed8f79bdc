import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestEvent } from '@walship/storage';

/** S3 Standard request prices (us-east-1, per request): PUT/COPY/POST/LIST and GET/HEAD. */
export const S3_PRICES = { writeRequest: 0.005 / 1000, readRequest: 0.0004 / 1000, storageGbMonth: 0.023 };
const HOURS_PER_MONTH = 730;

export interface RequestRates {
  /** Requests and bytes over the last hour (or since start, scaled to an hour when younger). */
  putsPerHour: number;
  getsPerHour: number;
  listsPerHour: number;
  deletesPerHour: number;
  bytesUploadedPerHour: number;
  bytesDownloadedPerHour: number;
  /** Requests at this rate for a month at S3 Standard prices, plus storage of the bytes added. */
  projectedMonthlyUsd: number;
}

interface Minute {
  minute: number;
  put: number;
  get: number;
  list: number;
  del: number;
  up: number;
  down: number;
}

/** Counts requests per minute for the last hour, for the cost projection in status(). */
class RequestWindow {
  private readonly minutes: Minute[] = [];
  private readonly started = Date.now();

  add(e: RequestEvent): void {
    const minute = Math.floor(Date.now() / 60_000);
    let m = this.minutes.at(-1);
    if (!m || m.minute !== minute) {
      m = { minute, put: 0, get: 0, list: 0, del: 0, up: 0, down: 0 };
      this.minutes.push(m);
      while (this.minutes.length > 0 && this.minutes[0]!.minute <= minute - 60) this.minutes.shift();
    }
    if (e.operation === 'put' || e.operation === 'multipart') m.put++;
    else if (e.operation === 'get' || e.operation === 'head') m.get++;
    else if (e.operation === 'list') m.list++;
    else m.del++;
    if (e.operation === 'put' || e.operation === 'multipart') m.up += e.bytes;
    else m.down += e.bytes;
  }

  rates(): RequestRates {
    const now = Date.now();
    const cutoff = Math.floor(now / 60_000) - 60;
    const sum = { put: 0, get: 0, list: 0, del: 0, up: 0, down: 0 };
    for (const m of this.minutes) {
      if (m.minute <= cutoff) continue;
      sum.put += m.put;
      sum.get += m.get;
      sum.list += m.list;
      sum.del += m.del;
      sum.up += m.up;
      sum.down += m.down;
    }
    const hours = Math.max(Math.min((now - this.started) / 3600_000, 1), 1 / 60);
    const per = (n: number): number => n / hours;
    const monthlyWrites = (per(sum.put) + per(sum.list)) * HOURS_PER_MONTH * S3_PRICES.writeRequest;
    const monthlyReads = per(sum.get) * HOURS_PER_MONTH * S3_PRICES.readRequest;
    const monthlyStorage = ((per(sum.up) * HOURS_PER_MONTH) / 1e9) * S3_PRICES.storageGbMonth;
    return {
      putsPerHour: per(sum.put),
      getsPerHour: per(sum.get),
      listsPerHour: per(sum.list),
      deletesPerHour: per(sum.del),
      bytesUploadedPerHour: per(sum.up),
      bytesDownloadedPerHour: per(sum.down),
      projectedMonthlyUsd: monthlyWrites + monthlyReads + monthlyStorage,
    };
  }
}

export interface MetricsSource {
  committedTxid(): number;
  durableTxid(): number;
  pendingTransactions(): number;
  pendingWalBytes(): number;
  walBytes(): number;
  epoch(): number;
}

/** Prometheus metrics of one replicated database, in a registry of its own. */
export class ShipperMetrics {
  readonly registry = new Registry();
  readonly requests = new RequestWindow();
  readonly committed: Counter;
  readonly shipped: Counter;
  readonly segments: Counter;
  readonly segmentBytes: Counter;
  readonly walBytesShipped: Counter;
  readonly snapshots: Counter;
  readonly snapshotBytes: Counter;
  readonly checkpoints: Counter;
  readonly uploadFailures: Counter;
  readonly s3Requests: Counter<'operation' | 'outcome'>;
  readonly s3Bytes: Counter<'direction'>;
  readonly deletedObjects: Counter;
  readonly spooled: Counter;
  readonly leaseLost: Counter;
  readonly leaseReacquired: Counter;
  readonly lag: Histogram;

  constructor(database: string, source: MetricsSource) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ database });
    const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
    this.committed = counter('walship_transactions_committed_total', 'Transactions committed through the VFS');
    this.shipped = counter('walship_transactions_durable_total', 'Transactions durable in the object store');
    this.segments = counter('walship_segments_uploaded_total', 'Segment objects uploaded');
    this.segmentBytes = counter('walship_segment_bytes_total', 'Bytes of segment objects uploaded (compressed, encrypted)');
    this.walBytesShipped = counter('walship_wal_bytes_shipped_total', 'WAL bytes covered by the segments uploaded');
    this.snapshots = counter('walship_snapshots_uploaded_total', 'Snapshot objects uploaded');
    this.snapshotBytes = counter('walship_snapshot_bytes_total', 'Bytes of snapshot objects uploaded');
    this.checkpoints = counter('walship_checkpoints_total', 'WAL checkpoints run after the frames were durable');
    this.uploadFailures = counter('walship_upload_failures_total', 'Segment or snapshot uploads that failed and were retried');
    this.leaseLost = counter('walship_lease_lost_total', 'Times this writer lost its lease and stopped');
    this.leaseReacquired = counter('walship_lease_reacquired_total', 'Times this writer re-acquired its lease under a new epoch after it ran out with nobody else taking it');
    this.spooled = counter('walship_transactions_spooled_total', 'In-flight transactions written to the local spool so a checkpoint could run under continuous writes');
    this.deletedObjects = counter('walship_objects_deleted_total', 'Objects deleted by retention and compaction');
    this.s3Requests = new Counter({ name: 'walship_s3_requests_total', help: 'Object store requests', labelNames: ['operation', 'outcome'], registers });
    this.s3Bytes = new Counter({ name: 'walship_s3_bytes_total', help: 'Object store bytes', labelNames: ['direction'], registers });
    this.lag = new Histogram({
      name: 'walship_replication_lag_seconds',
      help: 'Time from commit to durable in the object store, per transaction',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.1, 1.5, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    gauge('walship_committed_txid', 'Last committed txid', () => source.committedTxid());
    gauge('walship_durable_txid', 'Last txid durable in the object store', () => source.durableTxid());
    gauge('walship_pending_transactions', 'Committed transactions not yet durable', () => source.pendingTransactions());
    gauge('walship_pending_wal_bytes', 'WAL bytes of transactions not yet durable', () => source.pendingWalBytes());
    gauge('walship_wal_bytes', 'Size of the -wal file', () => source.walBytes());
    gauge('walship_epoch', 'Fencing epoch of this writer', () => source.epoch());
    gauge('walship_s3_projected_monthly_cost_usd', 'Projected monthly S3 Standard cost at the last hour rate', () => this.requests.rates().projectedMonthlyUsd);
  }

  request(e: RequestEvent): void {
    this.requests.add(e);
    const outcome = e.status >= 200 && e.status < 300 ? 'ok' : e.status === 404 ? 'not_found' : 'error';
    this.s3Requests.inc({ operation: e.operation, outcome });
    if (e.operation === 'put' || e.operation === 'multipart') this.s3Bytes.inc({ direction: 'up' }, e.bytes);
    else this.s3Bytes.inc({ direction: 'down' }, e.bytes);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
