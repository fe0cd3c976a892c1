import http from "node:http";
import type { AddressInfo } from "node:net";
import protobuf from "protobufjs";

export type ReceivedSpan = {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  /** OTLP SpanKind: 2 is SERVER, 3 CLIENT. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  readonly resource: Readonly<Record<string, string | number | boolean>>;
};

export type OtlpReceiver = {
  /** OTEL_EXPORTER_OTLP_ENDPOINT for the exporter (it appends /v1/traces). */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Content types of the export requests received, in order. */
  readonly contentTypes: string[];
  /** The headers of each export request, in order. */
  readonly requestHeaders: http.IncomingHttpHeaders[];
  stop(): Promise<void>;
};

// The part of opentelemetry/proto/collector/trace/v1 a test reads; protobuf skips the other fields.
const OTLP_PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; repeated KeyValue attributes = 9; Status status = 15;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
`;
const ExportRequest = protobuf.parse(OTLP_PROTO).root.lookupType("ExportTraceServiceRequest");

type JsonAnyValue = { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number };
type JsonKeyValue = { key: string; value: JsonAnyValue };
type JsonSpan = {
  traceId: string; spanId: string; parentSpanId?: string; traceState?: string; name: string; kind: number;
  attributes?: JsonKeyValue[]; status?: { code?: number };
};
type JsonRequest = { resourceSpans?: { resource?: { attributes?: JsonKeyValue[] }; scopeSpans?: { spans?: JsonSpan[] }[] }[] };

function attributesOf(list: JsonKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    out[key] = value.stringValue ?? value.boolValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.doubleValue) ?? "";
  }
  return out;
}

function spansOf(request: JsonRequest): ReceivedSpan[] {
  return (request.resourceSpans ?? []).flatMap((rs) =>
    (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s) => ({
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId ?? "",
        traceState: s.traceState ?? "",
        name: s.name,
        kind: s.kind,
        attributes: attributesOf(s.attributes),
        statusCode: s.status?.code ?? 0,
        resource: attributesOf(rs.resource?.attributes),
      })),
    ),
  );
}

/** A real OTLP/HTTP traces endpoint in the test process, decoding http/json and http/protobuf. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const requestHeaders: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const type = req.headers["content-type"] ?? "";
      contentTypes.push(type);
      requestHeaders.push(req.headers);
      if (req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      try {
        if (type.startsWith("application/json")) {
          spans.push(...spansOf(JSON.parse(body.toString("utf8")) as JsonRequest));
        } else if (type.startsWith("application/x-protobuf")) {
          // bytes as hex, like OTLP/JSON writes ids; int64 as numbers.
          const decoded = ExportRequest.toObject(ExportRequest.decode(body), { bytes: String, longs: Number, defaults: false }) as JsonRequest;
          const hex = (b64: string | undefined) => Buffer.from(b64 ?? "", "base64").toString("hex");
          for (const rs of decoded.resourceSpans ?? []) {
            for (const ss of rs.scopeSpans ?? []) {
              for (const s of ss.spans ?? []) Object.assign(s, { traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId) });
            }
          }
          spans.push(...spansOf(decoded));
        } else {
          res.writeHead(415).end();
          return;
        }
      } catch {
        res.writeHead(400).end();
        return;
      }
      res.writeHead(200, { "content-type": type }).end(type.startsWith("application/json") ? "{}" : "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    requestHeaders,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
