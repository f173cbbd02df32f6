/**
 * dist/ as `bin/` runs it: built with `npm run build` when missing or older than src/ (the test
 * suite itself runs src/ through tsx; tests of the shipped entry point and the bench need dist/).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds `root`/dist when it is missing or older than `root`/src; true when it built. */
export function ensureDist(root: string, log: (msg: string) => void = () => {}): boolean {
  const built = join(root, 'dist/app.js');
  if (existsSync(built) && statSync(built).mtimeMs >= newest(join(root, 'src'))) return false;
  log(`${root}/dist is missing or older than src/: npm run build`);
  const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error('npm run build failed');
  return true;
}
