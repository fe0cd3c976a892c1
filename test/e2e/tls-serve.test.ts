import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { createTestPki, type TestPki } from "../support/certificates.js";
import { startCliServer } from "../support/cli-server.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { insertTenant } from "../support/fixtures.js";

const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");

let pki: TestPki;
let db: TestDatabase;
beforeAll(async () => {
  pki = await createTestPki();
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
  await pki?.remove();
});

describe("tenant-registry serve with TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE", () => {
  it("serves the API over mutual TLS on its one port", async () => {
    const tenant = await insertTenant(await db.client());
    const server = await startCliServer([process.execPath, MAIN, "serve"], {
      APP_ENV: "dev",
      DATABASE_URL: db.url,
      ADDR: "127.0.0.1:0",
      TLS_CERT_FILE: pki.files.serverCert,
      TLS_KEY_FILE: pki.files.serverKey,
      TLS_CLIENT_CA_FILE: pki.files.caCert,
    });
    try {
      expect(server.logs().find((l) => String(l["msg"]).startsWith("serving on"))).toMatchObject({ tls: "mutual" });
      const nodeOptions = { ca: pki.ca, cert: pki.client.cert, key: pki.client.key };
      const registry = createClient(TenantRegistryService, createGrpcTransport({ baseUrl: `https://127.0.0.1:${server.port}`, nodeOptions }));
      expect((await registry.getTenantBySlug({ slug: tenant.slug })).tenant?.id).toBe(tenant.id);
      // Plaintext on the same port is not answered.
      await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
      expect(await server.stop()).toBe(0);
    } finally {
      await server.stop();
    }
  });

  it("refuses to start on an unreadable key file, naming the variable", async () => {
    await expect(
      startCliServer([process.execPath, MAIN, "serve"], {
        APP_ENV: "dev",
        DATABASE_URL: db.url,
        ADDR: "127.0.0.1:0",
        TLS_CERT_FILE: pki.files.serverCert,
        TLS_KEY_FILE: join(pki.dir, "missing.pem"),
      }),
    ).rejects.toThrow(/tenant-registry: TLS_KEY_FILE: cannot read the file \(ENOENT\)/);
  });
});
