import { Code, ConnectError } from "@connectrpc/connect";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { insertTenant } from "../support/fixtures.js";
import { useTestServer } from "../support/harness.js";
import { clientFor, type TestServer } from "../support/server.js";

/**
 * An error names at most 50 violations and counts the rest, for every request: one per bad
 * entry of a long list made the answer larger than the request (each twice, in the message and
 * in BadRequest), more than a gRPC trailer carries.
 */
let server: TestServer;
let sql: pg.Client;
useTestServer((h) => ({ server, sql } = h));

describe.each(["grpc", "connect-json-h1"] as const)("a request with 20,000 problems over %s", (transport) => {
  it("is refused naming the first 50, and every other field once, and counting the rest", async () => {
    const tenant = await insertTenant(sql);
    const scopes = Array.from({ length: 20_000 }, (_, i) => `-bad-${i}`);
    const error = await clientFor(TenantRegistryService, server.baseUrl, transport)
      .createApiKey({ tenantId: tenant.id, name: "many scopes", scopes, idempotencyKey: "k".repeat(201) })
      .then(() => expect.fail("expected InvalidArgument"), (e: unknown) => ConnectError.from(e));
    expect(error.code).toBe(Code.InvalidArgument);
    const violations = error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations);
    expect(violations).toHaveLength(52);
    expect(violations[0]).toMatchObject({ field: "scopes", description: "may have at most 50 entries" });
    expect(violations[1]!.description).toMatch(/^"-bad-0" is not a scope/);
    // A field not named yet is named past the cap too: a form shows every field's problem.
    expect(violations[50]).toMatchObject({ field: "idempotency_key", description: "must be at most 200 characters" });
    expect(violations[51]).toMatchObject({ field: "scopes", description: "19951 more violations not listed" });
    expect(error.rawMessage.length).toBeLessThan(10_000);
  });
});
