import type { MessageInfo } from '../../rtmp/chunk-reader.js';
import { type Command, CAPS_EX_RECONNECT, decodeCommand, goAwayMessage, reconnectRequestMessage, withCapsEx } from '../../rtmp/messages.js';
import type { Session } from './session.js';

/**
 * What the proxy tells a client on its own: RTMP Go Away (docs/protocol.md#go-away), the E-RTMP
 * ReconnectRequest, and the capsEx Reconnect offer in the connect `_result`
 * (docs/protocol.md#e-rtmp-reconnect). Created with the session's first notice or offer.
 */
export class Notices {
  private goAwayRequested = false;
  private reconnectRequested = false;
  /** The connect `_result` is awaited to add capsEx to it. */
  capsExPending = false;

  constructor(private readonly s: Session) {}

  /** Go Away at the next safe point of the client-bound stream. Idempotent. */
  goAway(): boolean {
    const s = this.s;
    if (this.goAwayRequested) return true;
    return (this.goAwayRequested = s.out.tell(goAwayMessage(), () => {
      s.goAwaySentAt = Date.now();
      s.hooks.goAwayWritten(s);
      s.log.info({ session: s.id, backend: s.backendName }, 'go away sent');
    }));
  }

  /** `NetConnection.Connect.ReconnectRequest`, with the configured tcUrl if any. Idempotent. */
  reconnectRequest(): boolean {
    const s = this.s;
    if (this.reconnectRequested) return true;
    const tcUrl = s.settings.erpc?.tcUrl;
    return (this.reconnectRequested = s.out.tell(reconnectRequestMessage(tcUrl ? { tcUrl } : {}), () => {
      s.reconnectRequestSentAt = Date.now();
      s.settings.metrics?.reconnectRequests.inc({ backend: s.backendName ?? 'none' });
      s.log.info({ session: s.id, backend: s.backendName, tcUrl: tcUrl || null }, 'reconnect request sent');
    }));
  }

  /**
   * Adds capsEx Reconnect to the connect `_result` this client gets (it sent capsEx, so it reads
   * the server's; nginx-rtmp sends none). `answeredLocally`: the proxy's own `_result` has it
   * already; when the backend's messages are relayed whole, `relayedReply` adds it.
   */
  offerCapsEx(answeredLocally: boolean): void {
    const s = this.s;
    if (s.out.relaysWhole) {
      this.capsExPending = !answeredLocally;
      return;
    }
    const txn = s.view.facts.connectTransactionId;
    const amf = s.settings.amfLimits;
    this.capsExPending = true;
    s.out.s2c.setCommandRewriter((info, payload) => {
      if (info.streamId !== 0) return null;
      const cmd = decodeCommand(info.typeId, payload, amf);
      if (cmd === null || cmd.name !== '_result' || cmd.transactionId !== txn) return null;
      const out = withCapsEx(info.typeId, payload, CAPS_EX_RECONNECT, amf);
      s.settings.metrics?.capsExOffered.inc({ result: out === null ? 'unchanged' : 'rewritten' });
      if (out !== null) s.log.debug({ session: s.id }, 'capsEx Reconnect added to the connect _result');
      return out;
    });
  }

  /** A server message passed through (spliced stream): the rewriter is done once the connect is answered. */
  serverMessage(): void {
    if (!this.capsExPending || !this.s.view.facts.connectAnswered) return;
    this.capsExPending = false;
    const s2c = this.s.out.s2c;
    s2c.setCommandRewriter(null);
    // Held messages reach the rewriter right after this; one that was not held went out as it was.
    if (!s2c.holding) this.s.settings.metrics?.capsExOffered.inc({ result: 'interleaved' });
  }

  /** A backend reply relayed whole: the connect `_result` with capsEx added, else null. */
  relayedReply(info: MessageInfo, cmd: Command, payload: Buffer): Buffer | null {
    if (!this.capsExPending || cmd.name !== '_result' || cmd.transactionId !== this.s.view.facts.connectTransactionId) return null;
    this.capsExPending = false;
    const out = withCapsEx(info.typeId, payload, CAPS_EX_RECONNECT, this.s.settings.amfLimits);
    this.s.settings.metrics?.capsExOffered.inc({ result: out === null ? 'unchanged' : 'rewritten' });
    return out;
  }
}
