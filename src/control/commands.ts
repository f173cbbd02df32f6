/**
 * Control messages of the fleet bus (README "Drain across replicas (Redis)"). Pure: no I/O.
 *
 * Two forms are accepted on the channel:
 *   JSON        {"action":"drain","backend":"b1","deadlineMs":30000,"reason":"deploy"}
 *               {"action":"undrain","backend":"b1"}
 *   plain text  drain b1 [<deadline with unit, e.g. 30s>] [reason words…]
 *               undrain b1 [reason words…]
 *
 * JSON written by this project also carries `id` (so a replica recognises its own message when
 * it comes back from the bus), `at` (epoch ms the command was issued: a replica that starts
 * later computes the remaining deadline from it) and `origin` (replica id or `cli@host`).
 * Anything else is malformed: the caller logs and counts it, it is never fatal.
 */

export type ControlAction = 'drain' | 'undrain';

/** What every control message may carry besides its action: why, its id, when and from whom (see above). */
export interface MessageEnvelope {
  reason?: string;
  id?: string;
  /** Epoch ms when the command was issued. */
  at?: number;
  origin?: string;
}

export interface ControlCommand extends MessageEnvelope {
  action: ControlAction;
  backend: string;
  /** Drain only: sessions left after this long are closed; omitted = each replica's `drain.deadlineMs`. */
  deadlineMs?: number;
}

export type ParseResult = { ok: true; command: ControlCommand } | { ok: false; error: string };

/** Same rule as backend names in the config schema. */
export const BACKEND_NAME_RE = /^[A-Za-z0-9._-]{1,63}$/;
/** Longer messages are not parsed at all. */
export const MAX_CONTROL_MESSAGE_LENGTH = 4096;
export const MAX_REASON_LENGTH = 200;
/** setTimeout's largest delay. */
export const MAX_DEADLINE_MS = 2 ** 31 - 1;

const KNOWN_FIELDS = new Set(['action', 'backend', 'deadlineMs', 'reason', 'id', 'at', 'origin']);
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

const fail = (error: string): ParseResult => ({ ok: false, error });

/** `30s`, `500ms`, `2m`, `1h`, `1.5s` → ms; a unit is required (a bare `30` is ambiguous in plain text). */
export function parseDeadlineToken(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/i.exec(s);
  if (!m) return null;
  const ms = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  return Number.isSafeInteger(ms) ? ms : null;
}

function checkBackend(v: unknown): string | null {
  return typeof v === 'string' && BACKEND_NAME_RE.test(v) ? v : null;
}

/** A JSON message: an object with only `known` fields, or why not. */
export function parseJsonMessage(text: string, known: ReadonlySet<string>): Record<string, unknown> | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `invalid JSON: ${(e as Error).message}`;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'JSON message must be an object';
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!known.has(k)) return `unknown field "${k}" (known: ${[...known].join(', ')})`;
  return o;
}

/** Copies a message's envelope fields into `into` (a null reason counts as none); the first one out of bounds, or null. */
export function readEnvelope(o: Record<string, unknown>, into: MessageEnvelope): string | null {
  const r = o['reason'];
  if (r !== undefined && r !== null) {
    if (typeof r !== 'string' || r.length > MAX_REASON_LENGTH) return `"reason" must be a string of at most ${MAX_REASON_LENGTH} characters`;
    into.reason = r;
  }
  const id = o['id'];
  if (id !== undefined) {
    if (typeof id !== 'string' || id.length === 0 || id.length > 100) return '"id" must be a string of 1 to 100 characters';
    into.id = id;
  }
  const at = o['at'];
  if (at !== undefined) {
    if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) return '"at" must be epoch milliseconds';
    into.at = at;
  }
  const origin = o['origin'];
  if (origin !== undefined) {
    if (typeof origin !== 'string' || origin.length > 200) return '"origin" must be a string of at most 200 characters';
    into.origin = origin;
  }
  return null;
}

function parseJson(text: string): ParseResult {
  const o = parseJsonMessage(text, KNOWN_FIELDS);
  if (typeof o === 'string') return fail(o);
  const action = o['action'];
  if (action !== 'drain' && action !== 'undrain') return fail(`"action" must be "drain" or "undrain", got ${JSON.stringify(action) ?? 'nothing'}`);
  const backend = checkBackend(o['backend']);
  if (backend === null) return fail(`"backend" must be a backend name matching ${BACKEND_NAME_RE}, got ${JSON.stringify(o['backend']) ?? 'nothing'}`);
  const command: ControlCommand = { action, backend };
  const d = o['deadlineMs'];
  if (d !== undefined && d !== null) {
    if (action !== 'drain') return fail('"deadlineMs" only applies to "drain"');
    let ms: number | null = null;
    if (typeof d === 'number' && Number.isFinite(d)) ms = Math.round(d);
    else if (typeof d === 'string') ms = /^\d+$/.test(d) ? Number(d) : parseDeadlineToken(d);
    if (ms === null || ms < 0 || ms > MAX_DEADLINE_MS)
      return fail(`"deadlineMs" must be a number of milliseconds between 0 and ${MAX_DEADLINE_MS} (or a duration like "30s"), got ${JSON.stringify(d)}`);
    command.deadlineMs = ms;
  }
  const bad = readEnvelope(o, command);
  return bad === null ? { ok: true, command } : fail(bad);
}

