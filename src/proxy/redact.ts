/**
 * Stream keys are credentials (whoever knows one can publish in its place), so logs and APIs show
 * only enough to tell keys apart: the first two characters and the length.
 */
export function redactStreamKey(key: string): string {
  return key.length <= 4 ? `***(${key.length})` : `${key.slice(0, 2)}***(${key.length})`;
}
