import http from "node:http";
import http2 from "node:http2";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createConnectRouter } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetTenantBySlugRequestSchema, TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { DEFAULT_LIMITS, listen } from "../../src/transport/server.js";
import { createTlsTermination } from "../../src/transport/tls.js";
import { takesUnaryAdapter } from "../../src/transport/unary-adapter.js";
import { createWholeUnaryHandlers } from "../../src/transport/whole-unary.js";
import { createTestPki } from "../support/certificates.js";
import { aborted, implementationSpec, leanHandler, logger, options, PATH, READ_MAX, routes, startUnaryServers, wholeCall, wholeCalls, type UnaryServers } from "../support/unary-servers.js";
import { h2Post } from "../support/wire.js";

let servers: UnaryServers;
beforeAll(async () => {
  servers = await startUnaryServers();
});
afterAll(async () => {
  await servers.close();
});

type Answer = { status: number; headers: Record<string, string>; body: Buffer };

// Headers that name the call, not the moment or the connection.
const COMPARED = /^(content-type|content-length|content-encoding|x-seen|x-detail|trailer-.*|connect-.*)$/;

// chunked: the body in two writes without a content-length, as connect-es's own client sends it.
function h1(port: number, headers: Record<string, string>, body: Buffer, chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: PATH, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: pick(res.headers), body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    if (!chunked) return void req.end(body);
    req.write(body.subarray(0, body.length >> 1));
    setTimeout(() => req.end(body.subarray(body.length >> 1)), 5);
  });
}

