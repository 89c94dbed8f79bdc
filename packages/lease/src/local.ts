/**
 * Who holds the lease, as far as this machine can tell: a holder recorded on this host whose
 * process is gone can be taken over at once instead of after leaseMs of silence (a restart after a
 * crash waited 11.4 s for its own dead predecessor). A pid alone proves nothing across machines,
 * containers or reboots, so the item also records the pid's space (boot id + pid namespace) and
 * the process's start time; without them the fast path is never taken.
 */

import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import process from 'node:process';

/** Where a process runs, as recorded on the lease item by every grant. */
export interface ProcessIdentity {
  host: string;
  pid: number;
  /**
   * `${boot id}/${pid namespace}` (Linux): two pids are comparable only when their spaces are
   * equal. Two containers can share a host name and a kernel (boot id) but not a pid namespace.
   * Empty when unknown (no /proc): then no holder is ever judged gone.
   */
  space: string;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid. Empty when unknown. */
  started: string;
}

function readOr(read: () => string): string {
  try {
    return read();
  } catch {
    return '';
  }
}

/** Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces and parentheses). */
export function processStartTicks(pid: number): string {
  const stat = readOr(() => readFileSync(`/proc/${pid}/stat`, 'utf8'));
  const end = stat.lastIndexOf(')');
  if (end < 0) return '';
  // After ") " come fields 3.. ; field 22 is index 19 of that list.
  const v = stat.slice(end + 2).split(' ')[19] ?? '';
  return /^[0-9]+$/.test(v) ? v : '';
}

export function selfIdentity(): ProcessIdentity {
  const boot = readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  const ns = readOr(() => readlinkSync('/proc/self/ns/pid'));
  return {
    host: hostname(),
    pid: process.pid,
    space: boot !== '' && ns !== '' ? `${boot}/${ns}` : '',
    started: processStartTicks(process.pid),
  };
}

export type HolderVerdict = { gone: true; why: 'pid-dead' | 'pid-reused' } | { gone: false; why: 'other-host' | 'unknown-space' | 'other-space' | 'self' | 'alive' };

/**
 * Whether the holder recorded in the item is a process of this machine's pid space that no longer
 * runs. `processAlive` is the caller's (the shipper passes @walship/vfs's). Every doubt answers
 * "not gone": the caller then waits out the lease as for any silent holder.
 */
export function localHolderGone(holder: Pick<ProcessIdentity, 'host' | 'pid' | 'space' | 'started'>, self: ProcessIdentity, processAlive: (pid: number) => boolean): HolderVerdict {
  if (holder.host !== self.host) return { gone: false, why: 'other-host' };
  if (self.space === '' || holder.space === '') return { gone: false, why: 'unknown-space' };
  if (holder.space !== self.space) return { gone: false, why: 'other-space' };
  if (!Number.isInteger(holder.pid) || holder.pid <= 0 || holder.pid === self.pid) return { gone: false, why: 'self' };
  if (!processAlive(holder.pid)) return { gone: true, why: 'pid-dead' };
  // The pid runs, but it may be another process that got the same number after the holder died.
  const started = processStartTicks(holder.pid);
  if (holder.started !== '' && started !== '' && started !== holder.started) return { gone: true, why: 'pid-reused' };
  return { gone: false, why: 'alive' };
}
