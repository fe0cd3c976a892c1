import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditEventSchema } from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createTenantRegistryClient, type TenantRegistryClientOptions } from "../../src/client/index.js";

/**
 * A server stream's messages belong to the caller once read: a client that keeps each
 * one until the stream ends holds a whole export (a million events) in memory, and a
 * watch, which runs for good, grows by every change it has seen. @connectrpc/connect
 * 2.3.0 did that: each read raced the transport against one promise that lives as long
 * as the call, and the promise kept every read it lost to (patches/ has the fix).
 */
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const MESSAGES = 100;
const routes = (router: ConnectRouter) =>
  router.service(TenantRegistryService, {
    // MESSAGES messages, then nothing until the caller goes away, as a watch between changes.
    async *exportAuditEvents(_req, ctx) {
      for (let i = 0; i < MESSAGES; i++) yield { events: [create(AuditEventSchema, { id: `event-${i}`, description: "x".repeat(1_000) })] };
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    },
  });

const servers: { close(): void }[] = [];
let h2Url: string;
let h1Url: string;
beforeAll(async () => {
  const h2 = http2.createServer(connectNodeAdapter({ routes }));
  const h1 = http.createServer(connectNodeAdapter({ routes }));
  for (const server of [h2, h1]) await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  h2Url = `http://127.0.0.1:${(h2.address() as AddressInfo).port}`;
  h1Url = `http://127.0.0.1:${(h1.address() as AddressInfo).port}`;
  servers.push(
    { close: () => h2.close() },
    {
      close: () => {
        h1.closeAllConnections();
        h1.close();
      },
    },
  );
});
afterAll(() => {
  for (const server of servers) server.close();
});

/** After a full collection, between jobs (a WeakRef's target lives at least until the job that made it ends). */
async function collected(refs: WeakRef<object>[]): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  return refs.filter((ref) => ref.deref() === undefined).length;
}

describe.each([
  { protocol: "grpc" as const, http: "2" },
  { protocol: "connect" as const, http: "2" },
  { protocol: "connect" as const, http: "1.1" },
])("a server stream read through createTenantRegistryClient ($protocol, HTTP/$http)", ({ protocol, http: version }) => {
  it("lets go of each message once the caller has, while the stream is still open", async () => {
    const options: TenantRegistryClientOptions =
      protocol === "grpc" ? { baseUrl: h2Url } : { baseUrl: version === "2" ? h2Url : h1Url, protocol, httpVersion: version as "2" | "1.1" };
    const client = createTenantRegistryClient(options);
    const abort = new AbortController();
    const stream = client.exportAuditEvents({}, { signal: abort.signal })[Symbol.asyncIterator]();
    const read: WeakRef<object>[] = [];
    try {
      for (let i = 0; i < MESSAGES; i++) {
        const next = await stream.next();
        expect(next.done).toBe(false);
        read.push(new WeakRef(next.value as object));
      }
      // All but the last few (the read in flight and its neighbours may still be referenced).
      expect(await collected(read)).toBeGreaterThanOrEqual(MESSAGES - 3);
    } finally {
      abort.abort();
      await stream.next().catch(() => undefined);
      client.close();
    }
  });
});
