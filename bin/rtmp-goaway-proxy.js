#!/usr/bin/env node
// Entry point of the CLI. Runs the compiled code (built by `npm ci` through the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(compiled))) {
  console.error('rtmp-goaway-proxy: dist/ is missing; run `npm ci` (or `npm run build`) first');
  process.exit(1);
}
const { main } = await import(compiled.href);
await main(process.argv);
