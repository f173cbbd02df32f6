// The live console in a real browser (Debian's chromium driven by playwright-core): the proxy runs
// with an admin token in front of two nginx-rtmp backends and ffmpeg publishers. The page asks
// for the token, shows the publisher's row on its backend, and its Drain button moves the publish
// to the other backend (proxy-side migration) while the test watches the DOM. Then, with two
// publishers on b1 and b2 drained: Undrain b2, Plan (one move b1 → b2, nothing moves), Rebalance:
// the progress runs to done and the sessions split 1/1. The recordings on both backends hold every
// frame of each source. Screenshots: docs/images/ with UPDATE_SCREENSHOTS=1.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, after, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { parseFlv } from '../../src/client/flv.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { redactStreamKey } from '../../src/net/redact.js';
import { ffprobeCounts } from '../helpers/ffprobe.js';
import { closedRecordings } from '../helpers/nginx.js';
import { projectRoot, requirePeer } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiBackend, type ApiSession, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';

const TOKEN = `console-e2e-${process.pid}-token`;
/** The README's screenshots are retaken with UPDATE_SCREENSHOTS=1; other runs leave the tree clean. */
const IMAGES = process.env['UPDATE_SCREENSHOTS'] === '1' ? join(projectRoot, 'docs/images') : join(tmpdir(), `rgp-console-${process.pid}`);

/** Opens the console in a new tab and logs in with the token; `errors` collects Content-Security-Policy violations. */
async function openConsole(browser: Browser, base: string, errors: string[]): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 560 } });
  page.on('console', (m) => {
    // The 401s of the page's first try without a token (and of /favicon.ico) are expected; a CSP violation is not.
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  await page.goto(`${base}/ui`);
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#token', TOKEN);
  await page.click('#login button[type=submit]');
  await page.locator('#console').waitFor({ state: 'visible' });
  return page;
}

/** The recordings of `key` on every backend hold every frame of the source (frame by frame, and by ffprobe's count). */
async function assertZeroLoss(env: E2eEnv, ffprobe: string, key: string): Promise<string> {
  const files: string[] = [];
  for (const backend of Object.values(env.backends)) {
    const n = backend.recordings(key).length;
    if (n > 0) files.push(...(await closedRecordings(backend, key, n)));
  }
  const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), files);
  assert.ok(cmp.zeroLoss, `${key}: ${describeComparison(cmp)}`);
  const src = ffprobeCounts(ffprobe, SAMPLE_FLV);
  const rec = files.map((f) => ffprobeCounts(ffprobe, f)).reduce((a, b) => ({ video: a.video + b.video, audio: a.audio + b.audio }));
  assert.ok(rec.video >= src.video && rec.audio >= src.audio, `${key}: ffprobe: recordings ${JSON.stringify(rec)} hold the source's ${JSON.stringify(src)}`);
  return `${key}: ${files.length} recording(s), ${cmp.received.video} video + ${cmp.received.audio} audio of ${cmp.sent.video} + ${cmp.sent.audio}; ffprobe ${JSON.stringify(rec)} vs source ${JSON.stringify(src)}`;
}

