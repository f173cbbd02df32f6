/**
 * The runtime settings the entry point applies (src/runtime-tuning.ts): what counts as missing,
 * the opt-out, and the shell half of bin/rtmp-goaway-proxy.js starting node with the same values.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { TUNED_GLIBC_TUNABLES, TUNED_NODE_FLAGS, missingTuning, runtimeReport } from '../../src/runtime-tuning.js';
import { projectRoot } from '../helpers/peers.js';

test('plain node lacks every setting; with all of them nothing is missing', () => {
  assert.deepEqual(missingTuning([], {}), { nodeFlags: [...TUNED_NODE_FLAGS], glibcTunables: TUNED_GLIBC_TUNABLES });
  assert.equal(missingTuning([...TUNED_NODE_FLAGS], { GLIBC_TUNABLES: TUNED_GLIBC_TUNABLES }), null);
  assert.equal(runtimeReport([...TUNED_NODE_FLAGS], { GLIBC_TUNABLES: TUNED_GLIBC_TUNABLES }).tuned, true);
  assert.equal(runtimeReport([], {}).tuned, false);
});

test("the operator's own values count as set: GLIBC_TUNABLES, a flag in NODE_OPTIONS or on the command line, either spelling", () => {
  const env = { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', NODE_OPTIONS: '--max-semi-space-size=8' };
  assert.equal(missingTuning(['--initial-old-space-size=256'], env), null);
  assert.deepEqual(missingTuning(['--max_semi_space_size=4'], { GLIBC_TUNABLES: '' }), { nodeFlags: ['--initial-old-space-size=64'], glibcTunables: null });
  assert.deepEqual(runtimeReport(['--initial-old-space-size=256'], env).nodeFlags, ['--max-semi-space-size=8', '--initial-old-space-size=256']);
});

test('RTMP_GOAWAY_NO_TUNE opts out (any value but "" and "0")', () => {
  assert.equal(missingTuning([], { RTMP_GOAWAY_NO_TUNE: '1' }), null);
  assert.equal(runtimeReport([], { RTMP_GOAWAY_NO_TUNE: '1' }).tuned, false);
  assert.notEqual(missingTuning([], { RTMP_GOAWAY_NO_TUNE: '0' }), null);
  assert.notEqual(missingTuning([], { RTMP_GOAWAY_NO_TUNE: '' }), null);
});

test("bin/'s shell half starts node with exactly the settings of src/runtime-tuning.ts", () => {
  const bin = readFileSync(join(projectRoot, 'bin/rtmp-goaway-proxy.js'), 'utf8');
  const shell = bin.slice(0, bin.indexOf('*/'));
  assert.match(shell, /^#!\/bin\/sh\n":" \/\*\n/, 'a shell script that JavaScript reads as a string and a comment');
  assert.ok(shell.includes(`GLIBC_TUNABLES="\${GLIBC_TUNABLES-${TUNED_GLIBC_TUNABLES}}"`));
  const execs = [...shell.matchAll(/exec node ([^\n;]*)"\$0" "\$@"/g)].map((m) => m[1]!.trim());
  // With the semi-space flag already in NODE_OPTIONS, without it, and opted out.
  assert.deepEqual(execs, [TUNED_NODE_FLAGS.filter((f) => !f.startsWith('--max-semi')).join(' '), TUNED_NODE_FLAGS.join(' '), '']);
});
