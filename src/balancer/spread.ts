/**
 * Storm-free closes: runs `each` over `items` one at a time, evenly over `windowMs` (the first at
 * once, item i at i × windowMs / n), so the clients of closed sessions do not all reconnect in the
 * same instant. `each` returns false for an item it skipped (a session that left meanwhile).
 * Items overdue after a stalled event loop run back to back. Returns a cancel function; `done`
 * gets how many items `each` acted on, after the last (even when that one cancelled: closing the
 * last session may end the drain), not when cancelled before. Timers are unref'd.
 */
export function spreadOver<T>(items: readonly T[], windowMs: number, each: (item: T) => boolean, done: (acted: number) => void = () => {}): () => void {
  const n = items.length;
  const step = n === 0 ? 0 : windowMs / n;
  const startedAt = Date.now();
  let i = 0;
  let acted = 0;
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const next = (): void => {
    timer = undefined;
    if (cancelled) return;
    const due = Date.now() - startedAt;
    while (i < n && !cancelled && i * step <= due) if (each(items[i++]!)) acted++;
    if (i < n) {
      if (cancelled) return;
      timer = setTimeout(next, Math.max(0, Math.round(i * step - (Date.now() - startedAt))));
      timer.unref?.();
      return;
    }
    done(acted);
  };
  next();
  return () => {
    cancelled = true;
    if (timer) clearTimeout(timer);
  };
}
