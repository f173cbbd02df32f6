/** The RTMPS listener's certificate: loaded at start and on SIGHUP (see ProxyServer.listenTls). */
import fs from 'node:fs';
import tls from 'node:tls';

/** Reads a PEM certificate chain and key; throws (with the file named) when either does not load. */
export function loadTlsContext(certFile: string, keyFile: string): tls.SecureContext {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = fs.readFileSync(certFile);
  } catch (e) {
    throw new Error(`cannot read tls.cert ${certFile}: ${(e as Error).message}`);
  }
  try {
    key = fs.readFileSync(keyFile);
  } catch (e) {
    throw new Error(`cannot read tls.key ${keyFile}: ${(e as Error).message}`);
  }
  try {
    return tls.createSecureContext({ cert, key });
  } catch (e) {
    throw new Error(`tls.cert ${certFile} / tls.key ${keyFile} do not load: ${(e as Error).message}`);
  }
}
