/**
 * The fencing rule, part of the on-store contract: every object carries the epoch of the writer
 * that made it, and each epoch's marker names the first txid it ships. An object of epoch e counts
 * only for txids in [start(e), start(next epoch)): a writer that lost its lease can still land
 * objects late, but never inside a range a later epoch owns, so restore ignores them.
 */
export function acceptable(epochs: ReadonlyMap<number, number | { startTxid: number }>, epoch: number, minTxid: number, maxTxid: number): boolean {
  const own = epochs.get(epoch);
  const start = typeof own === 'number' ? own : own?.startTxid;
  if (start === undefined || minTxid < start) return false;
  let next = Infinity;
  for (const [e, info] of epochs) {
    const s = typeof info === 'number' ? info : info.startTxid;
    if (e > epoch && s < next) next = s;
  }
  return maxTxid < next;
}
