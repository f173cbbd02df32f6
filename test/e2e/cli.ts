// Runs the CLI from source (through tsx), as bin/rtmp-goaway-proxy.js runs it from dist/.
// The e2e tests start the proxy (`serve`), the reference publisher (`publish`) and the demo with it.
import { main } from '../../src/cli.js';

await main(process.argv);
