import type { ChunkReader, MessageInfo } from '../../rtmp/chunk-reader.js';
import { MessageType } from '../../rtmp/constants.js';
import { ProtocolError } from '../../rtmp/errors.js';
import { controlMessage, decodeCommand, encodeCommand } from '../../rtmp/messages.js';
import type { UpstreamConnection } from '../migration/upstream-connection.js';
import type { Session } from './session.js';

/**
 * The phase after a migration switch: the proxy terminates RTMP both ways. Client messages are
 * re-chunked for the backend the proxy publishes to (`upstream`); its messages are re-chunked for
 * the client (ClientStream). Protocol control is per connection: the proxy speaks for itself on
 * each side (its acknowledgements to the client here, to the backend in PublisherProtocol).
 */
export class Relay {
  readonly kind = 'relay';
  /** When the last switch happened; cleared when the first video message reached the new backend. */
  switchedAt: number | null;
  private lastAckToClient = 0;

  constructor(
    private readonly s: Session,
    /** The session's C→S reader: every client message is collected whole now. */
    private readonly reader: ChunkReader,
    /** The connection the proxy publishes to (replaced by a switch in relay). */
    public upstream: UpstreamConnection,
  ) {
    this.switchedAt = Date.now();
  }

  /** Client bytes: every message comes out of the reader whole (`clientMessage`). */
  clientData(buf: Buffer): void {
    const s = this.s;
    try {
      this.reader.feed(buf);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      if (err.code === 'buffer-budget') s.traffic.overBudget('closed', 'relayed messages');
      else
        s.settings.peerLog.write(`relay-parse:${err.code}`, { session: s.id, reason: err.code, err: err.message }, 'RTMP parse failed in relay mode: closing');
      s.hooks.parseFallback(s, 'c2s', err);
      s.end(`parse-error:${err.code}`);
      return;
    }
    this.ackClient();
  }

  /** One complete client message to the backend the session publishes to. */
  clientMessage(info: MessageInfo, payload: Buffer | null): void {
    const s = this.s;
    const t = info.typeId;
    if (t <= MessageType.SetPeerBandwidth) return;
    if (payload === null) {
      s.end('relay-uncollected-message');
      return;
    }
    s.migrator?.switchInRelay(this, info);
    const up = this.upstream;
    const clientSid = s.view.facts.streamId;
    const upSid = up.protocol.streamId;
    let body = payload;
    if ((t === MessageType.CommandAmf0 || t === MessageType.CommandAmf3) && clientSid !== upSid) body = this.mapCommandStreamId(t, payload, clientSid, upSid);
    const ok = up.send({ csid: info.csid, timestamp: info.timestamp, typeId: t, streamId: info.streamId === clientSid ? upSid : info.streamId, payload: body });
    if (!ok) s.pair.client.pause();
    if (this.switchedAt !== null && t === MessageType.Video) {
      s.settings.metrics?.migrationGapSeconds.observe((Date.now() - this.switchedAt) / 1000);
      this.switchedAt = null;
    }
  }

  /** Acknowledges the client's bytes by the window it asked for. */
  ackClient(): void {
    const s = this.s;
    const bytesIn = s.pair.bytesIn;
    if (s.clientWindowAck <= 0 || bytesIn - this.lastAckToClient < s.clientWindowAck) return;
    this.lastAckToClient = bytesIn;
    s.out.send(controlMessage(MessageType.Acknowledgement, bytesIn >>> 0));
  }

  /** deleteStream / closeStream name the stream id in an argument: the backend knows its own. */
  private mapCommandStreamId(typeId: number, payload: Buffer, from: number | null, to: number): Buffer {
    let cmd;
    try {
      cmd = decodeCommand(typeId, payload, this.s.settings.amfLimits);
    } catch {
      return payload;
    }
    if (cmd === null || cmd.name !== 'deleteStream' || cmd.args[0] !== from) return payload;
    const body = encodeCommand(cmd.name, cmd.transactionId, cmd.commandObject, to, ...cmd.args.slice(1));
    return typeId === MessageType.CommandAmf3 ? Buffer.concat([Buffer.of(0), body]) : body;
  }
}

/** A message of the relayed backend for the client, stream id mapped back (also while the session ends). */
export function relayServerMessage(s: Session, up: UpstreamConnection, info: MessageInfo, payload: Buffer): void {
  if (up !== s.pair.relayed) return;
  const clientSid = s.view.facts.streamId ?? 0;
  s.out.send({
    csid: info.csid,
    timestamp: info.timestamp,
    typeId: info.typeId,
    streamId: info.streamId === up.protocol.streamId ? clientSid : info.streamId,
    payload,
  });
}
