// Pure helpers of what operators read: redaction of client-given credentials, terminal-safe
// text, the rate-limited log, and the CLI's drain checks against the fleet registry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { closestNames, drainRefusal } from '../../src/cli.js';
import { RateLimitedLog } from '../../src/net/rate-limited-log.js';
import { clientTextView, redactQuery } from '../../src/net/redact.js';
import { safeText } from '../../src/terminal-text.js';

describe('redactQuery', () => {
  test('query strings and URL userinfo are replaced, the rest kept', () => {
    assert.equal(redactQuery('live?user=alice&pass=hunter2'), 'live?***(23)');
    assert.equal(redactQuery('rtmp://h:1935/live?token=abc'), 'rtmp://h:1935/live?***(9)');
    assert.equal(redactQuery('rtmp://bob:secret@h/live'), 'rtmp://***@h/live');
    assert.equal(redactQuery('live'), 'live');
    assert.equal(redactQuery('live?'), 'live?***(0)');
    assert.equal(clientTextView(true).appOrUrl('live?pass=x'), 'live?pass=x');
    assert.equal(clientTextView(false).appOrUrl(null), null);
  });
  test('property: what follows the ? never survives', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 6 }), (head, secret) => {
        const out = redactQuery(`${head.replace(/\?/g, '')}?${secret}`);
        assert.ok(out.endsWith(`?***(${secret.length})`));
      }),
    );
  });
});

describe('safeText', () => {
  test('controls, ESC sequences, C1 and bidi overrides become visible escapes', () => {
    assert.equal(safeText('live\x1b]0;title\x07\r\nforged'), 'live\\x1b]0;title\\x07\\r\\nforged');
    assert.equal(safeText('a\u202eb\u2066c\x9bd\x7fe\x00'), 'a\\u202eb\\u2066c\\x9bd\\x7fe\\x00');
    assert.equal(safeText('ordinary text, üñí ✓'), 'ordinary text, üñí ✓');
    assert.equal(safeText(null), '-');
  });
  test('property: the output never holds a control character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        // eslint-disable-next-line no-control-regex -- matching control characters is the point
        assert.doesNotMatch(safeText(s), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
      }),
    );
  });
});

describe('RateLimitedLog', () => {
  test('burst, then suppressed and accounted for; keys are independent', async () => {
    const out: Record<string, unknown>[] = [];
    const log = pino({}, { write: (s: string) => void out.push(JSON.parse(s) as Record<string, unknown>) });
    const r = new RateLimitedLog(log, { burst: 3, perSecond: 20 });
    for (let i = 0; i < 100; i++) r.write('a', { i }, 'A');
    r.write('b', {}, 'B');
    assert.equal(out.filter((l) => l['msg'] === 'A').length, 3);
    assert.equal(out.filter((l) => l['msg'] === 'B').length, 1);
    assert.equal(r.pending, 97);
    // The summary comes once the bucket allows (1/20 s), with the count and the last fields.
    while (r.pending > 0) await new Promise((res) => setTimeout(res, 20));
    const summary = out.find((l) => l['summary'] === true)!;
    assert.equal(summary['suppressed'], 97);
    assert.equal(summary['i'], 99);
    r.stop();
  });
});

describe('drain checks against the fleet registry', () => {
  const rep = (id: string, backends: [string, 'up' | 'down' | 'draining'][]) => ({
    replicaId: id,
    backends: backends.map(([name, state]) => ({ name, state, sessions: 0, drainReason: null, drainDeadlineAt: null })),
  });
  test('a name no replica has is refused, with the closest known name', () => {
    const why = drainRefusal(
      'bl',
      [
        rep('r1', [
          ['b1', 'up'],
          ['b2', 'up'],
        ]),
      ],
      'p:backends',
    );
    assert.match(why!, /no live replica has a backend named "bl".*Did you mean b1\?/);
    assert.deepEqual(closestNames('ingets-1', ['ingest-1', 'ingest-2', 'other']), ['ingest-1']);
    assert.deepEqual(closestNames('zzz', ['b1']), []);
  });
  test('the last up backend of any replica is refused; a down or already draining one is not', () => {
    assert.match(
      drainRefusal(
        'b2',
        [
          rep('r1', [
            ['b1', 'draining'],
            ['b2', 'up'],
          ]),
          rep('r2', [
            ['b1', 'up'],
            ['b2', 'up'],
          ]),
        ],
        'h',
      )!,
      /last backend taking new sessions on replica\(s\) r1/,
    );
    assert.equal(
      drainRefusal(
        'b2',
        [
          rep('r1', [
            ['b1', 'up'],
            ['b2', 'up'],
          ]),
        ],
        'h',
      ),
      null,
    );
    assert.equal(
      drainRefusal(
        'b2',
        [
          rep('r1', [
            ['b1', 'down'],
            ['b2', 'down'],
          ]),
        ],
        'h',
      ),
      null,
    );
    assert.equal(
      drainRefusal(
        'b2',
        [
          rep('r1', [
            ['b1', 'down'],
            ['b2', 'draining'],
          ]),
        ],
        'h',
      ),
      null,
    );
  });
});
