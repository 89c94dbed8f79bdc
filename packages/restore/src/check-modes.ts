/**
 * What a restore runs on its finished file before moving it into place: `full` is PRAGMA
 * integrity_check, `quick` PRAGMA quick_check (index entries are not matched against their table's
 * rows: linear in the file instead of N log N), `none` no SQLite check. Every mode reads the file
 * back from the device and checks its size and checksum against the replica's. (A module of its
 * own, importing nothing: the CLI checks `--integrity-check` before it loads SQLite.)
 */
export type IntegrityCheckMode = 'full' | 'quick' | 'none';
export const INTEGRITY_CHECK_MODES: readonly IntegrityCheckMode[] = ['full', 'quick', 'none'];

/** The pragma each mode that asks SQLite runs. */
export const CHECK_PRAGMA = { full: 'integrity_check', quick: 'quick_check' } as const;
export type SqliteCheckMode = keyof typeof CHECK_PRAGMA;

/** What the CLI prints for each mode after a restore. */
export const CHECKED: Readonly<Record<IntegrityCheckMode, string>> = {
  full: 'size, checksum (read back), PRAGMA integrity_check',
  quick: 'size, checksum (read back), PRAGMA quick_check',
  none: 'size, checksum (read back); no SQLite check (--integrity-check none)',
};
