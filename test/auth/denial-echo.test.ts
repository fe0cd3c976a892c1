import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { tokenFor } from "../support/auth.js";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, type TestServer } from "../support/server.js";

/**
 * What the service keeps of an id or slug a caller sends before any handler has checked it:
 * a denied call's answer and audit event, and the auth interceptor's tenant lookups in the
 * read cache. A real id is a UUID and a real slug at most 63 characters; a caller without the
 * permission could send 4 MiB of junk there, and every such call was an 8 MiB audit event (the
 * junk as target and again in the description) or a 4 MiB cache entry.
 */
let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
useOidcTestServer((h) => {
  ({ sql, issuer, server } = h);
});

const JUNK = "x".repeat(1_000_000);

async function viewerOf(tenantId: string, subject: string) {
  return clientFor(TenantRegistryService, server.baseUrl, "grpc", {
    authorization: `Bearer ${await tokenFor(issuer, "tenant-viewer", { tenantId, subject })}`,
  });
}

describe("an id or slug the caller sent, before a handler checks it", () => {
  it("is kept to 200 characters in a denied call's answer and audit event", async () => {
    const tenant = await insertTenant(sql);
    const subject = `viewer-${uniqueSlug()}`;
    const viewer = await viewerOf(tenant.id, subject);
    const error = await viewer.deleteTenant({ id: JUNK }).then(
      () => expect.fail("expected the call to be refused"),
      (e: unknown) => ConnectError.from(e),
    );
    expect(error.code).toBe(Code.NotFound);
    expect(error.rawMessage).toBe(`tenant ${"x".repeat(200)}… (1000000 characters) not found`);
    const { rows } = await sql.query<{ target: number; description: number }>(
      "SELECT length(target_id) AS target, length(description) AS description FROM audit_log WHERE actor_id = $1 AND is_failure",
      [subject],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.target).toBeLessThan(300);
    expect(rows[0]!.description).toBeLessThan(300);
  });

  it("is looked up in the cache only when it can be a slug: an unknown slug is remembered as missing, junk is not", async () => {
    const tenant = await insertTenant(sql);
    const viewer = await viewerOf(tenant.id, `viewer-${uniqueSlug()}`);
    const entries = () => server.app.cacheStats.entries;
    const codeOf = (slug: string) =>
      viewer.getTenantBySlug({ slug }).then(
        () => "OK",
        (e: unknown) => Code[ConnectError.from(e).code],
      );

    const before = entries();
    expect(await codeOf(`no-such-${uniqueSlug()}`)).toBe("NotFound");
    expect(entries()).toBe(before + 1); // the negative entry: the cache is on and keyed by slug

    expect(await codeOf(JUNK)).toBe("InvalidArgument");
    expect(await codeOf(`${JUNK}y`)).toBe("InvalidArgument");
    expect(entries()).toBe(before + 1);
  });
});
