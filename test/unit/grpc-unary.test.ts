import http from "node:http";
import http2 from "node:http2";
import { gunzipSync, gzipSync } from "node:zlib";
import { create, fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GetTenantBySlugRequestSchema,
  GetTenantBySlugResponseSchema,
  type GetTenantBySlugRequest,
  type GetTenantBySlugResponse,
} from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createWholeUnaryHandlers } from "../../src/transport/whole-unary.js";
import { aborted, implementationSpec, options, PATH, READ_MAX, startUnaryServers, wholeCall, wholeCalls, type UnaryServers } from "../support/unary-servers.js";
import { envelope, h2Post, type RawAnswer } from "../support/wire.js";

let servers: UnaryServers;
beforeAll(async () => {
  servers = await startUnaryServers();
});
afterAll(async () => {
  await servers.close();
});

const message = (slug: string) => Buffer.from(toBinary(GetTenantBySlugRequestSchema, create(GetTenantBySlugRequestSchema, { slug })));
const grpcBody = (slug: string) => envelope(message(slug));
const jsonBody = (slug: string) => envelope(Buffer.from(toJsonString(GetTenantBySlugRequestSchema, create(GetTenantBySlugRequestSchema, { slug }))));

// gRPC over HTTP/1.1 is rare but legal: the status comes in trailers of a chunked body.
function h1Call(port: number, headers: Record<string, string>, body: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: PATH, headers: { "content-type": "application/grpc", te: "trailers", ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const flat = (h: NodeJS.Dict<string | string[]>) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]));
        resolve({ status: res.statusCode!, headers: { ":status": String(res.statusCode), ...flat(res.headers) }, trailers: flat(res.trailers), body: Buffer.concat(chunks) });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function call(port: number, headers: Record<string, string>, body: Buffer): Promise<RawAnswer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await h2Post(session, PATH, { "content-type": "application/grpc", te: "trailers", ...headers }, body);
  } finally {
    session.close();
  }
}

// What names the call, not the moment or the connection.
const COMPARED = /^(:status|content-type|grpc-.*|x-seen|x-detail|x-after)$/;
const pick = (headers: Record<string, string>) => Object.fromEntries(Object.entries(headers).filter(([k]) => COMPARED.test(k)));

// A compressed answer is compared as what it holds: the envelope's flag and length, then the message.
function unwrap(answer: RawAnswer): string {
  const body = answer.body;
  if (body.length < 5 || body.readUInt8(0) !== 1) return body.toString("latin1");
  return `compressed:${gunzipSync(body.subarray(5)).toString("latin1")}`;
}

const CASES: { name: string; headers: Record<string, string>; body: Buffer }[] = [
  { name: "an answer, with response headers and trailers", headers: {}, body: grpcBody("acme") },
  { name: "an answer to application/grpc+proto", headers: { "content-type": "application/grpc+proto" }, body: grpcBody("acme") },
  { name: "an answer to application/grpc+json", headers: { "content-type": "application/grpc+json" }, body: jsonBody("acme") },
  { name: "an error with metadata", headers: {}, body: grpcBody("missing") },
  { name: "an implementation that throws something else than a ConnectError", headers: {}, body: grpcBody("throw") },
  { name: "an empty body", headers: {}, body: Buffer.alloc(0) },
  { name: "a body shorter than an envelope header", headers: {}, body: grpcBody("acme").subarray(0, 3) },
  { name: "a truncated envelope", headers: {}, body: grpcBody("acme").subarray(0, 7) },
  { name: "an envelope header without its message", headers: {}, body: grpcBody("acme").subarray(0, 5) },
  { name: "a message and a second envelope header without its message", headers: {}, body: Buffer.concat([grpcBody("acme"), grpcBody("acme").subarray(0, 5)]) },
  { name: "a message and a truncated second envelope", headers: {}, body: Buffer.concat([grpcBody("acme"), grpcBody("acme").subarray(0, 7)]) },
  { name: "two messages", headers: {}, body: Buffer.concat([grpcBody("acme"), grpcBody("acme")]) },
  { name: "a message and an undecodable second one", headers: {}, body: Buffer.concat([grpcBody("acme"), envelope(Buffer.from([0x0a, 0x7f, 0x01]))]) },
  { name: "an undecodable message", headers: {}, body: envelope(Buffer.from([0x0a, 0x7f, 0x01])) },
  { name: "JSON that does not parse", headers: { "content-type": "application/grpc+json" }, body: envelope(Buffer.from('{"slug":')) },
  { name: "an envelope header declaring more than readMaxBytes", headers: {}, body: Buffer.from([0, 0, 0x10, 0, 0, 0x0a]) },
  { name: "a second envelope header declaring more than readMaxBytes", headers: {}, body: Buffer.concat([grpcBody("acme"), Buffer.from([0, 0, 0x10, 0, 0])]) },
  { name: "a compressed message", headers: { "grpc-encoding": "gzip" }, body: envelope(gzipSync(message("acme")), 1) },
  { name: "a compressed message without grpc-encoding", headers: {}, body: envelope(gzipSync(message("acme")), 1) },
  { name: "a message flagged compressed that is not gzip", headers: { "grpc-encoding": "gzip" }, body: envelope(message("acme"), 1) },
  { name: "an encoding the server does not know", headers: { "grpc-encoding": "zstd" }, body: grpcBody("acme") },
  { name: "a large answer to a client accepting gzip", headers: { "grpc-accept-encoding": "gzip" }, body: grpcBody("big") },
  { name: "a small answer to a client sending gzip", headers: { "grpc-encoding": "gzip" }, body: envelope(gzipSync(message("acme")), 1) },
  { name: "a deadline that does not parse", headers: { "grpc-timeout": "soon" }, body: grpcBody("acme") },
  { name: "a deadline in time", headers: { "grpc-timeout": "10S" }, body: grpcBody("timeout") },
  { name: "a deadline in microseconds", headers: { "grpc-timeout": "90000000u" }, body: grpcBody("timeout") },
  { name: "a deadline already past", headers: { "grpc-timeout": "0m" }, body: grpcBody("acme") },
  { name: "a message over readMaxBytes", headers: {}, body: grpcBody("x".repeat(READ_MAX)) },
];

