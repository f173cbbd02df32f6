/**
 * Why the proxy stopped understanding a byte stream. Every code is a label of the
 * `rtmp_goaway_parse_fallbacks_total` metric, so keep the set small and stable.
 */
export type ProtocolErrorCode =
  | 'rtmpe' // C0 = 6: encrypted RTMP, cannot be parsed (docs/protocol.md#handshake)
  | 'bad-version' // C0 is neither 3 nor 6
  | 'missing-header' // fmt 1/2/3 on a chunk stream that never had a fmt 0 header
  | 'interleaved-header' // fmt 0/1/2 on a chunk stream whose message is not finished
  | 'chunk-size' // Set Chunk Size outside the configured bounds or with the top bit set
  | 'message-too-large' // declared message length above the configured limit
  | 'too-many-chunk-streams' // more distinct csids than the configured limit
  | 'bad-message' // a control message of the wrong size
  | 'bad-amf' // AMF0 that does not decode within the limits
  | 'buffer-budget' // what the session holds would go over its (or the process's) buffer budget
  | 'not-parsed'; // anything else the parser refuses

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
  ) {
    super(message);
  }
}
