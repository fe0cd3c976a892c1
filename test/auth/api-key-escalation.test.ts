import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { tokenFor } from "../support/auth.js";
import { auditEvents, insertTenant } from "../support/fixtures.js";
import { useOidcTestServer } from "../support/harness.js";
import type { OidcIssuer } from "../support/oidc-issuer.js";
import { clientFor, type TestServer, type TransportName } from "../support/server.js";

/**
 * An API key that may manage keys (api_keys:write) must not mint, rotate or
 * revoke keys that outrank it: it acts only on keys whose scopes it holds
 * itself (compared literally), and may always revoke itself. Users are not
 * bound by this.
 */

type Registry = Client<typeof TenantRegistryService>;

let sql: pg.Client;
let issuer: OidcIssuer;
let server: TestServer;
let admin: Registry;

useOidcTestServer(async (h) => {
  ({ sql, issuer, server } = h);
  admin = clientFor(TenantRegistryService, server.baseUrl, "grpc", { authorization: `Bearer ${await tokenFor(issuer, "platform-admin")}` });

  // A write probe: a sequence is not rolled back, so it counts every write a
  // denied call ATTEMPTED, even one its transaction later undid. Only the
  // writes of create/rotate/revoke count (not the usage tracker's last_used_at).
  await sql.query(`
    CREATE SEQUENCE write_attempts;
    CREATE FUNCTION note_write_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM nextval('write_attempts'); RETURN NEW; END $$;
    CREATE TRIGGER probe_api_keys_insert BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION note_write_attempt();
    CREATE TRIGGER probe_api_keys_update BEFORE UPDATE OF prefix, secret_hash, previous_prefix, revoked_at, scopes ON api_keys
      FOR EACH ROW EXECUTE FUNCTION note_write_attempt();
    CREATE TRIGGER probe_idempotency BEFORE INSERT ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION note_write_attempt();
    CREATE TRIGGER probe_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION note_write_attempt();
  `);
});

const writeAttempts = async () =>
  Number((await sql.query<{ n: string }>("SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM write_attempts")).rows[0]!.n);
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

async function keyRow(id: string) {
  const { rows } = await sql.query<{ prefix: string; secret_hash: Buffer; revoked_at: Date | null; updated_at: Date }>(
    "SELECT prefix, secret_hash, revoked_at, updated_at FROM api_keys WHERE id = $1",
    [id],
  );
  return rows[0]!;
}
const keyCount = async (tenantId: string) => Number((await sql.query("SELECT count(*) AS n FROM api_keys WHERE tenant_id = $1", [tenantId])).rows[0].n);

const deniedEvents = async () => Number((await sql.query("SELECT count(*) AS n FROM audit_log WHERE is_failure")).rows[0].n);

/**
 * Asserts the call is PermissionDenied naming `lacking`, and that the one write it
 * made is its own audit event (a denied call, as the interceptor's denials are).
 */
async function expectDeniedWithoutWrites(call: () => Promise<unknown>, lacking: string[], notLacking: string[] = []) {
  const [before, deniedBefore] = [await writeAttempts(), await deniedEvents()];
  const error = await failure(call());
  expect(error?.code, error?.message).toBe(Code.PermissionDenied);
  for (const scope of lacking) expect(error?.rawMessage).toContain(`"${scope}"`);
  for (const scope of notLacking) expect(error?.rawMessage).not.toContain(`"${scope}"`);
  expect(await writeAttempts(), "writes attempted by a denied call").toBe(before + 1);
  expect(await deniedEvents(), "the denied call's audit event").toBe(deniedBefore + 1);
}

