import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayers, describe } from '../../scripts/check-layers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A throwaway src/ tree: path -> contents. */
function tree(t: TestContext, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'layers-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  return dir;
}

test('the real src/ only imports downwards and has no folder cycle', () => {
  const r = checkLayers(join(root, 'src'));
  assert.deepEqual(describe(r), []);
  // The layering the docs describe, seen in the graph: nothing below proxy reaches proxy or above.
  for (const low of ['rtmp', 'net', 'balancer', 'client']) {
    for (const high of ['proxy', 'control', 'demo', '.']) assert.ok(!r.graph.get(low)?.has(high), `${low} -> ${high}`);
  }
  assert.equal(r.graph.get('rtmp'), undefined, 'rtmp imports no other folder');
});

test('an upward import fails, type-only and dynamic imports included', (t) => {
  const dir = tree(t, {
    'rtmp/a.ts': 'export const a = 1;\n',
    'proxy/observer.ts': 'export interface Observer { n: number }\n',
    'balancer/pool.ts': "import type { Observer } from '../proxy/observer.js';\nexport type P = Observer;\n",
    'net/tls.ts': "export async function f() { return import('../control/m.js'); }\n",
    'control/m.ts': "import { a } from '../rtmp/a.js';\nexport const m = a;\n",
  });
  const r = checkLayers(dir);
  assert.deepEqual(
    r.upward.map((u) => `${u.from} -> ${u.to}`),
    ['balancer/pool.ts -> proxy/observer.ts', 'net/tls.ts -> control/m.ts'],
  );
  assert.deepEqual(r.cycles, []);
});

test('folders of the same layer may not import each other', (t) => {
  const dir = tree(t, {
    'client/c.ts': "import { b } from '../balancer/b.js';\nexport const c = b;\n",
    'balancer/b.ts': 'export const b = 1;\n',
  });
  assert.match(describe(checkLayers(dir)).join('\n'), /upward import: src\/client\/c\.ts -> src\/balancer\/b\.ts: client and balancer are the same layer/);
});

test('a cycle through top-level files and folders fails, with the imports that close it', (t) => {
  const dir = tree(t, {
    'app.ts': "import { d } from './demo/d.js';\nexport const app = d;\n",
    'demo/d.ts': "import { cli } from '../cli.js';\nexport const d = 1;\nexport const e = cli;\n",
    'cli.ts': "import { app } from './app.js';\nexport const cli = app;\n",
    // Top-level files importing each other without a cycle are fine.
    'sidecar.ts': "import { app } from './app.js';\nexport const s = app;\n",
  });
  const r = checkLayers(dir);
  assert.deepEqual(r.upward, []);
  assert.equal(r.cycles.length, 1);
  assert.deepEqual(
    r.cycles[0]!.map((e) => `${e.from} -> ${e.to}`),
    ['app.ts -> demo/d.ts', 'demo/d.ts -> cli.ts', 'cli.ts -> app.ts'],
  );
});

test('a folder the table does not place fails', (t) => {
  const dir = tree(t, { 'util/x.ts': 'export const x = 1;\n', 'app.ts': "import { x } from './util/x.js';\nexport const y = x;\n" });
  assert.deepEqual(checkLayers(dir).unplaced, ['util']);
});

test('the script exits 1 and names the import on a violation, 0 on the real tree', (t) => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/check-layers.ts'), ...args], { cwd: root, encoding: 'utf8' });
  const bad = tree(t, { 'rtmp/r.ts': "import { s } from '../proxy/s.js';\nexport const r = s;\n", 'proxy/s.ts': 'export const s = 1;\n' });
  const failed = run([bad]);
  assert.equal(failed.status, 1);
  assert.match(failed.stderr, /upward import: src\/rtmp\/r\.ts -> src\/proxy\/s\.ts/);
  const ok = run([]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^layers: ok/);
});
