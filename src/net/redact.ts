import { createHash } from 'node:crypto';

/**
 * What a publisher puts in its URL can be a credential: the stream key (whoever knows one can
 * publish in its place), and a query string on the app or the tcUrl
 * (`rtmp://host/live?user=alice&pass=…/key`), which many ingest servers use for authentication.
 * Logs, the admin API and the fleet registry show only enough to tell them apart. One switch,
 * `log.streamKeys`, shows all of them in clear.
 */

/** The first two characters and the length: `ab***(12)`. */
export function redactStreamKey(key: string): string {
  return key.length <= 4 ? `***(${key.length})` : `${key.slice(0, 2)}***(${key.length})`;
}

/**
 * An app name or a URL with its query string replaced by its length (`live?***(23)`) and the
 * userinfo of a URL (`rtmp://user:pass@host/…`) by `***`. Text without either is returned as is.
 */
export function redactQuery(s: string): string {
  const q = s.indexOf('?');
  const head = q < 0 ? s : s.slice(0, q);
  const shown = head.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/, '$1***@');
  return q < 0 ? shown : `${shown}?***(${s.length - q - 1})`;
}

/** How a session's client-given credentials are shown: redacted, unless `log.streamKeys`. */
export interface ClientTextView {
  streamKey(key: string | null): string | null;
  /** The RTMP app (`connect.app`) and the `tcUrl`. */
  appOrUrl(s: string | null): string | null;
}

const IN_CLEAR: ClientTextView = { streamKey: (k) => k, appOrUrl: (s) => s };
const REDACTED: ClientTextView = {
  streamKey: (k) => (k === null ? null : redactStreamKey(k)),
  appOrUrl: (s) => (s === null ? null : redactQuery(s)),
};

export function clientTextView(inClear: boolean): ClientTextView {
  return inClear ? IN_CLEAR : REDACTED;
}

/**
 * The name of a stream that can be compared but not read back: 16 hex digits of SHA-256 over the
 * app and the stream key, both without their `?query` (tokens change between reconnects). The
 * fleet registry carries it so a replica can find where another one has a stream's publisher
 * without the key in clear.
 */
export function streamRef(app: string | null, key: string | null): string | null {
  if (app === null || key === null) return null;
  const bare = (s: string): string => {
    const q = s.indexOf('?');
    return q < 0 ? s : s.slice(0, q);
  };
  return createHash('sha256').update(bare(app)).update('\0').update(bare(key)).digest('hex').slice(0, 16);
}
