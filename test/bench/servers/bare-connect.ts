/**
 * Baseline (c): a bare connect-node server answering each hot RPC with a constant
 * of the same shape as the real answer, on one port for HTTP/1.1 (Connect JSON) and
 * h2c (gRPC) like the service. Nothing of ours on the call path: no interceptors,
 * no auth, no logging, no database. /readyz answers for the bench.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { EntitlementReason } from "../../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
import { VerifyApiKeyCode } from "../../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
import { ProductCode, TenantPlan, TenantSchema, TenantStatus } from "../../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
import {
  CheckEntitlementResponseSchema,
  GetTenantBySlugResponseSchema,
  TenantRegistryService,
  VerifyApiKeyResponseSchema,
} from "../../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createLogger } from "../../../src/logger.js";
import { listen } from "../../../src/transport/server.js";

const at = timestampFromDate(new Date("2026-01-01T00:00:00Z"));
const tenant = create(TenantSchema, {
  id: "00000000-0000-0000-0000-000000000001",
  slug: "acme",
  name: "Acme Inc.",
  status: TenantStatus.ACTIVE,
  plan: TenantPlan.PROFESSIONAL,
  products: [ProductCode.CERTIFAI, ProductCode.COMPLIANCE],
  createdAt: at,
  updatedAt: at,
});
const tenantAnswer = create(GetTenantBySlugResponseSchema, { tenant });
const entitlementAnswer = create(CheckEntitlementResponseSchema, {
  entitled: true,
  reason: EntitlementReason.ENTITLED,
  tenantStatus: TenantStatus.ACTIVE,
  plan: TenantPlan.PROFESSIONAL,
  tenantId: tenant.id,
});
const keyAnswer = create(VerifyApiKeyResponseSchema, {
  valid: true,
  code: VerifyApiKeyCode.VALID,
  keyId: "00000000-0000-0000-0000-0000000000aa",
  tenant,
});

const adapter = connectNodeAdapter({
  routes: (router) =>
    router
      .rpc(TenantRegistryService.method.getTenantBySlug, async () => tenantAnswer)
      .rpc(TenantRegistryService.method.checkEntitlement, async () => entitlementAnswer)
      .rpc(TenantRegistryService.method.verifyApiKey, async () => keyAnswer),
});
const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
  if (req.url === "/readyz") {
    (res as http.ServerResponse).writeHead(200).end("ok");
    return;
  }
  adapter(req as http.IncomingMessage, res as http.ServerResponse);
};

// One port, both protocols, with the service's own connection sniffing (it runs once per
// connection, not per call, so the calls measured here are connect-node's alone).
await listen(handler, { host: "127.0.0.1", port: Number(process.env["PORT"]) }, createLogger("warn"));
process.on("SIGTERM", () => process.exit(0));
