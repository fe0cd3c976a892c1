import { describe, expect, it } from "vitest";
import { GetTenantResponseSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { TenantSchema } from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import { enumsFromShort, enumsToShort } from "../../src/transport/rest-json.js";

describe("REST enum style", () => {
  const proto = {
    tenant: {
      status: "TENANT_STATUS_SUSPENDED",
      plan: "TENANT_PLAN_ENTERPRISE",
      products: ["PRODUCT_CODE_CERTIFAI", "PRODUCT_CODE_COMPLIANCE"],
      createdAt: "2026-01-01T00:00:00Z",
      name: "TENANT_STATUS_ACTIVE",
    },
  };
  const short = {
    tenant: {
      status: "suspended",
      plan: "enterprise",
      products: ["certifai", "compliance"],
      createdAt: "2026-01-01T00:00:00Z",
      name: "TENANT_STATUS_ACTIVE",
    },
  };

  it("writes enums, nested and repeated, as short lowercase labels and leaves other strings alone", () => {
    expect(enumsToShort(GetTenantResponseSchema, proto)).toEqual(short);
  });

  it("reads short labels, any case, and full names back", () => {
    expect(enumsFromShort(GetTenantResponseSchema, short)).toEqual(proto);
    expect(enumsFromShort(TenantSchema, { status: "Active", plan: "TENANT_PLAN_FREE" })).toEqual({
      status: "TENANT_STATUS_ACTIVE",
      plan: "TENANT_PLAN_FREE",
    });
  });

  it("passes unknown labels through so protobuf's own parser reports them", () => {
    expect(enumsFromShort(TenantSchema, { status: "sleeping" })).toEqual({ status: "sleeping" });
  });
});
