// E-RTMP reconnect, end to end: `rtmp-goaway-proxy publish --no-goaway --erpc` (the reference
// publisher announcing capsEx Reconnect only) through the proxy to nginx-rtmp; the proxy adds
// capsEx to the connect `_result` it forwards (seen by a TCP tap in front of the proxy), sends
// NetConnection.Connect.ReconnectRequest on drain, and the publisher reconnects with zero loss.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import type { PublishReport } from '../../src/client/reference-publisher.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { isAmf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, collectControlAndCommands } from '../../src/rtmp/chunk-reader.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { type Command, RECONNECT_REQUEST_CODE, decodeCommand, readStatusCode } from '../../src/rtmp/messages.js';
import { closedRecordings } from '../helpers/nginx.js';
import { requirePeer } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, DRAIN_VIA, type E2eEnv, SAMPLE_FLV, collect, spawnCli, startE2e } from './env.js';
import { TcpTap } from './tcp-tap.js';

/** The commands a client received, decoded from the raw server→client bytes. */
function receivedCommands(s2c: Buffer): Command[] {
  const out: Command[] = [];
  const hs = new HandshakeSkipper();
  const reader = new ChunkReader(
    {
      message: (info, payload) => {
        if (payload !== null && (info.typeId === MessageType.CommandAmf0 || info.typeId === MessageType.CommandAmf3)) {
          const c = decodeCommand(info.typeId, payload);
          if (c !== null) out.push(c);
        }
      },
    },
    collectControlAndCommands,
  );
  const start = hs.consume(s2c, 0);
  if (start < s2c.length) reader.feed(s2c, start);
  return out;
}

describe('e2e: reference publisher in --erpc mode (no Go Away) through the proxy', () => {
  let env: E2eEnv | null = null;
  let front: TcpTap | null = null;
  after(async () => {
    await front?.close();
    await env?.stop();
  });

  test('capsEx in the _result it receives, ReconnectRequest on drain, reconnect with zero loss', async (t) => {
    if (requirePeer(t, 'ffprobe') === null) return;
    env = await startE2e(t);
    if (env === null) return;
    front = new TcpTap(env.proxy.port);
    await front.listen();
    const key = `erpc${process.pid}`;
    const pub = spawnCli(['publish', SAMPLE_FLV, `rtmp://127.0.0.1:${front.port}/live/${key}`, '--no-goaway', '--erpc', '--json']);
    const out = collect(pub);
    const first = await eventually(
      async () => (await env!.proxy.api<ApiSession[]>('/api/sessions')).find((s) => s.state === 'publishing' && s.streamKey === key),
      'publishing',
      20_000,
    );
    assert.equal(first.capability, 'erpc');
    const from = first.backend as 'b1' | 'b2';
    const to = from === 'b1' ? 'b2' : 'b1';
    await new Promise((r) => setTimeout(r, 2500));
    const drainedAt = Date.now();
    await env.drain(from);

    const { code, stdout, stderr } = await out.exited;
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as PublishReport;
    assert.equal(report.ok, true, report.error ?? '');
    assert.deepEqual(
      report.connections.map((c) => c.endReason),
      ['reconnect-request', 'end-of-input'],
      'one switch, asked by E-RTMP',
    );

    // What the publisher received on each of its two connections.
    assert.equal(front.connections.length, 2);
    await eventually(() => front!.connections.every((c) => c.closed), 'both client connections closed');
    for (const [i, c] of front.connections.entries()) {
      const cmds = receivedCommands(c.serverBytes());
      const result = cmds.find((x) => x.name === '_result' && x.transactionId === 1)!;
      assert.ok(isAmf0Object(result.commandObject), `connection ${i + 1}: _result properties`);
      assert.equal(result.commandObject['capsEx'], 1, `connection ${i + 1}: capsEx Reconnect offered in the _result`);
      assert.equal(result.commandObject['fmsVer'] !== undefined, true, 'the rest of nginx-rtmp’s properties kept');
      const asked = cmds.filter((x) => x.name === 'onStatus' && readStatusCode(x) === RECONNECT_REQUEST_CODE);
      assert.equal(asked.length, i === 0 ? 1 : 0, `connection ${i + 1}: ReconnectRequest only on the drained one`);
    }

    const files = [...(await closedRecordings(env.backends[from], key, 1)), ...(await closedRecordings(env.backends[to], key, 1))];
    const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), files);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    const [c1, c2] = report.connections;
    t.diagnostic(
      `erpc publisher drained from ${from} via ${DRAIN_VIA}: ReconnectRequest → close ${c1!.closingAt! - c1!.goAwayAt!} ms (rest of GOP), ` +
        `close → publishing on ${to} ${c2!.reconnectMs} ms, drain → publishing again ${c2!.publishedAt - drainedAt} ms; frames lost ${cmp.missing.length}`,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${env.proxy.adminPort}/metrics`)).text();
    assert.match(metrics, new RegExp(`rtmp_goaway_reconnect_requests_sent_total\\{backend="${from}"\\} 1`));
    assert.match(metrics, /rtmp_goaway_erpc_caps_offered_total\{result="rewritten"\} 2/);
  });
});