describe("gRPC unary calls with the whole-body handlers answer as connect-node's own adapter does", () => {
  const sameAnswers = async (ask: typeof call, headers: Record<string, string>, body: Buffer) => {
    const [theirs, ...mine] = await Promise.all([servers.reference, servers.lean, servers.generic].map((s) => ask(s.port, headers, body)));
    expect(theirs!.trailers["grpc-status"] ?? theirs!.headers["grpc-status"]).toBeDefined();
    for (const [i, answer] of mine.entries()) {
      const which = i === 0 ? "with the whole-body handlers" : "through the router's handler";
      expect(pick(answer.headers), which).toEqual(pick(theirs!.headers));
      expect(pick(answer.trailers), which).toEqual(pick(theirs!.trailers));
      expect(unwrap(answer), which).toBe(unwrap(theirs!));
    }
  };
  it.each(CASES)("$name", async ({ headers, body }) => sameAnswers(call, headers, body));

  it.each(CASES)("$name, over HTTP/1.1 with the status in trailers", async ({ headers, body }) => sameAnswers(h1Call, headers, body));

  it("takes gRPC calls, and not gRPC-Web ones", async () => {
    const before = wholeCalls.grpc;
    for (const type of ["application/grpc", "application/grpc+proto"]) await call(servers.lean.port, { "content-type": type }, grpcBody("acme"));
    await call(servers.lean.port, { "content-type": "application/grpc+json" }, jsonBody("acme"));
    expect(wholeCalls.grpc - before).toBe(3);
    await call(servers.lean.port, { "content-type": "application/grpc-web+proto" }, grpcBody("acme"));
    await call(servers.lean.port, { "content-type": "application/grpc+xml" }, grpcBody("acme"));
    // Read past readMaxBytes, the call goes on to connect's handler.
    await call(servers.lean.port, {}, grpcBody("x".repeat(READ_MAX)));
    expect(wholeCalls.grpc - before).toBe(3);
  });
});

