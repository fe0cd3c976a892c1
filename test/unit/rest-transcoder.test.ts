import http from "node:http";
import type { AddressInfo } from "node:net";
import { create, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createServiceImplSpec, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restRouteKey } from "../../src/transport/context.js";
import { createLogger } from "../../src/logger.js";
import { createRestHandler } from "../../src/transport/rest.js";
import { serviceWithRules } from "../support/rest-descriptors.js";

// The transcoder on a real port, in front of a run-time service whose one
// implementation records what each call saw (headers, signal, route, message).
const service = serviceWithRules([
  { pattern: { case: "post", value: "/v1/things/{id}:echo" }, body: "*", responseBody: "item" },
  { pattern: { case: "get", value: "/v1/things/{id}" } },
]);
type Seen = { header: Headers; signal: AbortSignal; route: string | undefined; request: Record<string, unknown> };
const seen: Seen[] = [];
let hold: Promise<void> | undefined;
let release: () => void = () => {};

async function impl(request: Message, ctx: HandlerContext) {
  const req = request as unknown as { id: string; colour: number; inner?: { id: string } };
  seen.push({ header: ctx.requestHeader, signal: ctx.signal, route: ctx.values.get(restRouteKey), request: { ...req } });
  if (hold) await hold;
  if (req.id === "missing") throw new ConnectError("no such thing", Code.NotFound);
  return create(service.methods[0]!.output, { item: { id: req.id, colour: req.colour } } as never);
}
const interceptorSaw: Headers[] = [];
const recordHeaders: Interceptor = (next) => async (req) => {
  interceptorSaw.push(req.header);
  const res = await next(req);
  res.header.set("x-from-handler", "yes");
  return res;
};

let server: http.Server;
let port: number;
beforeAll(async () => {
  const spec = createServiceImplSpec(service, { m0: impl, m1: impl } as never);
  const rest = createRestHandler({ services: [spec], interceptors: [recordHeaders], jsonOptions: { alwaysEmitImplicit: true }, logger: createLogger("silent") });
  server = http.createServer((req, res) => {
    rest(req, res, createContextValues()).then((handled) => {
      if (!handled) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function request(method: string, path: string, headers: http.OutgoingHttpHeaders = {}, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: unknown }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text === "" ? undefined : JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("the REST transcoder", () => {
  it("forwards every request header but hop-by-hop ones to the interceptors and the handler", async () => {
    seen.length = 0;
    interceptorSaw.length = 0;
    const res = await request("GET", "/v1/things/t1", {
      "x-brand-new-header": "kept",
      authorization: "Bearer abc",
      "x-forwarded-for": "203.0.113.9",
      connection: "keep-alive, x-private-hop",
      "x-private-hop": "dropped",
      "keep-alive": "timeout=5",
      te: "trailers",
    });
    expect(res.status).toBe(200);
    for (const header of [seen[0]!.header, interceptorSaw[0]!]) {
      expect(header.get("x-brand-new-header")).toBe("kept");
      expect(header.get("authorization")).toBe("Bearer abc");
      expect(header.get("x-forwarded-for")).toBe("203.0.113.9");
      expect(header.get("host")).toBe(`127.0.0.1:${port}`);
      for (const hop of ["connection", "x-private-hop", "keep-alive", "te"]) expect(header.has(hop)).toBe(false);
    }
    expect(res.headers["x-from-handler"]).toBe("yes");
  });

  it("puts the matched route template in the call's context", async () => {
    seen.length = 0;
    await request("GET", "/v1/things/t1");
    await request("POST", "/v1/things/t2:echo", { "content-type": "application/json" }, "{}");
    expect(seen.map((s) => s.route)).toEqual(["/v1/things/{id}", "/v1/things/{id}:echo"]);
  });

  it("decodes path, body and short enum labels into the request, and writes short labels back", async () => {
    seen.length = 0;
    const res = await request("POST", "/v1/things/t%203:echo", { "content-type": "application/json" }, JSON.stringify({ colour: "Deep_Red", tags: ["a"] }));
    expect(seen[0]!.request).toMatchObject({ id: "t 3", colour: 1, tags: ["a"] });
    expect(res).toMatchObject({ status: 200, body: { id: "t 3", colour: "deep_red" } });
    const whole = await request("GET", "/v1/things/t4?colour=COLOUR_DEEP_RED&inner.id=x");
    expect(seen[1]!.request).toMatchObject({ id: "t4", colour: 1, inner: { id: "x" } });
    expect(whole.body).toEqual({ item: { id: "t4", colour: "deep_red" } });
  });

  it("answers bad input 400 naming it, and handler errors with their code as HTTP status", async () => {
    expect(await request("GET", "/v1/things/t1?nope=1")).toMatchObject({ status: 400, body: { code: "invalid_argument", message: 'unknown query parameter "nope"' } });
    expect(await request("POST", "/v1/things/t1:echo", {}, "{not json")).toMatchObject({ status: 400, body: { code: "invalid_argument" } });
    expect(await request("POST", "/v1/things/t1:echo", {}, '{"colour":"sleeping"}')).toMatchObject({
      status: 400,
      body: { code: "invalid_argument", message: expect.stringContaining(`"sleeping"`) },
    });
    expect(await request("GET", "/v1/things/missing")).toMatchObject({ status: 404, body: { code: "not_found", message: "no such thing" } });
    expect(await request("DELETE", "/v1/things/t1")).toMatchObject({ status: 405, headers: { allow: "GET" } });
  });

  it("does not abort the signal of a call that finished normally", async () => {
    seen.length = 0;
    await request("GET", "/v1/things/t1");
    await request("GET", "/v1/things/missing");
    await new Promise((resolve) => setTimeout(resolve, 50)); // the sockets' close events have fired by now
    expect(seen.map((s) => s.signal.aborted)).toEqual([false, false]);
  });

  it("aborts the signal, as Canceled, when the client goes away mid-call", async () => {
    seen.length = 0;
    hold = new Promise((resolve) => (release = resolve));
    const req = http.request({ host: "127.0.0.1", port, method: "GET", path: "/v1/things/t1", agent: false });
    req.on("error", () => {});
    req.end();
    await expect.poll(() => seen.length).toBe(1);
    const aborted = new Promise((resolve) => seen[0]!.signal.addEventListener("abort", resolve));
    req.destroy();
    await aborted;
    release();
    hold = undefined;
    expect(seen[0]!.signal.reason).toBeInstanceOf(ConnectError);
    expect((seen[0]!.signal.reason as ConnectError).code).toBe(Code.Canceled);
  });
});
