import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { startCliServer, type CliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant, type TenantRow } from "../support/fixtures.js";
import { clientFor } from "../support/server.js";

// The real process writes its stdout in blocks (src/logger.ts): these hold it to
// losing nothing and keeping no line back for long.

let db: TestDatabase;
let tenant: TenantRow;
beforeAll(async () => {
  db = await createTestDatabase();
  tenant = await insertTenant(await db.client());
});
afterAll(async () => db?.drop());

function serve(): Promise<CliServer> {
  return startCliServer([process.execPath, join(PACKAGE_ROOT, "dist", "bin", "main.js"), "serve"], {
    APP_ENV: "dev",
    AUTH_MODE: "none",
    DATABASE_URL: db.url,
    ADDR: "127.0.0.1:0",
  });
}

const accessLines = (server: CliServer) => server.logs().filter((line) => line["msg"] === "rpc");

describe("the service's log lines on stdout", () => {
  it("a line logged on an idle server is on stdout within a moment, not held until a block fills", async () => {
    const server = await serve();
    try {
      await clientFor(TenantRegistryService, server.baseUrl, "grpc").getTenant({ id: tenant.id });
      await vi.waitFor(() => expect(accessLines(server)).toHaveLength(1), { timeout: 1_000, interval: 10 });
    } finally {
      await server.stop();
    }
  });

  it("every line of a burst is on stdout once the process has exited, however soon the SIGTERM came", async () => {
    const server = await serve();
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc");
    await Promise.all(Array.from({ length: 300 }, () => client.getTenantBySlug({ slug: tenant.slug })));
    expect(await server.stop()).toBe(0);
    expect(accessLines(server)).toHaveLength(300);
    expect(server.logs().at(-1)?.["msg"]).toBe("stopped");
  });
});
