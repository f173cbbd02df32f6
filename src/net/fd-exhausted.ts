/**
 * Out of file descriptors (per process or system-wide): our limit, not the peer's fault. An accept,
 * a probe or a connect failing this way says nothing about the peer or the backend.
 */
export function isFdExhausted(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}
