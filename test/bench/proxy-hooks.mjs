// Loaded into the proxy the bench starts through bin/ (NODE_OPTIONS=--import …), for what the
// bench reads from outside and the shipped proxy does not offer; it changes nothing else:
//   SIGWINCH                runs a full GC, so RSS can be read without garbage;
//   BENCH_PROFILE_FILE=F    SIGUSR2 starts the V8 CPU profiler, the next SIGUSR2 writes the profile
//                           to F: a profile of the measured window only, without start-up.
// The bench starts the proxy with --expose-gc in NODE_OPTIONS, as the Node relay runs with it: the
// proxy then carries nothing the relay does not (a second V8 context for `gc`, the inspector
// module) and its RSS compares with the relay's. Without the flag, `gc` comes from a new context.
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

const gc =
  globalThis.gc ??
  (() => {
    v8.setFlagsFromString('--expose-gc');
    return runInNewContext('gc');
  })();
process.on('SIGWINCH', () => gc());

const profileFile = process.env.BENCH_PROFILE_FILE;
if (profileFile) {
  const { default: inspector } = await import('node:inspector');
  let session = null;
  process.on('SIGUSR2', () => {
    if (session === null) {
      session = new inspector.Session();
      session.connect();
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start')));
      return;
    }
    const s = session;
    session = null;
    s.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(profileFile, JSON.stringify(result.profile));
      s.disconnect();
    });
  });
}
