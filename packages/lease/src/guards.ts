/**
 * The upload abort signals a holder hands out: each fires marginMs before the grant's deadline
 * (re-armed whenever a renewal moves it), or at once on loss or release.
 */

import { unref } from './dynamo.js';

interface UploadWatch {
  controller: AbortController;
  marginMs: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class UploadGuards {
  private readonly uploads = new Set<UploadWatch>();

  /**
   * `deadline()`: the current grant's deadline, null when there is none; `expiring()`: the abort
   * reason when a signal fires before the deadline moved.
   */
  constructor(private readonly clock: () => number, private readonly deadline: () => number | null, private readonly expiring: () => Error) {}

  add(marginMs: number): AbortSignal {
    const controller = new AbortController();
    const u: UploadWatch = { controller, marginMs, timer: undefined };
    this.uploads.add(u);
    this.arm(u);
    return controller.signal;
  }

  /** A renewal moved the deadline. */
  rearm(): void {
    for (const u of this.uploads) this.arm(u);
  }

  abortAll(reason: Error): void {
    for (const u of this.uploads) {
      if (u.timer !== undefined) clearTimeout(u.timer);
      u.controller.abort(reason);
    }
    this.uploads.clear();
  }

  private arm(u: UploadWatch): void {
    if (u.timer !== undefined) clearTimeout(u.timer);
    u.timer = undefined;
    const deadline = this.deadline();
    if (deadline === null || u.controller.signal.aborted) {
      this.uploads.delete(u);
      return;
    }
    const wait = deadline - u.marginMs - this.clock();
    if (wait <= 0) {
      this.uploads.delete(u);
      u.controller.abort(this.expiring());
      return;
    }
    u.timer = setTimeout(() => this.arm(u), wait);
    unref(u.timer);
  }
}
