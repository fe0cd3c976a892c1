import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { MAX_WATCHES_PER_TENANT } from "../../src/service/changes.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, type TestServer } from "../support/server.js";

/**
 * Every open watch holds a backlog of up to 1,000 changes. A tenant's principals (an admin
 * can mint API keys without end, each a principal of its own) may hold at most 64 of them on a
 * replica, together; platform principals, the sibling services' caches, are not counted.
 */
let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
useOidcTestServer((h) => {
  ({ sql, issuer, server } = h);
});

async function clientAs(role: "tenant-viewer" | "tenant-admin" | "platform-admin", tenantId?: string, subject?: string) {
  const token = await tokenFor(issuer, role, tenantId ? { tenantId, ...(subject ? { subject } : {}) } : {});
  return clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${token}` });
}

/** Opens a watch and waits for its first message (the watch is registered by then). */
async function open(client: Awaited<ReturnType<typeof clientAs>>) {
  const abort = new AbortController();
  const stream = client.watchChanges({}, { signal: abort.signal })[Symbol.asyncIterator]();
  const first = await stream.next().then(
    () => "open",
    (e: unknown) => Code[ConnectError.from(e).code],
  );
  return { first, close: () => abort.abort() };
}

describe("WatchChanges, per tenant on one replica", () => {
  it(`takes ${MAX_WATCHES_PER_TENANT} watches of one tenant's principals together, refuses the next, and takes one again once one closes`, async () => {
    const tenant = await insertTenant(sql);
    const viewer = await clientAs("tenant-viewer", tenant.id, "viewer-1");
    const admin = await clientAs("tenant-admin", tenant.id, "admin-1");
    const watches = [];
    try {
      for (let i = 0; i < MAX_WATCHES_PER_TENANT; i++) watches.push(await open(i % 2 === 0 ? viewer : admin));
      expect(watches.map((w) => w.first)).toEqual(Array(MAX_WATCHES_PER_TENANT).fill("open"));
      const refused = await open(viewer);
      expect(refused.first).toBe("ResourceExhausted");

      // Another tenant, and the platform, are not held back by this one.
      const other = await open(await clientAs("tenant-viewer", (await insertTenant(sql)).id));
      const platform = await open(await clientAs("platform-admin"));
      expect([other.first, platform.first]).toEqual(["open", "open"]);
      other.close();
      platform.close();

      watches.pop()!.close();
      // The server sees the stream end a moment later (bounded: 5 s).
      let again = "ResourceExhausted";
      for (let i = 0; i < 50 && again === "ResourceExhausted"; i++) {
        const attempt = await open(viewer);
        again = attempt.first;
        attempt.close();
        if (again === "ResourceExhausted") await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(again).toBe("open");
    } finally {
      for (const w of watches) w.close();
    }
  });
});
