// `rtmp-goaway-proxy publish - <url>`: FLV on stdin (as `ffmpeg … -f flv - |` feeds it), published
// to the fake server as fast as possible, with the JSON report on stdout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PublishReport } from '../../src/client/reference-publisher.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { projectRoot } from '../helpers/peers.js';

function runCli(args: string[], stdin: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'test/e2e/cli.ts'), ...args], {
      cwd: projectRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => setImmediate(() => resolve({ code, stdout, stderr })));
    child.stdin.end(stdin);
  });
}

test('publish reads FLV from stdin and reports per-connection frame counts', async () => {
  const fake = new FakeRtmpServer();
  const port = await fake.listen();
  try {
    const flv = readFileSync(join(projectRoot, 'test/fixtures/sample.flv'));
    const { code, stdout, stderr } = await runCli(['publish', '-', `rtmp://127.0.0.1:${port}/live/secretkey`, '--speed', '0', '--json'], flv);
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout.trim()) as PublishReport;
    assert.equal(report.ok, true);
    assert.deepEqual(report.read, { video: 80, audio: 174, data: 1, config: 3 });
    assert.deepEqual(
      report.connections.map((c) => [c.video, c.audio, c.endReason]),
      [[80, 174, 'end-of-input']],
    );
    assert.equal(fake.connections[0]!.media, 80 + 174 + 1 + 2, 'every frame, the end-of-sequence tag and both sequence headers arrived');
    assert.match(stderr, /publish stdin → rtmp:\/\/127\.0\.0\.1:\d+\/live\/se\*\*\*\(9\)/, 'the stream key is redacted in the output');
    assert.match(stderr, /\[conn 1\] ended: end of input \(FCUnpublish \+ deleteStream\): 80 video \+ 174 audio frames/);
    assert.match(stderr, /zero frames lost/);
  } finally {
    await fake.close();
  }
});

test('publish fails clearly on a missing file and on a URL without a stream key', async () => {
  const missing = await runCli(['publish', '/nonexistent.flv', 'rtmp://127.0.0.1:1/live/k'], Buffer.alloc(0));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read \/nonexistent\.flv/);
  const badUrl = await runCli(['publish', '-', 'rtmp://127.0.0.1:1/live'], Buffer.alloc(0));
  assert.equal(badUrl.code, 1);
  assert.match(badUrl.stderr, /needs \/app\/streamKey/);
});
