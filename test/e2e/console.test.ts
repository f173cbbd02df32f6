// The live console in a real browser (Debian's chromium driven by playwright-core): the proxy runs
// with an admin token in front of two nginx-rtmp backends and an ffmpeg publisher. The page asks
// for the token, shows the publisher's row on its backend, and its Drain button moves the publish
// to the other backend (proxy-side migration) while the test watches the DOM; the recordings on
// both backends hold every frame of the source. Screenshots: docs/images/ with UPDATE_SCREENSHOTS=1.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { parseFlv } from '../../src/client/flv.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { ffprobeCounts } from '../helpers/ffprobe.js';
import { closedRecordings } from '../helpers/nginx.js';
import { projectRoot, requirePeer } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';

const TOKEN = `console-e2e-${process.pid}-token`;
/** The README's screenshots are retaken with UPDATE_SCREENSHOTS=1; other runs leave the tree clean. */
const IMAGES = process.env['UPDATE_SCREENSHOTS'] === '1' ? join(projectRoot, 'docs/images') : join(tmpdir(), `rgp-console-${process.pid}`);

describe('e2e: the live console in chromium', () => {
  let env: E2eEnv | null = null;
  let browser: Browser | null = null;
  after(async () => {
    await browser?.close();
    await env?.stop();
  });

  test('login with the token, see the publisher, drain its backend from the page: the row moves, zero frames lost', async (t) => {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    const ffprobe = requirePeer(t, 'ffprobe');
    const chromiumExe = requirePeer(t, 'chromium');
    if (ffmpeg === null || ffprobe === null || chromiumExe === null) return;
    env = await startE2e(t, { adminToken: TOKEN, proxyFlags: ['--migration-switch-timeout-ms', '10s'] });
    if (env === null) return;
    const base = `http://127.0.0.1:${env.proxy.adminPort}`;

    // The page and its files are open; the data is not.
    const page0 = await fetch(`${base}/ui`);
    assert.equal(page0.status, 200);
    assert.match(page0.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal((await fetch(`${base}/api/events`)).status, 401);

    const key = `console-${process.pid}`;
    const run = collect(
      spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-re', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', env.proxy.url('live', key)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const s = await eventually(
      async () => (await env!.proxy.api<ApiSession[]>('/api/sessions')).find((x) => x.streamKey === key && x.state === 'publishing'),
      'ffmpeg publishing',
    );
    const from = s.backend!;
    const to = from === 'b1' ? 'b2' : 'b1';

    browser = await chromium.launch({ executablePath: chromiumExe, args: ['--no-sandbox', '--disable-gpu'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 560 } });
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      // The 401s of the page's first try without a token (and of /favicon.ico) are expected; a CSP violation is not.
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(`${base}/ui`);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#login button[type=submit]');

    const row = page.locator('#sessions tbody tr', { hasText: key });
    await row.locator('td.backend', { hasText: from }).waitFor();
    assert.equal(await row.locator('td.app').textContent(), 'live');
    const media = (s as ApiSession & { media?: { videoCodec: string | null; width: number | null; height: number | null } | null }).media;
    if (media !== undefined) {
      // The telemetry is in /api/sessions: the row shows ffprobe's view of the source.
      const probe = spawnSync(
        ffprobe,
        ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0', SAMPLE_FLV],
        {
          encoding: 'utf8',
        },
      );
      const [codecName, width, height] = probe.stdout.trim().split(',');
      await row.locator('td.codec', { hasText: codecName! }).waitFor();
      await row.locator('td.resolution', { hasText: `${width}x${height}` }).waitFor();
    }
    // The token never went into a URL.
    assert.ok(!page.url().includes(TOKEN));
    mkdirSync(IMAGES, { recursive: true });
    await page.screenshot({ path: join(IMAGES, 'console.png'), fullPage: true });

    await page.locator(`#backends tbody tr[data-backend="${from}"] button.drain`).click();
    await page.locator(`#backends tbody tr[data-backend="${from}"] td.state`, { hasText: 'draining' }).waitFor();
    await row.locator('td.backend', { hasText: to }).waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(IMAGES, 'console-drained.png'), fullPage: true });

    const { code, stderr } = await run.exited;
    assert.equal(code, 0, stderr.slice(-2000));
    const files = [...(await closedRecordings(env.backends[from as 'b1' | 'b2'], key, 1)), ...(await closedRecordings(env.backends[to], key, 1))];
    const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), files);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    const src = ffprobeCounts(ffprobe, SAMPLE_FLV);
    const rec = files.map((f) => ffprobeCounts(ffprobe, f)).reduce((a, b) => ({ video: a.video + b.video, audio: a.audio + b.audio }));
    assert.ok(rec.video >= src.video && rec.audio >= src.audio, `ffprobe: recordings ${JSON.stringify(rec)} hold the source's ${JSON.stringify(src)}`);
    assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violation');
    t.diagnostic(
      `console drain ${from} → ${to}: ${cmp.received.video} video + ${cmp.received.audio} audio of ${cmp.sent.video} + ${cmp.sent.audio}; ffprobe ${JSON.stringify(rec)} vs source ${JSON.stringify(src)}`,
    );
    await env.proxy.api(`/api/backends/${from}/undrain`, { method: 'POST' });
  });
});
