import type { ShipperContext } from './shipper.js';
import type { Shipper } from './shipper.js';
import { formatKeys, parseObjectKey } from '@walship/format';

/**
 * Retention: keeps every point of the retention window restorable to the exact txid and deletes
 * what no such restore needs. It runs at most every maintenanceIntervalMs and is the only place
 * a writer LISTs after start-up.
 */
export class Maintenance {
  private lastRun = Date.now();
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly ctx: ShipperContext & { shipper: Shipper }) {}

  poke(): void {
    const o = this.ctx.options;
    if (this.stopped || this.running || o.retentionMs === 0) return;
    if (Date.now() - this.lastRun < o.maintenanceIntervalMs) return;
    this.lastRun = Date.now();
    this.running = this.run()
      .then(() => undefined)
      .catch((e: unknown) => this.ctx.log.warn('retention pass failed; the next one tries again', { error: (e as Error).message }))
      .finally(() => {
        this.running = null;
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** One pass; exported through the shipper for tests and the CLI. */
  async run(now = Date.now()): Promise<{ deleted: string[] }> {
    const { storage, options, shipper } = this.ctx;
    const generation = shipper.generation;
    if (!generation) return { deleted: [] };
    const keys = formatKeys(options.prefix);
    const cutoff = now - options.retentionMs;
    const snapshots: { key: string; txid: number; at: number }[] = [];
    for await (const obj of storage.list({ prefix: keys.snapshotDir(generation) })) {
      const parsed = parseObjectKey(options.prefix, obj.key);
      if (parsed?.kind === 'snapshot') snapshots.push({ key: obj.key, txid: parsed.txid, at: obj.lastModified?.getTime() ?? now });
    }
    snapshots.sort((a, b) => a.txid - b.txid);
    // The newest snapshot taken at or before the cutoff is where a restore to the cutoff starts.
    let base: (typeof snapshots)[number] | undefined;
    for (const s of snapshots) if (s.at <= cutoff) base = s;
    if (!base) return { deleted: [] };
    const doomed: string[] = [];
    for (const s of snapshots) if (s.txid < base.txid) doomed.push(s.key);
    // Segments never straddle a snapshot's txid, so every segment that starts below it ends below it.
    for await (const obj of storage.list({ prefix: keys.levelDir(generation, 0) })) {
      const parsed = parseObjectKey(options.prefix, obj.key);
      if (parsed?.kind !== 'segment') continue;
      if (parsed.minTxid >= base.txid) break;
      doomed.push(obj.key);
    }
    // Older generations hold only points before this generation began, which is before the cutoff.
    for await (const obj of storage.list({ prefix: keys.root() })) {
      const parsed = parseObjectKey(options.prefix, obj.key);
      if (!parsed || !('generation' in parsed) || !parsed.generation) continue;
      if (parsed.generation >= generation) break;
      doomed.push(obj.key);
    }
    if (doomed.length > 0) {
      await storage.delete(doomed);
      this.ctx.metrics.deletedObjects.inc(doomed.length);
      this.ctx.log.info('retention deleted objects', { count: doomed.length, baseSnapshotTxid: base.txid });
    }
    return { deleted: doomed };
  }
}
