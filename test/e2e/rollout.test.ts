import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { startCliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";
import { clientFor } from "../support/server.js";

// A rolling update: the new release's init container migrates while the old
// release's pods still serve (and may restart). Forward-only migrations keep
// the old code working, so the old pods must stay ready on the newer schema.
const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const execFileP = promisify(execFile);

let db: TestDatabase;
let sql: pg.Client;
beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.client();
  // What the next release's migration does: an additive change, recorded as the next id.
  const { rows } = await sql.query<{ id: number }>("SELECT max(id)::int AS id FROM migrations");
  await sql.query("ALTER TABLE tenants ADD COLUMN next_release_note text");
  await sql.query("INSERT INTO migrations (id, name, hash) VALUES ($1, 'next_release_note', 'a-newer-release')", [rows[0]!.id + 1]);
});
afterAll(async () => db?.drop());

const env = () => ({ APP_ENV: "dev", DATABASE_URL: db.url, ADDR: "127.0.0.1:0", MIGRATE_ON_START: "false" });

describe("a release keeps serving after the next release has migrated", () => {
  it("starts, is ready and answers on a schema one migration ahead of it", async () => {
    const tenant = await insertTenant(sql);
    const server = await startCliServer([process.execPath, MAIN, "serve"], env());
    try {
      const ready = await fetch(`${server.baseUrl}/readyz`);
      expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: "ok" } });
      const found = await clientFor(TenantRegistryService, server.baseUrl, "grpc").getTenantBySlug({ slug: tenant.slug });
      expect(found.tenant?.id).toBe(tenant.id);
    } finally {
      await server.stop();
    }
  });

  it("its init container's migrate up is a no-op there, and migrate version names the newer migration", async () => {
    const run = (args: string[]) => execFileP(process.execPath, [MAIN, "migrate", ...args], { env: { PATH: process.env["PATH"] ?? "", ...env() } });
    expect((await run(["up"])).stdout).toMatch(/schema is current at version \d+/);
    expect((await run(["version"])).stdout).toMatch(/applied by a newer release: \d+_next_release_note/);
  });
});
