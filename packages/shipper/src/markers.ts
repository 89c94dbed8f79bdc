import { hostname } from 'node:os';
import { sealMarker, type Keyring, type ObjectHeaderInit } from '@walship/format';
import type { DatabaseManifest, EpochMarker, GenerationMarker, Lineage } from './lineage.js';
import type { Logger } from './log.js';
import type { UploadPipeline } from './upload.js';
import { objectHeader, type ObjectRange } from './jobs.js';
import type { Compression } from './options.js';
import type { FirstImage } from './snapshots.js';

/** Why a new generation starts, and the generation and txid it branches from. */
export interface NewGeneration {
  reason: string;
  parent: { generation: string; txid: number } | null;
  /** The generation's snapshot is at txid 1, with no checkpoint first: this image of it, or the file with it applied (see snapshots.ts). */
  image?: FirstImage;
}

export interface MarkerContext {
  keys: {
    prefix: string;
    database(): string;
    generation(generation: string): string;
    epoch(generation: string, epoch: number): string;
  };
  keyring: Keyring | undefined;
  log: Logger;
  compression: Compression;
  uploads: UploadPipeline;
}

const encoder = new TextEncoder();

/**
 * The writer's place in the lineage: database id, generation, epoch, and the markers that record
 * them in the store (database.json, generation markers, epoch-start markers).
 */
export class LineageWriter {
  generation: string | null = null;
  epoch = 0;
  /** The current epoch's start marker is in the store. */
  epochMarked = false;
  private databaseId = '';
  private manifestWritten = false;
  private seq = 0;
  private epochs = new Map<number, number>();

  constructor(private readonly ctx: MarkerContext) {}

  /** At start-up: the replica's database id (or a new one), and the epoch this writer ships in. */
  open(o: { databaseId: string; manifestWritten: boolean; epoch: number }): void {
    this.databaseId = o.databaseId;
    this.manifestWritten = o.manifestWritten;
    this.epoch = o.epoch;
  }

  /** Carry on the replica's latest generation. */
  continueGeneration(lineage: Lineage): void {
    this.generation = lineage.generation;
    this.epochs = new Map(lineage.epochs);
    this.seq = 0;
  }

  /** Names the next generation and writes database.json (once) and its generation marker. */
  async beginGeneration(ng: NewGeneration, pageSize: number): Promise<void> {
    const epochHex = this.epoch.toString(16).padStart(8, '0');
    this.generation = `${epochHex}${(this.seq++).toString(16).padStart(8, '0')}`;
    this.ctx.log.with({ generation: this.generation });
    if (!this.manifestWritten) {
      const manifest: DatabaseManifest = {
        format: 1,
        databaseId: this.databaseId,
        pageSize,
        createdAt: new Date().toISOString(),
        ...(this.ctx.keyring ? { encrypted: true as const } : {}),
      };
      await this.putJson(this.ctx.keys.database(), manifest);
      this.manifestWritten = true;
    }
    const marker: GenerationMarker = {
      format: 1,
      generation: this.generation,
      databaseId: this.databaseId,
      epoch: this.epoch,
      reason: ng.reason,
      parent: ng.parent,
      createdAt: new Date().toISOString(),
    };
    await this.putJson(this.ctx.keys.generation(this.generation), marker);
  }

  /** The new generation's first epoch starts at its snapshot's txid; its marker is not written yet. */
  restartEpochs(txid: number): void {
    this.epochs = new Map([[this.epoch, txid]]);
    this.epochMarked = false;
  }

  /** A re-acquired lease: later objects carry `epoch`, and its start marker ships first (run() writes it). */
  newEpoch(epoch: number): void {
    this.epoch = epoch;
    this.epochMarked = false;
  }

  async markEpoch(startTxid: number): Promise<void> {
    const marker: EpochMarker = {
      format: 1,
      epoch: this.epoch,
      generation: this.generation!,
      startTxid,
      createdAt: new Date().toISOString(),
      writer: { host: hostname(), pid: process.pid },
    };
    await this.putJson(this.ctx.keys.epoch(this.generation!, this.epoch), marker);
    this.epochs.set(this.epoch, startTxid);
    this.epochMarked = true;
  }

  /** The header of an object of the current generation. */
  header(kind: 'segment' | 'snapshot', pageSize: number, txns: ObjectRange): ObjectHeaderInit {
    return objectHeader(kind, { databaseId: this.databaseId, generation: this.generation!, epoch: this.epoch, pageSize, compression: this.ctx.compression }, txns);
  }

  /** Markers are sealed with a MAC when the writer has keys (see @walship/format markers). */
  private async putJson(key: string, value: object): Promise<void> {
    const keyring = this.ctx.keyring;
    const marker = keyring ? sealMarker(value, { prefix: this.ctx.keys.prefix, key, keyring }) : value;
    const bytes = encoder.encode(`${JSON.stringify(marker, null, 2)}\n`);
    await this.ctx.uploads.upload(key, async function* () {
      yield bytes;
    }, 'marker');
  }
}
