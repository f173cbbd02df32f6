import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type ControlCommand,
  MAX_CONTROL_MESSAGE_LENGTH,
  desiredFromCommand,
  encodeControlMessage,
  parseControlMessage,
  parseDeadlineToken,
  planConvergence,
} from '../../src/control/commands.js';

function ok(text: string): ControlCommand {
  const r = parseControlMessage(text);
  assert.ok(r.ok, `expected ${JSON.stringify(text)} to parse, got ${r.ok ? '' : r.error}`);
  return r.command;
}

function bad(text: string, re?: RegExp): string {
  const r = parseControlMessage(text);
  assert.ok(!r.ok, `expected ${JSON.stringify(text)} to be malformed`);
  if (re) assert.match(r.error, re);
  return r.error;
}

describe('parseControlMessage: JSON', () => {
  test('the documented drain message', () => {
    assert.deepEqual(ok('{"action":"drain","backend":"b1","deadlineMs":30000,"reason":"deploy"}'), {
      action: 'drain',
      backend: 'b1',
      deadlineMs: 30_000,
      reason: 'deploy',
    });
  });

  test('undrain, and the fields this project adds (id, at, origin)', () => {
    assert.deepEqual(ok('{"action":"undrain","backend":"ingest-a.1","id":"x1","at":1700000000000,"origin":"cli@h"}'), {
      action: 'undrain',
      backend: 'ingest-a.1',
      id: 'x1',
      at: 1_700_000_000_000,
      origin: 'cli@h',
    });
  });

  test('deadlineMs as a duration string or a numeric string; null fields are absent', () => {
    assert.equal(ok('{"action":"drain","backend":"b1","deadlineMs":"30s"}').deadlineMs, 30_000);
    assert.equal(ok('{"action":"drain","backend":"b1","deadlineMs":"1500"}').deadlineMs, 1500);
    assert.equal(ok('{"action":"drain","backend":"b1","deadlineMs":0}').deadlineMs, 0);
    assert.deepEqual(ok('{"action":"drain","backend":"b1","deadlineMs":null,"reason":null}'), { action: 'drain', backend: 'b1' });
  });

  test('surrounding whitespace is fine', () => {
    assert.equal(ok('  \n{"action":"drain","backend":"b1"}\n').backend, 'b1');
  });

  test('malformed JSON messages name the problem', () => {
    bad('{"action":"drain","backend":"b1"', /invalid JSON/);
    bad('[1,2]', /expected JSON or/);
    bad('{"action":"nuke","backend":"b1"}', /"action" must be/);
    bad('{"backend":"b1"}', /"action" must be/);
    bad('{"action":"drain"}', /"backend" must be/);
    bad('{"action":"drain","backend":"b 1"}', /"backend" must be/);
    bad('{"action":"drain","backend":""}', /"backend" must be/);
    bad(`{"action":"drain","backend":"${'x'.repeat(64)}"}`, /"backend" must be/);
    bad('{"action":"drain","backend":"b1","deadline":30000}', /unknown field "deadline"/);
    bad('{"action":"drain","backend":"b1","deadlineMs":-1}', /"deadlineMs"/);
    bad('{"action":"drain","backend":"b1","deadlineMs":2147483648}', /"deadlineMs"/);
    bad('{"action":"drain","backend":"b1","deadlineMs":"soon"}', /"deadlineMs"/);
    bad('{"action":"drain","backend":"b1","deadlineMs":true}', /"deadlineMs"/);
    bad('{"action":"undrain","backend":"b1","deadlineMs":5}', /only applies to "drain"/);
    bad(`{"action":"drain","backend":"b1","reason":"${'r'.repeat(201)}"}`, /"reason"/);
    bad('{"action":"drain","backend":"b1","reason":5}', /"reason"/);
    bad('{"action":"drain","backend":"b1","at":"yesterday"}', /"at"/);
    bad('{"action":"drain","backend":"b1","id":""}', /"id"/);
    bad('null', /expected JSON or/);
  });
});

