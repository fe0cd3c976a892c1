import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { DEFAULT_LIMITS, listen, type Listening, type RequestHandler } from "../../src/transport/server.js";

const logger = createLogger("silent");
const servers: Listening[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close(100)));
});

async function start(handler: RequestHandler, limits = DEFAULT_LIMITS): Promise<Listening> {
  const server = await listen(handler, { host: "127.0.0.1", port: 0 }, logger, limits);
  servers.push(server);
  return server;
}

const echoProtocol: RequestHandler = (req, res) => {
  res.setHeader("content-type", "text/plain");
  res.end(`HTTP/${req.httpVersion} ${req.method} ${req.url}`);
};

function h2get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":path": path });
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (body += chunk));
    stream.on("end", () => {
      session.close();
      resolve(body);
    });
    stream.on("error", reject);
  });
}

/** Resolves when the server closes the raw connection, with whatever it sent. */
function rawConnection(port: number, send?: string): Promise<{ closedAfterMs: number; received: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1", () => send && socket.write(send));
    let received = "";
    socket.on("data", (chunk) => (received += String(chunk)));
    socket.on("error", () => {});
    socket.on("close", () => resolve({ closedAfterMs: Date.now() - started, received }));
  });
}

describe("one plaintext port", () => {
  it("serves HTTP/1.1 and h2c (prior knowledge) with the same handler", async () => {
    const server = await start(echoProtocol);
    const h1 = await fetch(`http://127.0.0.1:${server.port}/one`).then((r) => r.text());
    expect(h1).toBe("HTTP/1.1 GET /one");
    expect(await h2get(server.port, "/two")).toBe("HTTP/2.0 GET /two");
  });

  it("drops a connection that sends nothing", async () => {
    const server = await start(echoProtocol, { ...DEFAULT_LIMITS, firstByteTimeoutMs: 150 });
    const { closedAfterMs, received } = await rawConnection(server.port);
    expect(received).toBe("");
    expect(closedAfterMs).toBeLessThan(5_000);
  });

  it("answers a request whose headers never finish with 408 and closes (slowloris)", async () => {
    const server = await start(echoProtocol, { ...DEFAULT_LIMITS, headersTimeoutMs: 200, requestTimeoutMs: 300 });
    const { received } = await rawConnection(server.port, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  it("on close: refuses new connections, lets in-flight requests finish, then stops", async () => {
    let release!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const server = await start(async (_req, res) => {
      entered();
      await gate;
      res.end("finished");
    });
    const inFlight = fetch(`http://127.0.0.1:${server.port}/slow`).then((r) => r.text());
    await inHandler; // the request is being handled
    const closing = server.close(5_000); // stops accepting at once
    await expect(fetch(`http://127.0.0.1:${server.port}/new`)).rejects.toThrow();
    release();
    expect(await inFlight).toBe("finished");
    await closing;
    servers.splice(servers.indexOf(server), 1);
  });

  it("cuts off what is still running when the grace period ends", async () => {
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const server = await start(() => entered()); // and never answers
    const hanging = new Promise<string>((resolve) => {
      http.get(`http://127.0.0.1:${server.port}/forever`).on("error", (e) => resolve(e.message));
    });
    await inHandler;
    const started = Date.now();
    await server.close(200);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await hanging).toMatch(/socket hang up|ECONNRESET/);
    servers.splice(servers.indexOf(server), 1);
  });
});
