/**
 * Text the CLI prints for a human but did not write itself (app names and stream keys a publisher
 * chose, records any Redis client can write, answers of an admin API) goes through `safeText`
 * first, so it cannot drive the operator's terminal: no forged lines (CR, LF), no escape sequences
 * (window title, colours, cursor moves, hidden text), no C1 controls that some terminals obey, and
 * no bidirectional overrides that reorder what is shown. Each such character is shown as a visible
 * escape (`\x1b`, `\r`, `\u202e`); everything else is kept. JSON output needs none of this.
 */

// C0 controls, DEL, C1 controls; bidi marks, embeddings, overrides and isolates; line and paragraph separators.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `v` as text that is safe to print on a terminal (null and undefined as `-`). */
export function safeText(v: unknown): string {
  const s = v === null || v === undefined ? '-' : String(v);
  return s.replace(UNSAFE, escapeChar);
}
