/**
 * better-sqlite3 is compiled with SQLITE_TRACE_SIZE_LIMIT=32: in the SQL its `verbose` option logs,
 * a bound text or blob longer than 32 bytes is cut there and followed by `/*+N bytes*\/`. The WASM
 * build expands values in full, so the expanded SQL is cut here the same way. Only the verbose path
 * calls this.
 */

const LIMIT = 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where the host parameter starting at `i` ends, or -1 if none starts there. */
function parameterEnd(sql: string, i: number): number {
  const c = sql[i];
  if (c === '?') {
    let j = i + 1;
    while (j < sql.length && sql[j]! >= '0' && sql[j]! <= '9') j++;
    return j;
  }
  if (c === ':' || c === '@' || c === '$') {
    let j = i + 1;
    while (j < sql.length && /[\p{L}\p{N}_$]/u.test(sql[j]!)) j++;
    return j > i + 1 ? j : -1;
  }
  return -1;
}

/** Where the literal, comment or quoted name starting at `i` ends, or -1 if none starts there. */
function skipEnd(sql: string, i: number): number {
  const c = sql[i];
  if (c === "'" || c === '"' || c === '`') {
    let j = i + 1;
    for (;;) {
      const k = sql.indexOf(c, j);
      if (k < 0) return sql.length;
      if (sql[k + 1] === c) j = k + 2;
      else return k + 1;
    }
  }
  if (c === '[') {
    const k = sql.indexOf(']', i);
    return k < 0 ? sql.length : k + 1;
  }
  if (c === '-' && sql[i + 1] === '-') {
    const k = sql.indexOf('\n', i);
    return k < 0 ? sql.length : k + 1;
  }
  if (c === '/' && sql[i + 1] === '*') {
    const k = sql.indexOf('*/', i + 2);
    return k < 0 ? sql.length : k + 2;
  }
  return -1;
}

/** The literal SQLite wrote for a bound value at `j` of the expanded SQL: its end and, if cut, its shorter form. */
function literal(expanded: string, j: number): { end: number; text: string } | null {
  if (expanded.startsWith("'", j)) {
    let k = j + 1;
    for (;;) {
      const q = expanded.indexOf("'", k);
      if (q < 0) return null;
      if (expanded[q + 1] === "'") k = q + 2;
      else {
        const value = expanded.slice(j + 1, q).replace(/''/g, "'");
        const bytes = encoder.encode(value);
        if (bytes.length <= LIMIT) return { end: q + 1, text: expanded.slice(j, q + 1) };
        let n = LIMIT;
        while (n < bytes.length && (bytes[n]! & 0xc0) === 0x80) n++;
        const cut = decoder.decode(bytes.subarray(0, n)).replace(/'/g, "''");
        return { end: q + 1, text: n < bytes.length ? `'${cut}'/*+${bytes.length - n} bytes*/` : `'${cut}'` };
      }
    }
  }
  if (expanded.startsWith("x'", j)) {
    const q = expanded.indexOf("'", j + 2);
    if (q < 0) return null;
    const hex = expanded.slice(j + 2, q);
    const bytes = hex.length / 2;
    return { end: q + 1, text: bytes > LIMIT ? `x'${hex.slice(0, LIMIT * 2)}'/*+${bytes - LIMIT} bytes*/` : expanded.slice(j, q + 1) };
  }
  const m = /^(?:NULL|zeroblob\(\d+\)|-?[0-9][0-9.eE+-]*|-?Inf)/.exec(expanded.slice(j, j + 64));
  return m ? { end: j + m[0].length, text: m[0] } : null;
}

/**
 * `expanded` (sqlite3_expanded_sql) with each long bound text or blob cut as better-sqlite3's build
 * cuts it. `sql` is the statement's own text (sqlite3_sql); the two are walked side by side, and if
 * they ever disagree the expanded SQL is returned as it is.
 */
export function limitTrace(sql: string, expanded: string): string {
  let out = '';
  let i = 0;
  let j = 0;
  let from = 0;
  while (i < sql.length) {
    const skip = skipEnd(sql, i);
    if (skip >= 0) {
      i = skip;
      continue;
    }
    const end = parameterEnd(sql, i);
    if (end < 0) {
      i++;
      continue;
    }
    const same = sql.slice(from, i);
    if (expanded.slice(j, j + same.length) !== same) return expanded;
    j += same.length;
    const lit = literal(expanded, j);
    if (!lit) return expanded;
    out += same + lit.text;
    j = lit.end;
    i = end;
    from = end;
  }
  const rest = sql.slice(from);
  return expanded.slice(j) === rest ? out + rest : expanded;
}
