// `npm run build`'s second step: tsc compiles only .ts, so the console's page, script and style
// (src/control/console/static) are copied next to the compiled module that serves them.
import { cpSync, rmSync } from 'node:fs';

const from = 'src/control/console/static';
const to = 'dist/control/console/static';
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