describe("gRPC unary calls, from grpc-js", () => {
  type Client = grpc.Client & {
    getTenantBySlug(req: GetTenantBySlugRequest, metadata: grpc.Metadata, options: grpc.CallOptions, done: (e: grpc.ServiceError | null, res?: GetTenantBySlugResponse) => void): grpc.ClientUnaryCall;
  };
  const Client = grpc.makeGenericClientConstructor(
    {
      getTenantBySlug: {
        path: PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: (req: GetTenantBySlugRequest) => Buffer.from(toBinary(GetTenantBySlugRequestSchema, req)),
        requestDeserialize: (bytes: Buffer) => fromBinary(GetTenantBySlugRequestSchema, bytes),
        responseSerialize: (res: GetTenantBySlugResponse) => Buffer.from(toBinary(GetTenantBySlugResponseSchema, res)),
        responseDeserialize: (bytes: Buffer) => fromBinary(GetTenantBySlugResponseSchema, bytes),
      },
    },
    "TenantRegistryService",
  );
  type Outcome = { error: grpc.ServiceError | null; response: GetTenantBySlugResponse | undefined; headers: grpc.Metadata | undefined; trailers: grpc.Metadata | undefined };
  const ask = (client: Client, slug: string, options: grpc.CallOptions = {}) =>
    new Promise<Outcome>((resolve) => {
      let headers: grpc.Metadata | undefined;
      let trailers: grpc.Metadata | undefined;
      const c = client.getTenantBySlug(create(GetTenantBySlugRequestSchema, { slug }), new grpc.Metadata(), options, (error, response) => setImmediate(() => resolve({ error, response, headers, trailers })));
      c.on("metadata", (m) => (headers = m));
      c.on("status", (s) => (trailers = s.metadata));
    });

  it("get answers, headers, trailers and errors with their status, message and metadata, gzip both ways", async () => {
    for (const compression of [undefined, grpc.compressionAlgorithms.gzip]) {
      const client = new Client(`127.0.0.1:${servers.lean.port}`, grpc.credentials.createInsecure(), compression === undefined ? {} : { "grpc.default_compression_algorithm": compression }) as unknown as Client;
      try {
        const ok = await ask(client, "big");
        expect(ok.error).toBeNull();
        expect(ok.response?.tenant?.name).toBe("n".repeat(4_000));
        expect(ok.headers?.get("x-seen")).toEqual(["yes"]);
        expect(ok.trailers?.get("x-after")).toEqual(["done"]);
        const missing = await ask(client, "missing");
        expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
        expect(missing.error?.details).toBe("tenant missing not found");
        expect(missing.error?.metadata.get("x-detail")).toEqual(["on the error"]);
        const withDeadline = await ask(client, "timeout", { deadline: Date.now() + 10_000 });
        expect(withDeadline.response?.tenant?.name).toBe("true");
      } finally {
        client.close();
      }
    }
    expect(wholeCalls.grpc).toBeGreaterThan(0);
  });

  it("cancel a call on the server when they cancel it", async () => {
    const client = new Client(`127.0.0.1:${servers.lean.port}`, grpc.credentials.createInsecure()) as unknown as Client;
    try {
      const c = client.getTenantBySlug(create(GetTenantBySlugRequestSchema, { slug: "hold-grpc" }), new grpc.Metadata(), {}, () => undefined);
      setTimeout(() => c.cancel(), 100);
      await expect.poll(() => aborted.get("hold-grpc"), { timeout: 2_000 }).toBeInstanceOf(ConnectError);
      expect((aborted.get("hold-grpc") as ConnectError).code).toBe(Code.Canceled);
    } finally {
      client.close();
    }
  });
});

describe("the gRPC unary handlers", () => {
  it("end a call in flight with the router's shutdown reason", async () => {
    const shutdown = new AbortController();
    const handlers = createWholeUnaryHandlers([implementationSpec()], { ...options, shutdownSignal: shutdown.signal });
    const answer = handlers.get(PATH)!.grpc!(wholeCall("application/grpc", grpcBody("hold-shutdown")));
    setTimeout(() => shutdown.abort(new ConnectError("the server is shutting down; retry", Code.Unavailable)), 20);
    const bounded = await Promise.race([answer, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000))]);
    expect(bounded?.status).toBe(200);
    expect(bounded?.body.byteLength).toBe(0);
    expect(bounded?.trailer?.get("grpc-status")).toBe(String(Code.Unavailable));
    expect(decodeURIComponent(bounded?.trailer?.get("grpc-message") ?? "")).toBe("the server is shutting down; retry");
  });

  it("say Internal, not OK, when an implementation throws undefined (connect's handler would say OK)", async () => {
    const spec = implementationSpec();
    const method = spec.methods.getTenantBySlug!;
    const throwsUndefined = { ...spec, methods: { getTenantBySlug: { ...method, impl: () => Promise.reject(undefined) } } } as typeof spec;
    const answer = await createWholeUnaryHandlers([throwsUndefined], options).get(PATH)!.grpc!(wholeCall("application/grpc", grpcBody("acme")));
    expect(answer.trailer?.get("grpc-status")).toBe(String(Code.Internal));
  });
});
