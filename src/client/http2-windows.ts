import type * as http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * How much a response stream, and the connection as a whole, may send ahead of
 * what the client has read. Node starts both at 64 KiB and never grows them,
 * so a long server stream (ExportAuditEvents, WatchChanges catching up) stops
 * for a WINDOW_UPDATE whenever the client spends a moment decoding: an export
 * read with connect-node's defaults ran at ~0.7× the rate the server sends over
 * HTTP/1.1, and at the full rate with these windows (make bench, export).
 * gRPC's own clients grow theirs the same way (grpc-go's BDP probing goes up
 * to 16 MiB). The connection's window is four streams' worth, so one stream
 * whose reader stalls cannot hold every other call on the connection.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 4 * STREAM_WINDOW_BYTES;

/**
 * connect-node's HTTP/2 session manager with those windows. The stream window
 * is a SETTINGS value; the connection's is only set on a live session
 * (`setLocalWindowSize`), so it is widened on the first request of every
 * session the manager opens (it opens a new one after a GOAWAY or an idle close).
 */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    if (session && !session.destroyed && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    }
    return stream;
  }
}

export function createWideWindowSessionManager(baseUrl: string): Http2SessionManager {
  return new WideWindowSessionManager(baseUrl, undefined, { settings: { initialWindowSize: STREAM_WINDOW_BYTES } });
}
