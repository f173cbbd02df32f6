import { type Amf0Value, amf0Object } from '../rtmp/amf0.js';
import type { OutgoingMessage } from '../rtmp/chunk-writer.js';
import { COMMAND_CSID, CONTROL_CSID, MessageType } from '../rtmp/constants.js';
import { commandMessage, controlMessage } from '../rtmp/messages.js';

/**
 * What the proxy answers in the backend's place while a session is not routed yet (late
 * binding: routing by stream key needs `publish`, which a client sends only after its `connect`
 * and `createStream` were answered). Modelled on nginx-rtmp's answers (ngx_rtmp_cmd_module.c,
 * ngx_rtmp_handler.c), which every publisher we know accepts.
 */

/** The chunk size the proxy writes to clients with (nginx-rtmp's default `chunk_size`). */
export const LOCAL_CHUNK_SIZE = 4096;
/** Window Ack Size and Set Peer Bandwidth the proxy announces (nginx-rtmp's `ack_window`). */
export const LOCAL_WINDOW = 5_000_000;
/** The message stream id the proxy gives `createStream`: nginx-rtmp and node-media-server give 1 to the first one. */
export const LOCAL_STREAM_ID = 1;

/** Messages that open the proxy's side of the S→C stream: our chunk size first. */
export function localChunkSize(): OutgoingMessage {
  return controlMessage(MessageType.SetChunkSize, LOCAL_CHUNK_SIZE);
}

/** Window Ack Size, Set Peer Bandwidth (dynamic) and `_result` to `connect` (spec §7.2.1.1). */
export function connectAnswer(transactionId: number, opts: { objectEncoding: number | null; capsEx: number | null }): OutgoingMessage[] {
  const peer = Buffer.alloc(5);
  peer.writeUInt32BE(LOCAL_WINDOW);
  peer[4] = 2; // dynamic
  const props: Record<string, Amf0Value> = { fmsVer: 'FMS/3,0,1,123', capabilities: 31 };
  // E-RTMP: the server's capsEx in the properties object (docs/protocol.md#e-rtmp-reconnect).
  if (opts.capsEx !== null) props['capsEx'] = opts.capsEx;
  return [
    controlMessage(MessageType.WindowAckSize, LOCAL_WINDOW),
    { csid: CONTROL_CSID, timestamp: 0, typeId: MessageType.SetPeerBandwidth, streamId: 0, payload: peer },
    commandMessage(
      COMMAND_CSID,
      0,
      '_result',
      transactionId,
      amf0Object(props),
      amf0Object({ level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: opts.objectEncoding ?? 0 }),
    ),
  ];
}

/** `_result` to `createStream` with the stream id. */
export function createStreamAnswer(transactionId: number): OutgoingMessage {
  return commandMessage(COMMAND_CSID, 0, '_result', transactionId, null, LOCAL_STREAM_ID);
}

export const CONNECT_REJECTED = 'NetConnection.Connect.Rejected';

/**
 * `_error` with `NetConnection.Connect.Rejected` (what Adobe servers and nginx-rtmp send on a
 * refused connect): FFmpeg prints the description ("Server error: …") and fails, OBS logs it.
 * Sent for `connect` (routing by app) or for `publish` (routing by stream key).
 */
export function rejection(transactionId: number, streamId: number, description: string): OutgoingMessage {
  return commandMessage(COMMAND_CSID, streamId, '_error', transactionId, null, amf0Object({ level: 'error', code: CONNECT_REJECTED, description }));
}