describe('parseControlMessage: plain text', () => {
  test('drain b1 / undrain b1, as an operator types them', () => {
    assert.deepEqual(ok('drain b1'), { action: 'drain', backend: 'b1' });
    assert.deepEqual(ok('undrain b1'), { action: 'undrain', backend: 'b1' });
    assert.deepEqual(ok('DRAIN   b1  \n'), { action: 'drain', backend: 'b1' });
  });

  test('optional deadline (with a unit) and reason words', () => {
    assert.deepEqual(ok('drain b1 45s'), { action: 'drain', backend: 'b1', deadlineMs: 45_000 });
    assert.deepEqual(ok('drain b1 2m kernel upgrade'), { action: 'drain', backend: 'b1', deadlineMs: 120_000, reason: 'kernel upgrade' });
    assert.deepEqual(ok('drain b1 kernel upgrade'), { action: 'drain', backend: 'b1', reason: 'kernel upgrade' });
    assert.deepEqual(ok('undrain b1 back from maintenance'), { action: 'undrain', backend: 'b1', reason: 'back from maintenance' });
    assert.deepEqual(ok('undrain b1 30s'), { action: 'undrain', backend: 'b1', reason: '30s' }, 'undrain takes no deadline: the rest is the reason');
  });

  test('malformed plain text', () => {
    bad('', /empty/);
    bad('   ', /empty/);
    bad('hello', /expected JSON or/);
    bad('b1', /expected JSON or/);
    bad('drain', /needs a backend/);
    bad('drain b/1', /backend name/);
    bad('drain b1 30', /needs a unit/);
    bad(`drain b1 ${'w'.repeat(201)}`, /reason/);
    bad('x'.repeat(MAX_CONTROL_MESSAGE_LENGTH + 1), /longer than/);
  });

  test('parseDeadlineToken requires a unit', () => {
    assert.equal(parseDeadlineToken('500ms'), 500);
    assert.equal(parseDeadlineToken('1.5s'), 1500);
    assert.equal(parseDeadlineToken('1h'), 3_600_000);
    assert.equal(parseDeadlineToken('30'), null);
    assert.equal(parseDeadlineToken('-1s'), null);
  });
});

describe('parseControlMessage: properties', () => {
  test('never throws, whatever the input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.string().map((s) => `drain ${s}`),
        ),
        (s) => {
          const r = parseControlMessage(s);
          assert.equal(typeof r.ok, 'boolean');
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('encode → parse is the identity for valid commands', () => {
    const cmd = fc.record(
      {
        action: fc.constantFrom('drain' as const, 'undrain' as const),
        backend: fc.stringMatching(/^[A-Za-z0-9._-]{1,63}$/),
        deadlineMs: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        reason: fc.string({ maxLength: 200 }),
        id: fc.string({ minLength: 1, maxLength: 100 }),
        at: fc.integer({ min: 0, max: 2 ** 45 }),
        origin: fc.string({ maxLength: 200 }),
      },
      { requiredKeys: ['action', 'backend'] },
    );
    fc.assert(
      fc.property(cmd, (c) => {
        const input: ControlCommand = { ...c };
        if (input.action === 'undrain') delete input.deadlineMs;
        const r = parseControlMessage(encodeControlMessage(input));
        assert.ok(r.ok);
        assert.deepEqual(r.command, input);
      }),
      { numRuns: 500 },
    );
  });
});

describe('planConvergence', () => {
  const b = (name: string, draining = false, removing = false) => ({ name, draining, removing });

  test('drains what the fleet wants drained, with the deadline left', () => {
    const steps = planConvergence([b('b1'), b('b2')], [{ backend: 'b1', at: 1000, deadlineMs: 30_000, reason: 'deploy' }], 11_000, 5000);
    assert.deepEqual(steps, [{ action: 'drain', backend: 'b1', deadlineMs: 20_000, reason: 'deploy' }]);
  });

  test('a deadline already past gives 0; no deadline in the command uses the default', () => {
    assert.deepEqual(planConvergence([b('b1')], [{ backend: 'b1', at: 0, deadlineMs: 10 }], 1000, 5000), [{ action: 'drain', backend: 'b1', deadlineMs: 0 }]);
    assert.deepEqual(planConvergence([b('b1')], [{ backend: 'b1', at: 1000 }], 2000, 5000), [{ action: 'drain', backend: 'b1', deadlineMs: 4000 }]);
  });

  test('undrains what the fleet no longer wants drained, but not a backend pending removal', () => {
    assert.deepEqual(planConvergence([b('b1', true), b('b2', true, true)], [], 0, 5000), [{ action: 'undrain', backend: 'b1' }]);
  });

  test('leaves alone what already matches and what this replica does not have', () => {
    assert.deepEqual(
      planConvergence(
        [b('b1', true), b('b2')],
        [
          { backend: 'b1', at: 0 },
          { backend: 'zz', at: 0 },
        ],
        10,
        5000,
      ),
      [],
    );
  });

  test('desiredFromCommand keeps the issue time, or takes now', () => {
    assert.deepEqual(desiredFromCommand({ action: 'drain', backend: 'b1', at: 5, deadlineMs: 7, reason: 'r', origin: 'o', id: 'i' }, 99), {
      backend: 'b1',
      at: 5,
      deadlineMs: 7,
      reason: 'r',
      origin: 'o',
    });
    assert.deepEqual(desiredFromCommand({ action: 'drain', backend: 'b1' }, 99), { backend: 'b1', at: 99 });
  });
});
