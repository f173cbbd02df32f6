import type { DrainStrategy } from '../../src/balancer/types.js';

/** A pool's drain strategy for tests of the pool alone: Go Away where announced, else the deadline. */
export const goAwayOrWait: DrainStrategy = {
  begin: (session) => (session.supportsGoAway && session.goAway() ? 'go-away' : 'waiting'),
};