function pick(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (COMPARED.test(k) && v !== undefined) out[k] = String(v);
  return out;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const CASES: { name: string; headers: Record<string, string>; body: Buffer }[] = [
  { name: "a JSON answer, with response headers and trailers", headers: { "content-type": "application/json" }, body: json({ slug: "acme" }) },
  { name: "a JSON answer, charset given", headers: { "content-type": "application/json; charset=utf-8" }, body: json({ slug: "acme" }) },
  { name: "a binary answer", headers: { "content-type": "application/proto" }, body: Buffer.from(toBinary(GetTenantBySlugRequestSchema, create(GetTenantBySlugRequestSchema, { slug: "acme" }))) },
  { name: "an error with metadata", headers: { "content-type": "application/json" }, body: json({ slug: "missing" }) },
  { name: "JSON that does not parse", headers: { "content-type": "application/json" }, body: Buffer.from('{"slug":') },
  { name: "an unknown field", headers: { "content-type": "application/json" }, body: json({ slug: "acme", nope: 1 }) },
  { name: "bytes that are not UTF-8", headers: { "content-type": "application/json" }, body: Buffer.from([0x7b, 0x22, 0x73, 0x6c, 0x75, 0x67, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]) },
  { name: "an undecodable binary body", headers: { "content-type": "application/proto" }, body: Buffer.from([0x0a, 0x7f, 0x01]) },
  { name: "a gzip request body", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gzipSync(json({ slug: "acme" })) },
  { name: "a gzip header on a body that is not gzip", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: json({ slug: "acme" }) },
  { name: "an encoding the server does not know", headers: { "content-type": "application/json", "content-encoding": "zstd" }, body: json({ slug: "acme" }) },
  { name: "a large answer to a client accepting gzip", headers: { "content-type": "application/json", "accept-encoding": "gzip" }, body: json({ slug: "big" }) },
  { name: "a deadline that does not parse", headers: { "content-type": "application/json", "connect-timeout-ms": "soon" }, body: json({ slug: "acme" }) },
  { name: "a deadline in time", headers: { "content-type": "application/json", "connect-timeout-ms": "10000" }, body: json({ slug: "acme" }) },
  { name: "a large answer to a client accepting brotli only", headers: { "content-type": "application/json", "accept-encoding": "br" }, body: json({ slug: "big" }) },
  { name: "a small answer to a client accepting gzip", headers: { "content-type": "application/json", "accept-encoding": "gzip, br" }, body: json({ slug: "acme" }) },
  { name: "an implementation that throws something else than a ConnectError", headers: { "content-type": "application/json" }, body: json({ slug: "throw" }) },
  { name: "a deadline already past", headers: { "content-type": "application/json", "connect-timeout-ms": "0" }, body: json({ slug: "acme" }) },
  { name: "an empty body", headers: { "content-type": "application/json" }, body: Buffer.alloc(0) },
  { name: "a body over readMaxBytes", headers: { "content-type": "application/json" }, body: json({ slug: "x".repeat(READ_MAX) }) },
];

describe("the lean unary adapter answers as connect-node's own adapter does", () => {
  const decode = (a: Answer) =>
    (a.headers["content-encoding"] === "gzip" ? gunzipSync(a.body) : a.headers["content-encoding"] === "br" ? brotliDecompressSync(a.body) : a.body).toString("latin1");
  // Both lean variants: with the whole-body handlers (as the service runs) and through the router's handler.
  const same = async (headers: Record<string, string>, body: Buffer, chunked: boolean) => {
    const [theirs, ...mine] = await Promise.all([servers.reference, servers.lean, servers.generic].map((s) => h1(s.port, headers, body, chunked)));
    for (const [i, answer] of mine.entries()) {
      const which = i === 0 ? "with the whole-body handlers" : "through the router's handler";
      expect(answer.status, which).toBe(theirs!.status);
      expect(answer.headers, which).toEqual(theirs!.headers);
      expect(decode(answer), which).toBe(decode(theirs!));
    }
  };
  it.each(CASES)("$name", async ({ headers, body }) => same(headers, body, false));

  it.each(CASES.filter((c) => c.body.length > 1))("$name, the body chunked without a content-length", async ({ headers, body }) => same(headers, body, true));

  it("answers Connect calls of a unary content type with the Connect unary handlers, and only those", async () => {
    const before = wholeCalls.connect;
    for (const type of ["application/json", "application/json; charset=utf-8", "application/proto"]) await h1(servers.lean.port, { "content-type": type }, json({ slug: "acme" }));
    expect(wholeCalls.connect - before).toBe(3);
    await h1(servers.lean.port, { "content-type": "application/json; charset=latin1" }, json({ slug: "acme" }));
    await h1(servers.lean.port, { "content-type": "application/json" }, json({ slug: "x".repeat(READ_MAX) }));
    expect(wholeCalls.connect - before).toBe(3);
  });

  it("answers over h2c as well", async () => {
    const call = async (port: number) => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      try {
        return await h2Post(session, PATH, { "content-type": "application/json", "content-length": "15" }, json({ slug: "acme" }));
      } finally {
        session.close();
      }
    };
    const [mine, theirs] = await Promise.all([call(servers.lean.port), call(servers.reference.port)]);
    expect(mine.status).toBe(200);
    expect(pick(mine.headers)).toEqual(pick(theirs.headers));
    expect(mine.body.toString()).toBe(theirs.body.toString());
  });
});