function parsePlain(text: string): ParseResult {
  const words = text.split(/\s+/).filter((w) => w !== '');
  const action = words[0]?.toLowerCase();
  if (action !== 'drain' && action !== 'undrain') {
    return fail(`expected JSON or "drain <backend> [deadline] [reason]" / "undrain <backend>", got ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (words.length < 2) return fail(`"${action}" needs a backend name`);
  const backend = checkBackend(words[1]);
  if (backend === null) return fail(`backend name must match ${BACKEND_NAME_RE}, got ${JSON.stringify(words[1])}`);
  const command: ControlCommand = { action, backend };
  let rest = words.slice(2);
  if (action === 'drain' && rest.length > 0) {
    const first = rest[0]!;
    const ms = parseDeadlineToken(first);
    if (ms !== null) {
      if (ms > MAX_DEADLINE_MS) return fail(`deadline must be at most ${MAX_DEADLINE_MS} ms`);
      command.deadlineMs = ms;
      rest = rest.slice(1);
    } else if (/^\d+(\.\d+)?$/.test(first)) {
      return fail(`deadline needs a unit (ms, s, m, h), e.g. "drain ${backend} ${first}s"`);
    }
  }
  if (rest.length > 0) {
    const reason = rest.join(' ');
    if (reason.length > MAX_REASON_LENGTH) return fail(`reason must be at most ${MAX_REASON_LENGTH} characters`);
    command.reason = reason;
  }
  return { ok: true, command };
}

/** Parses one bus message. Never throws. */
export function parseControlMessage(text: string): ParseResult {
  if (typeof text !== 'string') return fail('message is not text');
  if (text.length > MAX_CONTROL_MESSAGE_LENGTH) return fail(`message longer than ${MAX_CONTROL_MESSAGE_LENGTH} characters`);
  const t = text.trim();
  if (t === '') return fail('empty message');
  return t.startsWith('{') ? parseJson(t) : parsePlain(t);
}

/** The JSON form (fields in a stable order, undefined ones left out). */
export function encodeControlMessage(c: ControlCommand): string {
  const o: Record<string, unknown> = { action: c.action, backend: c.backend };
  if (c.deadlineMs !== undefined) o['deadlineMs'] = c.deadlineMs;
  if (c.reason !== undefined) o['reason'] = c.reason;
  if (c.id !== undefined) o['id'] = c.id;
  if (c.at !== undefined) o['at'] = c.at;
  if (c.origin !== undefined) o['origin'] = c.origin;
  return JSON.stringify(o);
}

/** A drain recorded in the desired-state hash. */
export interface DesiredDrain {
  backend: string;
  deadlineMs?: number;
  reason?: string;
  /** Epoch ms the drain was issued. */
  at: number;
  origin?: string;
}

/**
 * What a replica must do so that its pool matches the desired state. Pure.
 *  - a backend with a desired drain that is not draining here: drain it with what is left of its
 *    deadline (`at + deadlineMs - now`, at least 0), so a replica that starts late closes
 *    lingering sessions when the rest of the fleet does;
 *  - a backend draining here by operator command (not pending removal by a reload) with no desired
 *    drain: undrain it.
 * Backends this replica does not know are ignored.
 */
export function planConvergence(
  backends: readonly { name: string; draining: boolean; removing: boolean }[],
  desired: readonly DesiredDrain[],
  now: number,
  defaultDeadlineMs: number,
): ({ action: 'drain'; backend: string; deadlineMs: number; reason?: string } | { action: 'undrain'; backend: string })[] {
  const want = new Map(desired.map((d) => [d.backend, d]));
  const out: ({ action: 'drain'; backend: string; deadlineMs: number; reason?: string } | { action: 'undrain'; backend: string })[] = [];
  for (const b of backends) {
    const d = want.get(b.name);
    if (d !== undefined && !b.draining) {
      const left = Math.min(MAX_DEADLINE_MS, Math.max(0, d.at + (d.deadlineMs ?? defaultDeadlineMs) - now));
      const step: { action: 'drain'; backend: string; deadlineMs: number; reason?: string } = { action: 'drain', backend: b.name, deadlineMs: left };
      if (d.reason !== undefined) step.reason = d.reason;
      out.push(step);
    } else if (d === undefined && b.draining && !b.removing) {
      out.push({ action: 'undrain', backend: b.name });
    }
  }
  return out;
}

/** The desired-state record of a drain command (`at` defaults to `now`). */
export function desiredFromCommand(c: ControlCommand, now: number): DesiredDrain {
  const d: DesiredDrain = { backend: c.backend, at: c.at ?? now };
  if (c.deadlineMs !== undefined) d.deadlineMs = c.deadlineMs;
  if (c.reason !== undefined) d.reason = c.reason;
  if (c.origin !== undefined) d.origin = c.origin;
  return d;
}
