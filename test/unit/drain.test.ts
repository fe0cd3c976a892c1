import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { listen, type Listening, type RequestHandler } from "../../src/transport/server.js";
import { connectOutcome } from "../support/wire.js";

// Each part of the drain sequence (README: Robustness), over HTTP/1.1 keep-alive and h2.
const logger = createLogger("silent");
const open: Listening[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close(100)));
});

/** A server whose handler holds every request until `release()`; `entered` resolves per request. */
async function gatedServer() {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const waiting: (() => void)[] = [];
  let entered = 0;
  const handler: RequestHandler = async (_req, res) => {
    entered++;
    waiting.splice(0).forEach((w) => w());
    await gate;
    res.setHeader("content-type", "text/plain");
    res.end("finished");
  };
  const server = await listen(handler, { host: "127.0.0.1", port: 0 }, logger);
  open.push(server);
  const untilEntered = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => (entered >= n ? resolve() : waiting.push(check));
      check();
    });
  return { server, release, untilEntered };
}

const forget = (server: Listening) => open.splice(open.indexOf(server), 1);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or `fallback` if it has not settled within `ms`: a missing event fails with a message, not a test timeout. */
const within = <T, F>(promise: Promise<T>, ms: number, fallback: F) => Promise.race([promise, sleep(ms).then(() => fallback)]);

describe("drain: stop accepting at once", () => {
  it("a connection attempted right after close() begins is refused, while a call in flight keeps the drain going", async () => {
    const { server, release, untilEntered } = await gatedServer();
    const port = server.port;
    let inFlightSettled = false;
    const inFlight = fetch(`http://127.0.0.1:${port}/slow`)
      .then((r) => r.text())
      .finally(() => (inFlightSettled = true));
    await untilEntered(1);
    expect(await connectOutcome(port)).toBe("connected");
    const closing = server.close(5_000);
    // Refused by the kernel (nothing listens), not accepted and then dropped: a client
    // that got "connected" may already have sent a request that no one will answer.
    expect(await connectOutcome(port)).toBe("ECONNREFUSED");
    await sleep(100);
    expect(await connectOutcome(port)).toBe("ECONNREFUSED");
    // …and that while the drain is still waiting for the call in flight.
    expect(inFlightSettled).toBe(false);
    release();
    expect(await inFlight).toBe("finished");
    await closing;
    forget(server);
  });
});

describe("drain over HTTP/1.1 keep-alive: every response says Connection: close", () => {
  it("a response in flight when the drain begins", async () => {
    const { server, release, untilEntered } = await gatedServer();
    const agent = new http.Agent({ keepAlive: true });
    const response = new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`http://127.0.0.1:${server.port}/a`, { agent }, resolve).on("error", reject),
    );
    await untilEntered(1);
    const closing = server.close(5_000);
    release();
    const res = await response;
    res.resume();
    expect(res.headers["connection"]).toBe("close");
    await closing;
    forget(server);
    agent.destroy();
  });

  it("a request that arrives on an open connection after the drain began", async () => {
    const { server, release } = await gatedServer();
    release(); // answer at once
    const socket = net.connect(server.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    let received = "";
    socket.on("data", (chunk) => (received += String(chunk)));
    const ended = new Promise((resolve) => socket.once("close", resolve));
    socket.write("GET /first HTTP/1.1\r\nHost: x\r\n"); // the headers are not finished yet
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = server.close(5_000);
    socket.write("\r\n");
    await ended;
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(received).toMatch(/\r\nConnection: close\r\n/i);
    expect(received).toContain("finished");
    await closing;
    forget(server);
  });
});

describe("drain over h2: GOAWAY on every session at once", () => {
  it("a session with a stream in flight gets GOAWAY immediately, the stream completes, no new stream starts", async () => {
    const { server, release, untilEntered } = await gatedServer();
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    const goaway = new Promise<number>((resolve) => session.once("goaway", (code: number) => resolve(code)));
    const body = new Promise<string>((resolve, reject) => {
      const stream = session.request({ ":path": "/in-flight" });
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => (text += c));
      stream.on("end", () => resolve(text));
      stream.on("error", reject);
    });
    await untilEntered(1);
    const started = Date.now();
    const closing = server.close(5_000);
    // At drain start, not at the end of the grace period.
    expect(await within(goaway, 1_000, "no GOAWAY within 1 s of drain start")).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(Date.now() - started).toBeLessThan(1_000);
    const late = await new Promise<string>((resolve) => {
      try {
        const stream = session.request({ ":path": "/late" });
        stream.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
        stream.on("response", () => resolve("answered"));
      } catch (e) {
        resolve((e as NodeJS.ErrnoException).code ?? "threw");
      }
    });
    expect(late).not.toBe("answered");
    release();
    expect(await body).toBe("finished");
    await closing;
    forget(server);
  });

  it("an idle session open before the drain gets GOAWAY at drain start, while another session's stream is still in its grace period", async () => {
    const { server, release, untilEntered } = await gatedServer();
    const busy = http2.connect(`http://127.0.0.1:${server.port}`);
    busy.on("error", () => {});
    let bodySettled = false;
    const body = new Promise<string>((resolve, reject) => {
      const stream = busy.request({ ":path": "/in-flight" });
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => (text += c));
      stream.on("end", () => resolve(text));
      stream.on("error", reject);
    }).finally(() => (bodySettled = true));
    await untilEntered(1);
    // The idle session: established on both sides (the server's SETTINGS arrived), no stream opened.
    const idle = http2.connect(`http://127.0.0.1:${server.port}`);
    idle.on("error", () => {});
    await new Promise((resolve) => idle.once("remoteSettings", resolve));
    const goaway = new Promise<number | string>((resolve) => {
      idle.once("goaway", (code: number) => resolve(code));
      idle.once("close", () => resolve("closed without a GOAWAY"));
    });
    const closing = server.close(5_000);
    expect(await within(goaway, 1_000, "no GOAWAY within 1 s of drain start")).toBe(http2.constants.NGHTTP2_NO_ERROR);
    // The drain is still on: the other stream has its grace period.
    expect(bodySettled).toBe(false);
    release();
    expect(await body).toBe("finished");
    await closing;
    forget(server);
  });
});

describe("drain: the grace period, then the rest is ended", () => {
  it("calls still running when the grace period ends get onGraceOver, then their connections are cut", async () => {
    const { server, untilEntered } = await gatedServer(); // never released
    const hanging = new Promise<string>((resolve) => {
      http.get(`http://127.0.0.1:${server.port}/forever`).on("error", (e) => resolve(e.message));
    });
    await untilEntered(1);
    const started = Date.now();
    let graceOverAt = 0;
    await server.close(300, { onGraceOver: () => (graceOverAt = Date.now()) });
    expect(graceOverAt - started).toBeGreaterThanOrEqual(290);
    expect(await hanging).toMatch(/socket hang up|ECONNRESET/);
    forget(server);
  });

  it("onGraceOver is not called when everything finished within the grace period", async () => {
    const { server, release, untilEntered } = await gatedServer();
    const inFlight = fetch(`http://127.0.0.1:${server.port}/slow`).then((r) => r.text());
    await untilEntered(1);
    let called = false;
    const closing = server.close(5_000, { onGraceOver: () => (called = true) });
    release();
    expect(await inFlight).toBe("finished");
    await closing;
    expect(called).toBe(false);
    forget(server);
  });
});
