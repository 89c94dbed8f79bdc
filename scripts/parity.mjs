#!/usr/bin/env node
// Runs better-sqlite3's own mocha suite (tag v12.11.1, 311 tests) against walship's Database. The
// suite is their code: it stays outside this repository. This script extracts it from a git
// directory of better-sqlite3 into a scratch folder, installs the suite's test tools there (mocha,
// chai, fs-extra) with npm if they are missing, and runs it through a shim whose whole content is
// `module.exports = Database` (walship's class), after `await Database.ready()`.
//
//   node scripts/parity.mjs --git-dir <better-sqlite3 .git> [--dir /tmp/bs3-tests] [--tag v12.11.1]
//                           [--grep <pattern>] [--json <file>]
//
// (BS3_GIT_DIR may name the git directory instead.) Prints passed/failed/total, then each failure
// grouped by cause. Exit 0 when at least --min tests passed (default 0: report only).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execFileSync, execSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dir = resolve(opt('dir', '/tmp/bs3-tests'));
const tag = opt('tag', 'v12.11.1');
const gitDir = opt('git-dir', process.env.BS3_GIT_DIR);
const grep = opt('grep', undefined);
const min = Number(opt('min', '0'));
const jsonOut = opt('json', undefined);

if (!existsSync(join(dir, 'test', '00.setup.js'))) {
  if (!gitDir) {
    console.error(`parity: no suite in ${dir}/test; pass --git-dir <a git directory of better-sqlite3> (or BS3_GIT_DIR)`);
    process.exit(2);
  }
  mkdirSync(dir, { recursive: true });
  execSync(`git --git-dir=${JSON.stringify(gitDir)} archive ${tag} test | tar -x -C ${JSON.stringify(dir)}`, { stdio: 'inherit' });
}
if (!existsSync(join(dir, 'package.json'))) writeFileSync(join(dir, 'package.json'), '{"name":"bs3-suite","private":true}\n');
const need = { mocha: '11', chai: '4', 'fs-extra': '11' };
const req = createRequire(join(dir, 'package.json'));
const missing = Object.keys(need).filter((m) => {
  try {
    req.resolve(m);
    return false;
  } catch {
    return true;
  }
});
if (missing.length) {
  console.log(`parity: installing ${missing.join(', ')} into ${dir} (outside the repository)`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-save', ...missing.map((m) => `${m}@${need[m]}`)], { cwd: dir, stdio: 'inherit' });
}

// The shim: the suite requires '../.' for the Database class.
const vfsEntry = join(root, 'packages', 'vfs', 'dist', 'index.js');
writeFileSync(join(dir, 'index.js'), `'use strict';\nmodule.exports = globalThis[Symbol.for('walship.parity.Database')];\n`);
const { Database } = await import(vfsEntry);
await Database.ready();
globalThis[Symbol.for('walship.parity.Database')] = Database;

process.chdir(dir);
const Mocha = req('mocha');
const mocha = new Mocha({ timeout: 5000, reporter: function Silent() {} });
if (grep) mocha.grep(grep);
const files = execSync('ls test/*.js', { encoding: 'utf8' }).trim().split('\n').sort();
for (const f of files) mocha.addFile(join(dir, f));

const results = [];
await new Promise((done) => {
  const runner = mocha.run(() => done());
  runner.on('pass', (t) => results.push({ title: t.fullTitle(), file: t.file, ok: true }));
  runner.on('fail', (t, err) => results.push({ title: t.fullTitle(), file: t.file, ok: false, err }));
});

const passed = results.filter((r) => r.ok).length;
const failed = results.filter((r) => !r.ok);
/** A short cause for grouping: the error class and message with paths and numbers blurred. */
function cause(err) {
  const name = err?.constructor?.name ?? typeof err;
  const msg = String(err?.message ?? err).split('\n')[0].replace(/\/[^\s'"]+/g, '<path>').replace(/\d+/g, 'N').slice(0, 140);
  return `${name}: ${msg}`;
}
const groups = new Map();
for (const f of failed) {
  const key = cause(f.err);
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(f);
}
console.log(`better-sqlite3 ${tag} suite against walship: ${passed} passed, ${failed.length} failed, ${results.length} total`);
for (const [key, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
  console.log(`\n[${list.length}] ${key}`);
  for (const f of list) console.log(`    ${f.file.split('/').pop()}: ${f.title}`);
}
if (jsonOut) {
  writeFileSync(jsonOut, JSON.stringify({ tag, passed, failed: failed.length, total: results.length, failures: failed.map((f) => ({ file: f.file.split('/').pop(), title: f.title, cause: cause(f.err) })) }, null, 2));
}
process.exit(passed >= min ? 0 : 1);