describe.each<TransportName>(["grpc", "connect-json-h1"])("an api key managing keys, over %s", (transport) => {
  let tenantId: string;
  /** A key created by the admin, and a client calling as it. */
  const keyAs = async (scopes: string[]) => {
    const { apiKey, secret } = await admin.createApiKey({ tenantId, name: `as ${scopes.join(" ")}`, scopes });
    const client = clientFor(TenantRegistryService, server.baseUrl, transport, { authorization: `Bearer ${secret}` });
    return { key: apiKey!, secret, client };
  };

  beforeAll(async () => {
    tenantId = (await insertTenant(sql)).id;
  });

  it("the write probe sees the writes of a permitted call", async () => {
    const writer = await keyAs(["api_keys:write"]);
    const before = await writeAttempts();
    await writer.client.createApiKey({ tenantId, name: "probe", scopes: ["api_keys:write"] });
    expect(await writeAttempts()).toBeGreaterThan(before);
  });

  it("cannot create a key with a scope it lacks: nothing is written, not even the idempotency claim", async () => {
    const writer = await keyAs(["api_keys:write"]);
    const count = await keyCount(tenantId);
    await expectDeniedWithoutWrites(() => writer.client.createApiKey({ tenantId, name: "up", scopes: ["tenant-admin"] }), ["tenant-admin"]);
    await expectDeniedWithoutWrites(() => writer.client.createApiKey({ tenantId, name: "up", scopes: ["certifai:superuser"] }), ["certifai:superuser"]);
    await expectDeniedWithoutWrites(
      () => writer.client.createApiKey({ tenantId, name: "up", scopes: ["api_keys:write", "tenant-admin", "tenant-admin"], idempotencyKey: `idem-${transport}` }),
      ["tenant-admin"],
      ["api_keys:write"],
    );
    expect(await keyCount(tenantId)).toBe(count);
    expect((await sql.query("SELECT 1 FROM idempotency_keys WHERE key = $1", [`idem-${transport}`])).rowCount).toBe(0);
    // Each attempt is a failure event with the key as its actor.
    const attempts = (await auditEvents(sql, { tenantId })).filter((e) => e.actor_id === writer.key.id);
    expect(attempts.map((e) => [e.action, e.is_failure, e.fields.code])).toEqual(Array(3).fill(["api_key.create", true, "PermissionDenied"]));
    expect(attempts[0]!.fields).toMatchObject({ rpc: "CreateApiKey", code: "PermissionDenied" });
  });

  it("may create keys with a subset of its scopes (after dedupe), and none at all", async () => {
    const writer = await keyAs(["api_keys:write", "api_keys:read"]);
    const same = await writer.client.createApiKey({ tenantId, name: "same", scopes: ["api_keys:write", "api_keys:write"] });
    expect(same.apiKey?.scopes).toEqual(["api_keys:write"]);
    expect(same.secret).not.toBe("");
    const none = await writer.client.createApiKey({ tenantId, name: "none" });
    expect(none.apiKey?.scopes).toEqual([]);
  });

  it("cannot rotate or revoke a stronger key: the target is left as it was", async () => {
    const writer = await keyAs(["api_keys:write"]);
    const strong = await keyAs(["tenant-admin"]);
    const before = await keyRow(strong.key.id);

    await expectDeniedWithoutWrites(() => writer.client.rotateApiKey({ id: strong.key.id }), ["tenant-admin"]);
    await expectDeniedWithoutWrites(() => writer.client.revokeApiKey({ id: strong.key.id }), ["tenant-admin"]);

    expect(await keyRow(strong.key.id)).toEqual(before);
    // The stronger key still works with its old secret.
    await expect(strong.client.getTenant({ id: tenantId })).resolves.toBeDefined();
    const events = await auditEvents(sql, { targetId: strong.key.id });
    expect(events.filter((e) => !e.is_failure).map((e) => e.action)).toEqual(["api_key.create"]);
    expect(events.filter((e) => e.is_failure).map((e) => e.action).sort()).toEqual(["api_key.revoke", "api_key.rotate"]);
  });

  it("cannot rotate or revoke an already revoked stronger key either", async () => {
    const writer = await keyAs(["api_keys:write"]);
    const strong = await keyAs(["tenant-admin"]);
    await admin.revokeApiKey({ id: strong.key.id });
    await expectDeniedWithoutWrites(() => writer.client.revokeApiKey({ id: strong.key.id }), ["tenant-admin"]);
    await expectDeniedWithoutWrites(() => writer.client.rotateApiKey({ id: strong.key.id }), ["tenant-admin"]);
  });

  it("may rotate and revoke keys whose scopes it holds", async () => {
    const writer = await keyAs(["api_keys:write", "api_keys:read"]);
    const weaker = await keyAs(["api_keys:read"]);
    const rotated = await writer.client.rotateApiKey({ id: weaker.key.id });
    expect(rotated.apiKey?.prefix).not.toBe(weaker.key.prefix);
    expect(rotated.secret).not.toBe("");
    const revoked = await writer.client.revokeApiKey({ id: weaker.key.id });
    expect(revoked.apiKey?.revokedAt).toBeDefined();
  });

  it("may always revoke itself", async () => {
    const writer = await keyAs(["api_keys:write"]);
    const { apiKey } = await writer.client.revokeApiKey({ id: writer.key.id });
    expect(apiKey?.revokedAt).toBeDefined();
    await expect(writer.client.getTenant({ id: tenantId })).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("a tenant-admin key cannot mint a scope it lacks (scopes are compared literally)", async () => {
    const tenantAdmin = await keyAs(["tenant-admin"]);
    await expectDeniedWithoutWrites(() => tenantAdmin.client.createApiKey({ tenantId, name: "su", scopes: ["certifai:superuser"] }), ["certifai:superuser"]);
    await expectDeniedWithoutWrites(
      () => tenantAdmin.client.createApiKey({ tenantId, name: "su", scopes: ["tenant-admin", "certifai:superuser"] }),
      ["certifai:superuser"],
      ["tenant-admin"],
    );
    // Holding "tenant-admin" is not holding "api_keys:write" as a scope: a sibling may trust that literal string.
    await expectDeniedWithoutWrites(() => tenantAdmin.client.createApiKey({ tenantId, name: "w", scopes: ["api_keys:write"] }), ["api_keys:write"]);
    const same = await tenantAdmin.client.createApiKey({ tenantId, name: "twin", scopes: ["tenant-admin"] });
    expect(same.apiKey?.scopes).toEqual(["tenant-admin"]);
  });
});

describe("users are not bound by key scopes", () => {
  it("a tenant admin (token) creates, rotates and revokes keys with any scopes", async () => {
    const tenantId = (await insertTenant(sql)).id;
    const user = clientFor(TenantRegistryService, server.baseUrl, "grpc", {
      authorization: `Bearer ${await tokenFor(issuer, "tenant-admin", { tenantId })}`,
    });
    const { apiKey } = await user.createApiKey({ tenantId, name: "su", scopes: ["tenant-admin", "certifai:superuser"] });
    expect(apiKey?.scopes).toEqual(["tenant-admin", "certifai:superuser"]);
    const rotated = await user.rotateApiKey({ id: apiKey!.id });
    expect(rotated.secret).not.toBe("");
    const revoked = await user.revokeApiKey({ id: apiKey!.id });
    expect(revoked.apiKey?.revokedAt).toBeDefined();
  });
});
