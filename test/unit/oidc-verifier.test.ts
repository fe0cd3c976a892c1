import { base64url, decodeJwt, exportSPKI, importJWK, SignJWT } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createOidcVerifier, TokenError, type OidcVerifierOptions } from "../../src/auth/oidc.js";
import { startOidcIssuer, TEST_CLIENT_ID, type OidcIssuer } from "../support/oidc-issuer.js";

// A real issuer on a loopback port and the real verifier: real HTTP, real signatures.
let issuer: OidcIssuer;

beforeEach(async () => {
  issuer = await startOidcIssuer();
});

afterEach(async () => {
  await issuer.stop().catch(() => undefined); // some tests stop it themselves
});

function verifier(options: Partial<OidcVerifierOptions> = {}) {
  return createOidcVerifier({ issuer: issuer.issuer, ...options });
}

async function rejection(promise: Promise<unknown>): Promise<TokenError> {
  const outcome = await promise.then(
    () => new Error("expected the token to be rejected, but it verified"),
    (error: unknown) => error,
  );
  if (!(outcome instanceof TokenError)) throw outcome;
  return outcome;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function segments(token: string): [string, string, string] {
  const [header = "", payload = "", signature = ""] = token.split(".");
  return [header, payload, signature];
}

function encodeJson(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

describe("OIDC bearer-token verifier", () => {
  it("maps a valid token's claims", async () => {
    const token = await issuer.issue(
      {
        name: "Billing Sync",
        tenant_id: "00000000-0000-0000-0000-000000000001",
        realm_access: { roles: ["offline_access", "registry-reader"] },
        resource_access: {
          "tenant-registry": { roles: ["registry-reader", "tenant-admin"] },
          account: { roles: ["manage-account"] }, // another client's roles do not count
        },
      },
      { expiresInSec: 600 },
    );
    const verified = await verifier().verify(token);
    expect(verified).toEqual({
      subject: "5c1f3a7e-0d7b-4a53-9d1e-2f0c6b8a9e41",
      clientId: TEST_CLIENT_ID,
      name: "Billing Sync",
      username: `service-account-${TEST_CLIENT_ID}`,
      roles: ["offline_access", "registry-reader", "tenant-admin"],
      tenantId: "00000000-0000-0000-0000-000000000001",
      expiresAt: expect.any(Date),
    });
    expect(Math.abs(verified.expiresAt.getTime() - (Date.now() + 600_000))).toBeLessThan(5_000);
  });

  it("falls back to preferred_username, reads a configured tenant claim, ignores odd claim types", async () => {
    const token = await issuer.issue({
      org: "acme",
      tenant_id: ["not", "a", "string"],
      realm_access: { roles: ["reader", 42, null] },
      resource_access: "not an object",
    });
    const verified = await verifier({ tenantClaim: "org" }).verify(token);
    expect(verified).toMatchObject({ name: `service-account-${TEST_CLIENT_ID}`, tenantId: "acme", roles: ["reader"] });
    expect((await verifier().verify(token)).tenantId).toBeUndefined();
  });

  it("accepts an audience array that contains the configured audience", async () => {
    const token = await issuer.issue({}, { audience: ["account", "tenant-registry"] });
    await expect(verifier().verify(token)).resolves.toMatchObject({ clientId: TEST_CLIENT_ID });
  });

  it("keeps the defaults for options passed as undefined", async () => {
    const token = await issuer.issue({ realm_access: { roles: ["reader"] } });
    const options = { audience: undefined, clockToleranceSec: undefined, tenantClaim: undefined };
    await expect(verifier(options).verify(token)).resolves.toMatchObject({ roles: ["reader"] });
  });

  it("rejects an empty token as missing", async () => {
    expect((await rejection(verifier().verify(""))).reason).toBe("token is missing");
  });

  it.each([
    ["no dots", "garbage"],
    ["two segments", "abc.def"],
    ["four segments", "a.b.c.d"],
    ["non-base64url characters", "ab+c.d/ef.g=h"],
    ["a Bearer prefix", "Bearer abc.def.ghi"],
    ["base64url that is not JSON", "bm90IGpzb24.bm90IGpzb24.c2ln"],
    ["an oversized token", `${"a".repeat(20_000)}.b.c`],
  ])("rejects %s as malformed without asking the issuer", async (_, token) => {
    expect((await rejection(verifier().verify(token))).reason).toBe("token is malformed");
    expect(issuer.discoveryRequests + issuer.jwksRequests).toBe(0);
  });

  it("rejects an expired token", async () => {
    const token = await issuer.issue({}, { expiresInSec: -120 });
    expect((await rejection(verifier().verify(token))).reason).toBe("token expired");
  });

  it("rejects a token that is not yet valid", async () => {
    const token = await issuer.issue({}, { notBeforeSec: 120 });
    expect((await rejection(verifier().verify(token))).reason).toBe("token not yet valid");
  });

  it("allows the clock tolerance on exp and nbf", async () => {
    const justExpired = await issuer.issue({}, { expiresInSec: -10 });
    const almostValid = await issuer.issue({}, { notBeforeSec: 10 });
    await expect(verifier().verify(justExpired)).resolves.toBeDefined();
    await expect(verifier().verify(almostValid)).resolves.toBeDefined();
    expect((await rejection(verifier({ clockToleranceSec: 0 }).verify(justExpired))).reason).toBe("token expired");
  });

  it("rejects a token without exp instead of accepting it forever", async () => {
    const token = await issuer.issue({}, { expiresInSec: null });
    const error = await rejection(verifier().verify(token));
    expect(error.reason).toBe("required claim missing");
    expect(error.message).toBe("required claim missing: exp");
  });

  it("rejects a token from another issuer, even when signed with a trusted key", async () => {
    const token = await issuer.issue({}, { issuer: "https://evil.example/realms/test" });
    expect((await rejection(verifier().verify(token))).reason).toBe("issuer mismatch");
  });

  it("rejects a token for another audience", async () => {
    const token = await issuer.issue({}, { audience: "account" });
    expect((await rejection(verifier().verify(token))).reason).toBe("audience mismatch");
  });

  it("rejects an ID token (typ ID) even with the right audience, and accepts typ Bearer", async () => {
    const idToken = await issuer.issue({ typ: "ID" });
    expect((await rejection(verifier().verify(idToken))).reason).toBe("not an access token");
    await expect(verifier().verify(await issuer.issue({ typ: "Bearer" }))).resolves.toMatchObject({ subject: expect.any(String) });
  });

  it("rejects alg none without asking the issuer", async () => {
    const valid = await issuer.issue({ realm_access: { roles: ["tenant-admin"] } });
    const unsigned = `${encodeJson({ alg: "none", typ: "JWT" })}.${segments(valid)[1]}.`;
    expect((await rejection(verifier().verify(unsigned))).reason).toBe("algorithm not allowed");
    expect(issuer.discoveryRequests + issuer.jwksRequests).toBe(0);
  });

  it("rejects HS256 signed with the issuer's public key (key confusion)", async () => {
    const publicKey = await importJWK(issuer.publicJwk(), "RS256");
    if (publicKey instanceof Uint8Array) throw new Error("expected an RSA public key");
    const publicPem = await exportSPKI(publicKey);
    const forged = await new SignJWT({ sub: "attacker", realm_access: { roles: ["tenant-admin"] } })
      .setProtectedHeader({ alg: "HS256", kid: issuer.currentKid, typ: "JWT" })
      .setIssuer(issuer.issuer)
      .setAudience("tenant-registry")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(publicPem));
    expect((await rejection(verifier().verify(forged))).reason).toBe("algorithm not allowed");
  });

  it("rejects a tampered payload", async () => {
    const valid = await issuer.issue({ realm_access: { roles: ["registry-reader"] } });
    const [header, , signature] = segments(valid);
    const escalated = { ...decodeJwt(valid), realm_access: { roles: ["tenant-admin"] } };
    const tampered = `${header}.${encodeJson(escalated)}.${signature}`;
    expect((await rejection(verifier().verify(tampered))).reason).toBe("signature verification failed");
  });

  it("rejects an unknown key id, refetching the JWKS at most once per cooldown", async () => {
    const { verify } = verifier();
    await verify(await issuer.issue()); // warms the JWKS cache
    expect(issuer.jwksRequests).toBe(1);
    const unknownKid = await issuer.issue({}, { kid: "not-published" });
    expect((await rejection(verify(unknownKid))).reason).toBe("unknown signing key");
    expect((await rejection(verify(unknownKid))).reason).toBe("unknown signing key");
    expect(issuer.jwksRequests).toBe(1); // still within the 30 s cooldown
  });

  it("follows a key rotation at the issuer without a new verifier", async () => {
    const { verify } = verifier({ jwksCooldownMs: 50 });
    const oldToken = await issuer.issue();
    await verify(oldToken);
    expect(issuer.jwksRequests).toBe(1);

    await issuer.rotateKey();
    await sleep(100); // past the cooldown
    const newToken = await issuer.issue();
    await expect(verify(newToken)).resolves.toBeDefined();
    expect(issuer.jwksRequests).toBe(2);
    await expect(verify(oldToken)).resolves.toBeDefined(); // old key still published and cached
    expect(issuer.jwksRequests).toBe(2);
  });

  it("keeps verifying with cached keys while the issuer is down", async () => {
    // A tiny cache age makes jose refetch on every call: the fallback to the last keys is what carries.
    const { verify } = verifier({ jwksCacheMaxAgeMs: 1 });
    await verify(await issuer.issue());
    const token = await issuer.issue({ realm_access: { roles: ["registry-reader"] } });
    await issuer.stop();
    await sleep(5);
    await expect(verify(token)).resolves.toMatchObject({ roles: ["registry-reader"] });
    await expect(verify(token)).resolves.toMatchObject({ roles: ["registry-reader"] });
    expect((await rejection(verify(await issuer.issue({}, { kid: "not-published" })))).reason).toBe(
      "unknown signing key",
    );
  });

  it("reports an unreachable issuer, then recovers once it is back", async () => {
    const { verify } = verifier();
    const token = await issuer.issue();
    await issuer.stop();
    const error = await rejection(verify(token));
    expect(error).toMatchObject({ reason: "issuer unreachable", issuerFault: true });

    await issuer.start(); // discovery is retried, not cached as a failure
    await expect(verify(token)).resolves.toBeDefined();
    expect(issuer.discoveryRequests).toBe(1);
  });

  it("refuses a discovery document that names a different issuer", async () => {
    // OIDC discovery strips the trailing slash, so this issuer's document names it without one.
    const error = await rejection(verifier({ issuer: `${issuer.issuer}/` }).verify(await issuer.issue()));
    expect(error).toMatchObject({ reason: "issuer misconfigured", issuerFault: true });
  });

  it("never echoes the token in an error", async () => {
    const valid = await issuer.issue({ realm_access: { roles: ["registry-reader"] } });
    const [header, payload] = segments(valid);
    const badTokens = [
      "garbage-token-text",
      `${header}.${payload}.`,
      `${header}.${payload}.c2lnbmF0dXJl`,
      await issuer.issue({}, { expiresInSec: -120 }),
      await issuer.issue({}, { audience: "account" }),
      await issuer.issue({}, { kid: "not-published" }),
    ];
    for (const token of badTokens) {
      const error = await rejection(verifier().verify(token));
      expect(error.issuerFault).toBe(false);
      for (const text of [error.message, error.reason, String(error), error.stack ?? "", JSON.stringify(error)]) {
        for (const part of token.split(".").filter((s) => s.length > 8)) expect(text).not.toContain(part);
      }
    }
  });
});
