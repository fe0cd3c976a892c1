import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { SignJWT, base64url } from "jose";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { tokenFor } from "../support/auth.js";
import type { TestDatabase } from "../support/database.js";
import { insertTenant, uniqueSlug } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, startTestServer, type TestServer, type TransportName } from "../support/server.js";
import { restFetch } from "../support/rest.js";

const run = promisify(execFile);
const BUF = join(PACKAGE_ROOT, "node_modules", ".bin", "buf");

let db: TestDatabase;
let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
// The server's clock, for API-key expiry and rotation grace; tokens are judged by real time.
let now = new Date();
// Every access token this file hands out, so the log-hygiene test can look for each one.
const issuedTokens: string[] = [];

useOidcTestServer(
  (h) => {
    ({ db, sql, issuer, server } = h);
    const issue = issuer.issue.bind(issuer);
    issuer.issue = async (...args) => {
      const token = await issue(...args);
      issuedTokens.push(token);
      return token;
    };
  },
  (oidc) => ({
    appEnv: "prod",
    auth: { mode: "oidc", issuer: oidc.issuer, trustedProxies: ["127.0.0.0/8"], jwksCooldownMs: 0 },
    clock: () => now,
  }),
);

const registry = (transport: TransportName, authorization?: string) =>
  clientFor(TenantRegistryService, server.baseUrl, transport, authorization === undefined ? undefined : { authorization });
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

/** Tokens that must all be refused, and the check each one fails. */
async function badTokens(): Promise<[string, string, string][]> {
  const valid = await tokenFor(issuer, "platform-admin");
  const [header, payload] = valid.split(".");
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload!))) as Record<string, unknown>;
  const tampered = base64url.encode(JSON.stringify({ ...claims, realm_access: { roles: ["platform-admin", "tampered"] } }));
  const unsigned = `${base64url.encode(JSON.stringify({ alg: "none", typ: "JWT" }))}.${payload}.`;
  const hs256 = await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", kid: issuer.currentKid })
    .sign(new TextEncoder().encode(JSON.stringify(issuer.publicJwk())));
  return [
    ["garbage", "Bearer not-a-token", "malformed"],
    ["expired", `Bearer ${await issuer.issue({ realm_access: { roles: ["platform-admin"] } }, { expiresInSec: -120 })}`, "expired"],
    ["not yet valid", `Bearer ${await issuer.issue({ realm_access: { roles: ["platform-admin"] } }, { notBeforeSec: 600 })}`, "not yet valid"],
    ["wrong issuer", `Bearer ${await issuer.issue({}, { issuer: "https://evil.example/realms/test" })}`, "issuer"],
    ["wrong audience", `Bearer ${await issuer.issue({}, { audience: "some-other-api" })}`, "audience"],
    ["alg none", `Bearer ${unsigned}`, "algorithm"],
    ["HS256 signed with the public key", `Bearer ${hs256}`, "algorithm"],
    ["tampered payload", `Bearer ${header}.${tampered}.${valid.split(".")[2]}`, "signature"],
    ["unknown key id", `Bearer ${await issuer.issue({}, { kid: "kid-nobody-has" })}`, "signature|signing key"],
    ["not a bearer scheme", `Basic ${Buffer.from("a:b").toString("base64")}`, "malformed Authorization header"],
  ];
}

describe.each(["grpc", "connect-json-h1"] as TransportName[])("authentication over %s", (transport) => {
  it("refuses a call without credentials", async () => {
    const error = await failure(registry(transport).listTenants({}));
    expect(error).toMatchObject({ code: Code.Unauthenticated });
    expect(error?.rawMessage).toContain("missing credentials");
  });

  it("refuses every bad token with Unauthenticated, saying which check failed and never echoing it", async () => {
    for (const [what, authorization, reason] of await badTokens()) {
      const error = await failure(registry(transport, authorization).listTenants({}));
      expect(error?.code, what).toBe(Code.Unauthenticated);
      expect(error?.rawMessage, what).toMatch(new RegExp(reason, "i"));
      const token = authorization.split(" ")[1]!;
      expect(error?.rawMessage, what).not.toContain(token);
    }
  });

  it("accepts a valid platform-admin token", async () => {
    const token = await tokenFor(issuer, "platform-admin");
    await expect(registry(transport, `Bearer ${token}`).listTenants({ pageSize: 1 })).resolves.toBeDefined();
  });
});

describe("REST", () => {
  it("answers 401 with a JSON error without a token, 200 with one", async () => {
    const tenant = await insertTenant(sql);
    const anonymous = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: "unauthenticated" });
    const token = await tokenFor(issuer, "service");
    const ok = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
  });

  it("answers 403 for a missing permission on one's own tenant", async () => {
    const tenant = await insertTenant(sql);
    const token = await tokenFor(issuer, "tenant-viewer", { tenantId: tenant.id });
    const res = await restFetch(`${server.baseUrl}/v1/tenants/${tenant.id}/projects`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ slug: "x-y-z", name: "X" }),
    });
    expect(res.status).toBe(403);
  });
});

