#!/usr/bin/env node
// The quick-start job (`pnpm demo`, same as `walship demo`): local S3 server, writes through the
// replicating VFS with live progress, restore of a fresh node, proof that it equals the source.
//   node scripts/demo.mjs [seconds] [--keep]
import { runDemo } from '../packages/demo/dist/index.js';

const args = process.argv.slice(2);
const seconds = Number(args.find((a) => /^\d+(\.\d+)?$/.test(a)) ?? 10);
const result = await runDemo({ seconds, keep: args.includes('--keep') });
process.exit(result.ok ? 0 : 1);