describe("the lean unary adapter", () => {
  it("takes unary POSTs of every protocol unless their body is declared too large", () => {
    const rpc = createConnectRouter(options);
    routes(rpc);
    const handler = rpc.handlers.find((h) => h.requestPath === PATH)!;
    const req = (method: string, headers: http.IncomingHttpHeaders) => ({ method, headers }) as http.IncomingMessage;
    const takes = (method: string, headers: http.IncomingHttpHeaders) => takesUnaryAdapter(handler, req(method, headers), READ_MAX);
    for (const type of ["application/json", "application/json; charset=utf-8", "application/proto", "application/grpc", "application/grpc+proto", "application/grpc-web+proto"]) {
      expect(takes("POST", { "content-type": type, "content-length": "10" }), type).toBe(true);
      expect(takes("POST", { "content-type": type }), `${type}, no content-length`).toBe(true);
    }
    expect(takes("GET", { "content-type": "application/json", "content-length": "0" })).toBe(false);
    expect(takes("POST", { "content-type": "application/connect+json", "content-length": "10" })).toBe(false);
    expect(takes("POST", { "content-type": "text/plain", "content-length": "10" })).toBe(false);
    expect(takes("POST", {})).toBe(false);
    expect(takes("POST", { "content-type": "application/json", "content-length": String(READ_MAX + 1) })).toBe(false);
    expect(takes("POST", { "content-type": "application/json", "content-length": "1e3" })).toBe(false);
  });

  it("refuses a body that grows past the limit without waiting for (or keeping) the rest of it", async () => {
    const answer = await new Promise<{ status: number; sentBytes: number }>((resolve, reject) => {
      let sent = 0;
      let answered: number | undefined;
      const req = http.request({ host: "127.0.0.1", port: servers.lean.port, method: "POST", path: PATH, headers: { "content-type": "application/json" } }, (res) => {
        answered = res.statusCode!;
        res.resume();
        resolve({ status: answered, sentBytes: sent });
        req.destroy();
      });
      req.on("error", () => answered ?? reject(new Error("no answer")));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = () => {
        // Bounded: 64 MiB at most, far past the 64 KiB limit.
        while (answered === undefined && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        if (answered === undefined) req.end();
      };
      req.write('{"slug":"');
      pump();
    });
    expect(answer.status).toBe(429); // resource_exhausted, as connect-es answers a message over readMaxBytes
    expect(answer.sentBytes).toBeLessThan(16 * 1024 * 1024);
  });

  it("tells the handler the scheme the call came in on (https behind TLS)", async () => {
    const pki = await createTestPki();
    const termination = await createTlsTermination({ certFile: pki.files.serverCert, keyFile: pki.files.serverKey, clientCaFile: undefined }, 5_000);
    const server = await listen(leanHandler(), { host: "127.0.0.1", port: 0 }, logger, DEFAULT_LIMITS, termination);
    try {
      for (const httpVersion of ["1.1", "2"] as const) {
        const client = createClient(TenantRegistryService, createConnectTransport({ baseUrl: `https://127.0.0.1:${server.port}`, httpVersion, nodeOptions: { ca: pki.ca } }));
        expect((await client.getTenantBySlug({ slug: "scheme" })).tenant?.name, httpVersion).toBe("https:");
      }
      const plain = createClient(TenantRegistryService, createConnectTransport({ baseUrl: `http://127.0.0.1:${servers.lean.port}`, httpVersion: "1.1" }));
      expect((await plain.getTenantBySlug({ slug: "scheme" })).tenant?.name).toBe("http:");
    } finally {
      await server.close(100);
      await pki.remove();
    }
  });

  it("aborts a call whose client goes away, with Canceled", async () => {
    const gone = new Promise<void>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: servers.lean.port, method: "POST", path: PATH, headers: { "content-type": "application/json" } });
      req.on("error", () => resolve());
      req.end(json({ slug: "hold-1" }));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    await gone;
    await expect.poll(() => aborted.get("hold-1"), { timeout: 2_000 }).toBeInstanceOf(ConnectError);
    expect((aborted.get("hold-1") as ConnectError).code).toBe(Code.Canceled);
  });
});

describe("the Connect unary handlers", () => {
  it("end a call in flight with the router's shutdown reason", async () => {
    const shutdown = new AbortController();
    const handlers = createWholeUnaryHandlers([implementationSpec()], { ...options, shutdownSignal: shutdown.signal });
    const answer = handlers.get(PATH)!.connect!(wholeCall("application/json", json({ slug: "hold-shutdown" })));
    setTimeout(() => shutdown.abort(new ConnectError("the server is shutting down; retry", Code.Unavailable)), 20);
    const bounded = await Promise.race([answer, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000))]);
    expect(bounded?.status).toBe(503);
    expect(JSON.parse(Buffer.from(bounded!.body).toString())).toEqual({ code: "unavailable", message: "the server is shutting down; retry" });
  });

  it("are not made when the router requires the Connect protocol header (connect's own handler checks it)", () => {
    const handlers = createWholeUnaryHandlers([implementationSpec()], { ...options, requireConnectProtocolHeader: true });
    expect(handlers.get(PATH)?.connect).toBeUndefined();
    expect(handlers.get(PATH)?.grpc).toBeDefined();
    expect(createWholeUnaryHandlers([implementationSpec()], options).get(PATH)?.connect).toBeDefined();
  });
});