describe("what stays open", () => {
  it("health, readiness and gRPC health need no token", async () => {
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.baseUrl}/readyz`)).status).toBe(200);
    const health = clientFor(Health, server.baseUrl, "grpc");
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("reflection needs no token, but calls through buf curl do", async () => {
    const { stdout } = await run(BUF, ["curl", "--http2-prior-knowledge", "--list-services", server.baseUrl]);
    expect(stdout).toContain("breakpilot.tenantregistry.v1.TenantRegistryService");
    const url = `${server.baseUrl}/breakpilot.tenantregistry.v1.TenantRegistryService/ListTenants`;
    const denied = await run(BUF, ["curl", "--http2-prior-knowledge", "-d", "{}", url]).then(() => undefined, (e: { stderr: string }) => e);
    expect(JSON.parse(denied!.stderr)).toMatchObject({ code: "unauthenticated" });
    const token = await tokenFor(issuer, "service");
    const ok = await run(BUF, ["curl", "--http2-prior-knowledge", "-H", `Authorization: Bearer ${token}`, "-d", '{"pageSize":1}', url]);
    expect(JSON.parse(ok.stdout)).toHaveProperty("tenants");
  });
});

describe("REFLECTION=off", () => {
  it("hides the schema: buf curl cannot list services, while health stays open", async () => {
    const hidden = await startTestServer(await db.pool(), { auth: { mode: "oidc", issuer: issuer.issuer }, reflection: false });
    try {
      const listing = await run(BUF, ["curl", "--http2-prior-knowledge", "--list-services", hidden.baseUrl]).then(
        () => undefined,
        (e: { stderr: string }) => e,
      );
      expect(listing?.stderr).toMatch(/unimplemented|not implemented|reflection/i);
      expect((await clientFor(Health, hidden.baseUrl, "grpc").check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      await hidden.close();
    }
  });
});

describe("the issuer", () => {
  it("rotating its signing key needs no restart", async () => {
    await issuer.rotateKey({ dropOld: true });
    const token = await tokenFor(issuer, "platform-admin");
    await expect(registry("grpc", `Bearer ${token}`).listTenants({ pageSize: 1 })).resolves.toBeDefined();
  });

  it("being down does not break calls whose key is cached", async () => {
    const token = await tokenFor(issuer, "platform-admin");
    await registry("grpc", `Bearer ${token}`).listTenants({ pageSize: 1 });
    await issuer.stop();
    try {
      const again = await tokenFor(issuer, "service");
      await expect(registry("grpc", `Bearer ${again}`).listTenants({ pageSize: 1 })).resolves.toBeDefined();
    } finally {
      await issuer.start();
    }
  });
});

describe("API keys as credentials", () => {
  it("acts for the key's tenant with the key's scopes, until revoked", async () => {
    const admin = registry("grpc", `Bearer ${await tokenFor(issuer, "platform-admin")}`);
    const tenant = await insertTenant(sql);
    const other = await insertTenant(sql);
    const { apiKey, secret } = await admin.createApiKey({ tenantId: tenant.id, name: "console", scopes: ["tenant-admin"] });
    const asKey = registry("connect-json-h1", `Bearer ${secret}`);

    const { project } = await asKey.createProject({ tenantId: tenant.id, slug: "from-key", name: "From key" });
    expect(project?.tenantId).toBe(tenant.id);
    await expect(asKey.getTenant({ id: other.id })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(asKey.createTenant({ slug: uniqueSlug(), name: "Nope" })).rejects.toMatchObject({ code: Code.PermissionDenied });

    const { rows } = await sql.query("SELECT actor_id, actor_type, actor_name FROM audit_log WHERE action = 'project.create' AND tenant_id = $1", [tenant.id]);
    expect(rows).toEqual([{ actor_id: apiKey!.id, actor_type: "api_key", actor_name: expect.stringContaining(apiKey!.prefix) }]);

    await admin.revokeApiKey({ id: apiKey!.id });
    const revoked = await failure(asKey.getTenant({ id: tenant.id }));
    expect(revoked).toMatchObject({ code: Code.Unauthenticated });
    expect(revoked?.rawMessage).toContain("revoked");
  });

  it("refuses an unknown or malformed key", async () => {
    const error = await failure(registry("grpc", "Bearer trk_000000000000_0000000000000000000000000000000000000000000").listTenants({}));
    expect(error).toMatchObject({ code: Code.Unauthenticated, rawMessage: "api key rejected: not found" });
  });

  it("refuses an expired key, the old secret after its rotation grace, and a key of a suspended tenant, saying why", async () => {
    const admin = registry("grpc", `Bearer ${await tokenFor(issuer, "platform-admin")}`);
    const tenant = await insertTenant(sql);
    const start = new Date();
    now = start;
    try {
      const expiring = await admin.createApiKey({
        tenantId: tenant.id,
        name: "expiring",
        scopes: ["tenant-viewer"],
        expiresAt: { seconds: BigInt(Math.floor(start.getTime() / 1000) + 3600), nanos: 0 },
      });
      const rotated = await admin.createApiKey({ tenantId: tenant.id, name: "rotated", scopes: ["tenant-viewer"] });
      const { secret: newSecret } = await admin.rotateApiKey({ id: rotated.apiKey!.id, gracePeriod: { seconds: 60n, nanos: 0 } });
      const asKey = (secret: string) => registry("connect-json-h1", `Bearer ${secret}`).getTenant({ id: tenant.id });

      await expect(asKey(expiring.secret)).resolves.toBeDefined();
      await expect(asKey(rotated.secret)).resolves.toBeDefined(); // within the grace period
      now = new Date(start.getTime() + 2 * 3600 * 1000);
      expect(await failure(asKey(expiring.secret))).toMatchObject({ code: Code.Unauthenticated, rawMessage: "api key rejected: expired" });
      expect(await failure(asKey(rotated.secret))).toMatchObject({ code: Code.Unauthenticated, rawMessage: "api key rejected: expired" });
      await expect(asKey(newSecret)).resolves.toBeDefined();

      await admin.suspendTenant({ id: tenant.id, reason: "key test" });
      expect(await failure(asKey(newSecret))).toMatchObject({ code: Code.Unauthenticated, rawMessage: "api key rejected: tenant not active" });
    } finally {
      now = new Date();
    }
  });
});

describe("tenant claim", () => {
  it("matches the tenant whatever the case of the UUID in the claim", async () => {
    const tenant = await insertTenant(sql);
    const token = await tokenFor(issuer, "tenant-viewer", { tenantId: tenant.id.toUpperCase() });
    const { tenant: found } = await registry("grpc", `Bearer ${token}`).getTenant({ id: tenant.id });
    expect(found?.id).toBe(tenant.id);
  });
});

describe("audit actor and source", () => {
  it("records the principal as actor and the first untrusted X-Forwarded-For hop as source_ip", async () => {
    const tenant = await insertTenant(sql);
    const subject = `svc-${uniqueSlug()}`;
    const token = await issuer.issue({ sub: subject, azp: "billing", preferred_username: "service-account-billing", realm_access: { roles: ["platform-admin"] } });
    const client = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      authorization: `Bearer ${token}`,
      // spoofed, client-written, proxy-appended: the proxy (127.0.0.1, trusted) saw 203.0.113.7
      "x-forwarded-for": "198.51.100.1, 203.0.113.7, 127.0.0.2",
    });
    await client.suspendTenant({ id: tenant.id, reason: "audit actor test" });
    const { rows } = await sql.query("SELECT actor_id, actor_type, actor_name, host(source_ip) AS ip, is_anonymous FROM audit_log WHERE action = 'tenant.suspend' AND tenant_id = $1", [tenant.id]);
    expect(rows).toEqual([{ actor_id: subject, actor_type: "service", actor_name: "service-account-billing", ip: "203.0.113.7", is_anonymous: false }]);
  });
});

describe("log hygiene", () => {
  it("no token or API key secret appears in any log line", async () => {
    const admin = registry("grpc", `Bearer ${await tokenFor(issuer, "platform-admin")}`);
    const tenant = await insertTenant(sql);
    const { secret } = await admin.createApiKey({ tenantId: tenant.id, name: "log-check", scopes: ["tenant-viewer"] });
    await registry("grpc", `Bearer ${secret}`).getTenant({ id: tenant.id });
    const tokens = [secret];
    for (const [, authorization] of await badTokens()) {
      tokens.push(authorization.split(" ")[1]!);
      await failure(registry("grpc", authorization).getTenant({ id: tenant.id }));
    }
    const logs = server.logText();
    expect(logs.length).toBeGreaterThan(0);
    // Every valid token this file issued, and used in successful calls, too.
    expect(issuedTokens.length).toBeGreaterThan(10);
    tokens.push(...issuedTokens);
    for (const token of tokens) {
      expect(logs).not.toContain(token);
      const signature = token.split(".")[2] ?? "";
      if (signature.length > 16) expect(logs).not.toContain(signature); // not even the signature
    }
    expect(logs).not.toContain(secret.split("_").at(-1));
  });
});