describe('e2e: the live console in chromium', () => {
  let env: E2eEnv | null = null;
  let browser: Browser | null = null;
  after(async () => {
    await browser?.close();
    await env?.stop();
  });

  /** The proxy (with the token and migrations), its two backends and the browser, started by the first test that needs them. */
  async function setup(t: TestContext): Promise<{ env: E2eEnv; browser: Browser; ffmpeg: string; ffprobe: string } | null> {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    const ffprobe = requirePeer(t, 'ffprobe');
    const chromiumExe = requirePeer(t, 'chromium');
    if (ffmpeg === null || ffprobe === null || chromiumExe === null) return null;
    env ??= await startE2e(t, { adminToken: TOKEN, proxyFlags: ['--migration-switch-timeout-ms', '10s', '--log-stream-keys', 'false'] });
    if (env === null) return null;
    browser ??= await chromium.launch({ executablePath: chromiumExe, args: ['--no-sandbox', '--disable-gpu'] });
    return { env, browser, ffmpeg, ffprobe };
  }

  test('login with the token, see the publisher, drain its backend from the page: the row moves, zero frames lost', async (t) => {
    const ready = await setup(t);
    if (ready === null) return;
    const { env, browser, ffmpeg, ffprobe } = ready;
    const base = `http://127.0.0.1:${env.proxy.adminPort}`;

    // The page and its files are open; the data is not.
    const page0 = await fetch(`${base}/ui`);
    assert.equal(page0.status, 200);
    assert.match(page0.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal((await fetch(`${base}/api/events`)).status, 401);

    // The console shows stream keys as the API does: redacted (log.streamKeys is off here).
    const key = `console-${process.pid}`;
    const shown = redactStreamKey(key);
    const run = collect(
      spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-re', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', env.proxy.url('live', key)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const s = await eventually(
      async () => (await env.proxy.api<ApiSession[]>('/api/sessions')).find((x) => x.streamKey === shown && x.state === 'publishing'),
      'ffmpeg publishing',
    );
    const from = s.backend!;
    const to = from === 'b1' ? 'b2' : 'b1';

    const cspViolations: string[] = [];
    const page = await openConsole(browser, base, cspViolations);

    const row = page.locator('#sessions tbody tr', { hasText: shown });
    await row.locator('td.backend', { hasText: from }).waitFor();
    assert.equal(await row.locator('td.key').textContent(), shown);
    assert.ok(!(await page.content()).includes(key), 'the stream key is not on the page in clear');
    assert.equal(await row.locator('td.app').textContent(), 'live');
    await row.locator('td.role', { hasText: 'publisher' }).waitFor();
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
    assert.equal(env.backends[from as 'b1' | 'b2'].recordings(key).length, 1);
    assert.equal(env.backends[to].recordings(key).length, 1);
    const line = await assertZeroLoss(env, ffprobe, key);
    assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violation');
    t.diagnostic(`console drain ${from} → ${to}: ${line}`);
    await env.proxy.api(`/api/backends/${from}/undrain`, { method: 'POST' });
    await page.close();
  });

  test('two publishers on b1, b2 drained: Undrain b2, Plan, Rebalance from the page: progress to done, 1/1, zero frames lost', async (t) => {
    const ready = await setup(t);
    if (ready === null) return;
    const { env, browser, ffmpeg, ffprobe } = ready;
    const base = `http://127.0.0.1:${env.proxy.adminPort}`;
    const cspViolations: string[] = [];
    const page = await openConsole(browser, base, cspViolations);
    const backendRow = (name: string) => page.locator(`#backends tbody tr[data-backend="${name}"]`);
    // Every state the progress line goes through, in order (the page renders the POST's answer, then each snapshot).
    // (A string: the test is compiled without the DOM's types.)
    await page.evaluate(`{
      const el = document.getElementById('rebalance-progress');
      const seen = (window.rebalanceStates = []);
      new MutationObserver(() => {
        if (seen.at(-1) !== el.dataset.state) seen.push(el.dataset.state);
      }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
    }`);
    await page.locator('#rebalance').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#rebalance-plan-view').isVisible(), false, 'no plan shown before one was asked for');

    // b2 drained from the page (empty, b1 takes publishers): both publishers land on b1.
    await backendRow('b1').locator('td.state', { hasText: 'up' }).waitFor();
    await backendRow('b2').locator('button.drain').click();
    await backendRow('b2').locator('td.state', { hasText: 'draining' }).waitFor();
    // Keys told apart by their first two characters, which is what redaction shows of them.
    const keys = [`a-console-${process.pid}`, `b-console-${process.pid}`];
    const shownKeys = keys.map(redactStreamKey);
    const runs = keys.map((key) =>
      collect(
        // Half speed: the 8 s sample lasts 16 s, room for the clicks and the move on a loaded machine.
        spawn(
          ffmpeg,
          ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-readrate', '0.5', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', env.proxy.url('live', key)],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        ),
      ),
    );
    const rows = shownKeys.map((k) => page.locator('#sessions tbody tr', { hasText: k }));
    for (const row of rows) {
      await row.locator('td.backend', { hasText: 'b1' }).waitFor();
      await row.locator('td.state', { hasText: 'publishing' }).waitFor();
      await row.locator('td.role', { hasText: 'publisher' }).waitFor();
    }

    // Undrain b2 from the page; then the plan: one move b1 → b2, targets 1 and 1, and nothing moves.
    await backendRow('b2').locator('button.undrain').click();
    await backendRow('b2').locator('td.state', { hasText: 'up' }).waitFor();
    await backendRow('b2').locator('button.drain').waitFor();
    await page.fill('#rebalance-min-age', '0');
    await page.click('#rebalance-plan');
    const moves = page.locator('#rebalance-moves tbody tr');
    await moves.first().waitFor();
    assert.equal(await moves.count(), 1);
    assert.equal(await moves.locator('td.from').textContent(), 'b1');
    assert.equal(await moves.locator('td.to').textContent(), 'b2');
    assert.match((await moves.locator('td.session').textContent()) ?? '', new RegExp(`live/(${shownKeys.map((k) => k.replace(/[*()]/g, '\\$&')).join('|')})`));
    assert.equal(await page.locator('#rebalance-targets tr[data-backend="b1"] td.target').textContent(), '1');
    assert.equal(await page.locator('#rebalance-targets tr[data-backend="b2"] td.target').textContent(), '1');
    assert.equal(await page.locator('#rebalance-targets tr[data-backend="b1"] td.count').textContent(), '2');
    assert.equal(await page.locator('#rebalance-progress').getAttribute('data-state'), 'idle', 'a dry run starts nothing');
    const untouched = (await env.proxy.api<ApiSession[]>('/api/sessions')).filter((x) => shownKeys.includes(x.streamKey ?? ''));
    assert.deepEqual(
      untouched.map((x) => x.backend),
      ['b1', 'b1'],
      'the plan moved nothing',
    );
    mkdirSync(IMAGES, { recursive: true });
    await page.screenshot({ path: join(IMAGES, 'console-rebalance-plan.png'), fullPage: true });

    // Rebalance: the progress runs to done with the one move made, and the rows split 1/1.
    await page.click('#rebalance-start');
    await page.locator('#rebalance-progress[data-state="done"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#rebalance-text .planned').textContent(), '1');
    assert.equal(await page.locator('#rebalance-text .moved').textContent(), '1');
    assert.equal(await page.locator('#rebalance-text .failed').textContent(), '0');
    assert.equal(await page.locator('#rebalance-text .pending').textContent(), '0');
    assert.equal(await page.locator('#rebalance-text .in-flight').textContent(), '0');
    const states = await page.evaluate<string[]>('window.rebalanceStates');
    assert.deepEqual(states, ['idle', 'running', 'done'], 'the page showed no run, the run in flight, then done');
    await eventually(async () => {
      const where = await Promise.all(rows.map((row) => row.locator('td.backend').textContent()));
      return where.sort().join(',') === 'b1,b2';
    }, 'the sessions table shows one publisher on b1 and one on b2');
    const backends = await env.proxy.api<ApiBackend[]>('/api/backends');
    assert.deepEqual(
      backends.map((b) => [b.name, b.sessions]),
      [
        ['b1', 1],
        ['b2', 1],
      ],
    );
    await page.screenshot({ path: join(IMAGES, 'console-rebalanced.png'), fullPage: true });

    const lines: string[] = [];
    for (const [i, run] of runs.entries()) {
      const { code, stderr } = await run.exited;
      assert.equal(code, 0, `ffmpeg ${keys[i]}: ${stderr.slice(-2000)}`);
      lines.push(await assertZeroLoss(env, ffprobe, keys[i]!));
    }
    assert.equal(keys.filter((key) => env.backends.b2.recordings(key).length > 0).length, 1, 'one of the two streams moved to b2');
    assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violation');
    for (const line of lines) t.diagnostic(`console rebalance b1 → b2: ${line}`);
    await page.close();
  });
});
