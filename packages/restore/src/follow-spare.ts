import { constants as fsConstants } from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { removeScratch, scratchPath } from './restore.js';

/**
 * The follower's next scratch file, made ahead: after each change of the replica file a copy of
 * it is started in the background and made durable, so that the next batch of segments is applied
 * to a file that already exists. Copying a whole file and syncing that copy (about 15-20 ms and
 * 40 ms for 64 MiB on this project's test machine) then happen between batches, not between a
 * segment's arrival and its apply; only the pages the batch writes are synced on the path.
 *
 * A spare is a copy of one state of the file, named by the caller's `version` (a counter the
 * follower moves whenever the file at its path changes); a spare of another version is removed,
 * never used. It is a scratch file beside the target (`<path>.walship-follow-<pid>-<random>`),
 * removed by close() or, after a crash, by the next follower or restore of that path.
 */
export class SpareCopy {
  readonly #path: string;
  readonly #mode: number;
  #pending: { version: number; scratch: string; ready: Promise<boolean> } | null = null;

  constructor(path: string, options: { mode: number }) {
    this.#path = path;
    this.#mode = options.mode;
  }

  /** Starts a spare of the file as it is now, which is state `version`; any older spare goes. */
  prepare(version: number): void {
    this.discard();
    const scratch = scratchPath(this.#path, 'follow');
    const ready = (async (): Promise<boolean> => {
      // A reflink where the filesystem has them (btrfs, xfs), a kernel copy elsewhere.
      await copyFile(this.#path, scratch, fsConstants.COPYFILE_FICLONE);
      const file = await open(scratch, 'r+');
      try {
        await file.chmod(this.#mode);
        await file.sync();
      } finally {
        await file.close();
      }
      return true;
    })().catch(() => {
      // The caller copies on its own path instead (and reports what fails there).
      removeScratch(scratch);
      return false;
    });
    this.#pending = { version, scratch, ready };
  }

  /**
   * The spare of state `version` (waiting for it if it is still being made), now the caller's
   * file; null when there is none, it failed, or it is of another state (then it is removed).
   */
  async take(version: number): Promise<string | null> {
    const p = this.#pending;
    this.#pending = null;
    if (p === null) return null;
    const ok = await p.ready;
    if (ok && p.version === version) return p.scratch;
    removeScratch(p.scratch);
    return null;
  }

  /** Removes the spare, once it is made if it is being made. */
  discard(): void {
    const p = this.#pending;
    this.#pending = null;
    if (p !== null) void p.ready.then(() => removeScratch(p.scratch));
  }

  /** Removes the spare and waits until it is gone. */
  async close(): Promise<void> {
    const p = this.#pending;
    this.#pending = null;
    if (p === null) return;
    await p.ready;
    removeScratch(p.scratch);
  }
}
