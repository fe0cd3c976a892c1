import type http2 from "node:http2";
import tls from "node:tls";
import { ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { registerGrpcHealth } from "../../src/transport/health.js";
import { listen, type Listening, type RequestHandler } from "../../src/transport/server.js";
import { createTlsTermination } from "../../src/transport/tls.js";
import { createTestPki, type TestPki } from "../support/certificates.js";

// The real listener with a real Connect router (gRPC health), reached by real
// clients over TLS with certificates made for this test by a CA of its own.
const shutdown = new AbortController();
const handler = connectNodeAdapter({
  routes: (router) => registerGrpcHealth(router, { check: async () => ({ ready: true }) }, [], shutdown.signal),
}) as RequestHandler;
const logger = createLogger("silent");

let pki: TestPki;
beforeAll(async () => {
  pki = await createTestPki();
});
afterAll(async () => {
  shutdown.abort();
  await pki?.remove();
});

async function serveTls(clientCa?: string): Promise<Listening> {
  const termination = await createTlsTermination(
    { certFile: pki.files.serverCert, keyFile: pki.files.serverKey, clientCaFile: clientCa },
    5_000,
  );
  return listen(handler, { host: "127.0.0.1", port: 0 }, logger, undefined, termination);
}

/** The protocol the server's ALPN picks for what the client offers. */
function negotiate(port: number, offer: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca: pki.ca, ALPNProtocols: offer }, () => {
      resolve(socket.alpnProtocol ?? false);
      socket.end();
    });
    socket.once("error", reject);
  });
}

describe("TLS on the serving port (TLS_CERT_FILE, TLS_KEY_FILE)", () => {
  let server: Listening;
  beforeAll(async () => {
    server = await serveTls();
  });
  afterAll(async () => server?.close(1_000));

  it("lets ALPN choose h2 or http/1.1", async () => {
    expect(await negotiate(server.port, ["h2", "http/1.1"])).toBe("h2");
    expect(await negotiate(server.port, ["http/1.1"])).toBe("http/1.1");
  });

  it("answers gRPC over h2 and Connect over HTTP/1.1, with a certificate the client verifies", async () => {
    const baseUrl = `https://127.0.0.1:${server.port}`;
    const grpc = createClient(Health, createGrpcTransport({ baseUrl, nodeOptions: { ca: pki.ca } }));
    expect((await grpc.check({ service: "" })).status).toBe(Status.SERVING);
    const connect = createClient(Health, createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca: pki.ca } }));
    expect((await connect.check({ service: "" })).status).toBe(Status.SERVING);
  });

  it("refuses plaintext on the TLS port", async () => {
    const plain = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` }));
    const error = await plain.check({ service: "" }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
  });
});

describe("mutual TLS (TLS_CLIENT_CA_FILE)", () => {
  let server: Listening;
  beforeAll(async () => {
    server = await serveTls(pki.files.caCert);
  });
  afterAll(async () => server?.close(1_000));

  const check = (nodeOptions: http2.SecureClientSessionOptions) =>
    createClient(Health, createGrpcTransport({ baseUrl: `https://127.0.0.1:${server.port}`, nodeOptions }))
      .check({ service: "" })
      .then((r) => r.status, (e: unknown) => ConnectError.from(e));

  it("serves a caller presenting a certificate the client CA signed", async () => {
    expect(await check({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).toBe(Status.SERVING);
  });

  it("refuses a caller without a certificate, or with one from another CA", async () => {
    const anonymous = await check({ ca: pki.ca });
    expect(anonymous).toBeInstanceOf(ConnectError);
    expect((anonymous as ConnectError).rawMessage).toMatch(/certificate required/i);
    const stranger = await check({ ca: pki.ca, cert: pki.other.cert, key: pki.other.key });
    // TLS 1.3: the server checks the client's certificate after the client's side of the handshake, then drops the connection.
    expect(stranger).toBeInstanceOf(ConnectError);
  });
});

describe("TLS configuration", () => {
  it("stays plaintext unless both files are set, and names the missing one", () => {
    expect(loadConfig({}).tls).toBeUndefined();
    expect(loadConfig({ TLS_CERT_FILE: "/c.pem", TLS_KEY_FILE: "/k.pem" }).tls).toEqual({ certFile: "/c.pem", keyFile: "/k.pem", clientCaFile: undefined });
    expect(() => loadConfig({ TLS_CERT_FILE: "/c.pem" })).toThrow(/TLS_KEY_FILE: required when TLS_CERT_FILE is set/);
    expect(() => loadConfig({ TLS_CLIENT_CA_FILE: "/ca.pem" })).toThrow(ConfigError);
  });

  it("fails the start naming the variable of an unreadable file, or a key that is no key", async () => {
    await expect(createTlsTermination({ certFile: pki.files.serverCert, keyFile: "/nonexistent/key.pem", clientCaFile: undefined }, 1_000)).rejects.toThrow(
      /^TLS_KEY_FILE: cannot read the file \(ENOENT\)$/,
    );
    await expect(createTlsTermination({ certFile: pki.files.serverCert, keyFile: pki.files.caCert, clientCaFile: undefined }, 1_000)).rejects.toThrow(
      /^TLS_CERT_FILE\/TLS_KEY_FILE: not a certificate and its private key/,
    );
  });
});
