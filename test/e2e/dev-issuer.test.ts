import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/db/embedded.js";
import { ACME } from "../../src/db/seed.js";
import { PACKAGE_ROOT } from "../../src/paths.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { restFetch } from "../support/rest.js";

/**
 * The dev loop with real tokens: the built server in AUTH_MODE=oidc with KEYCLOAK_ISSUER=dev
 * is its own issuer, and the built `dev-token` command mints what it accepts, per role.
 */
const MAIN = join(PACKAGE_ROOT, "dist", "bin", "main.js");
const run = promisify(execFile);

let db: TestDatabase;
let dir: string;
let env: Record<string, string>;
let base: string;
let server: ChildProcess | undefined;
let log = "";

async function devToken(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [MAIN, "dev-token", ...args], { env, timeout: 20_000 });
  return stdout.trim();
}

async function devTokenFailure(...args: string[]): Promise<{ code: number; stderr: string }> {
  return run(process.execPath, [MAIN, "dev-token", ...args], { env, timeout: 20_000 }).then(
    () => ({ code: 0, stderr: "" }),
    (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
  );
}

async function startServer(): Promise<void> {
  log = "";
  const child = spawn(process.execPath, [MAIN, "serve"], { env: { ...env, AUTH_MODE: "oidc" } });
  server = child;
  child.stdout.on("data", (chunk) => (log += String(chunk)));
  child.stderr.on("data", (chunk) => (log += String(chunk)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30_000);
    child.once("exit", (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
    child.stdout.on("data", () => {
      if (log.includes("serving on")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function stopServer(): Promise<void> {
  const child = server;
  server = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first (make test does)`);
  db = await createTestDatabase({ migrate: false });
  dir = await mkdtemp(join(tmpdir(), "dev-issuer-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  env = {
    PATH: process.env["PATH"] ?? "",
    APP_ENV: "dev",
    KEYCLOAK_ISSUER: "dev",
    ADDR: `127.0.0.1:${port}`,
    DATABASE_URL: db.url,
    DEV_ISSUER_KEY_FILE: join(dir, "dev-issuer-key.json"),
    LOG_LEVEL: "info",
  };
  await startServer();
});

afterAll(async () => {
  await stopServer();
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const call = (token: string | undefined, path: string, init: RequestInit = {}) =>
  restFetch(`${base}${path}`, {
    ...init,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });

describe("the dev issuer", () => {
  it("publishes discovery and a JWKS on the server's own port, and keeps its key owner-only under the data dir", async () => {
    const discovery = (await (await fetch(`${base}/dev-issuer/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({ issuer: `${base}/dev-issuer`, jwks_uri: `${base}/dev-issuer/jwks` });
    const jwks = (await (await fetch(`${base}/dev-issuer/jwks`)).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    expect(jwks.keys[0]).not.toHaveProperty("d"); // never the private part
    expect((await stat(env["DEV_ISSUER_KEY_FILE"]!)).mode & 0o777).toBe(0o600);
    expect(log).toContain("KEYCLOAK_ISSUER=dev");
  });

  it("still refuses calls without a token", async () => {
    expect((await call(undefined, "/v1/tenants/by-slug/acme")).status).toBe(401);
  });
});

// Each test runs the built CLI (a Node start each time); a loaded machine makes that slow.
describe("dev-token", { timeout: 90_000 }, () => {
  it("platform-admin: every tenant, and writes", async () => {
    const token = await devToken("--role", "platform-admin");
    expect((await call(token, "/v1/tenants/by-slug/acme")).status).toBe(200);
    const created = await call(token, "/v1/tenants", { method: "POST", body: JSON.stringify({ slug: `dev-${Date.now()}`, name: "Dev" }) });
    expect(created.status).toBe(200);
  });

  it("service: looks tenants up and checks entitlements, but cannot change them", async () => {
    const token = await devToken("--role", "service");
    expect((await call(token, "/v1/tenants/by-slug/acme")).status).toBe(200);
    expect(await (await call(token, "/v1/entitlements:check?tenant=acme&product=certifai")).json()).toMatchObject({ entitled: true });
    const create = await call(token, "/v1/tenants", { method: "POST", body: JSON.stringify({ slug: "svc-made", name: "No" }) });
    expect(create.status).toBe(403);
  });

  it("tenant-admin (by slug): manages its own tenant's projects, sees no other tenant", async () => {
    const token = await devToken("--role", "tenant-admin", "--tenant", "acme");
    expect(JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString())).toMatchObject({
      tenant_id: ACME.id,
      realm_access: { roles: ["tenant-admin"] },
      aud: "tenant-registry",
      typ: "Bearer",
    });
    const project = await call(token, `/v1/tenants/${ACME.id}/projects`, { method: "POST", body: JSON.stringify({ slug: `p-${Date.now()}`, name: "P" }) });
    expect(project.status).toBe(200);
    expect((await call(token, "/v1/tenants?pageSize=5")).status).toBe(403);
  });

  it("tenant-viewer (by id): reads its tenant, writes nothing", async () => {
    const token = await devToken("--role", "tenant-viewer", "--tenant", ACME.id, "--ttl", "5m");
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { exp: number; iat: number };
    expect(claims.exp - claims.iat).toBe(300);
    expect((await call(token, `/v1/tenants/${ACME.id}`)).status).toBe(200);
    expect((await call(token, `/v1/tenants/${ACME.id}/projects`)).status).toBe(200);
    const write = await call(token, `/v1/tenants/${ACME.id}/projects`, { method: "POST", body: JSON.stringify({ slug: "viewer-made", name: "No" }) });
    expect(write.status).toBe(403);
  });

  it("refuses what makes no sense, naming the option", async () => {
    expect(await devTokenFailure("--role", "root")).toMatchObject({ code: 2, stderr: expect.stringContaining("--role: expected one of") });
    expect(await devTokenFailure("--role", "tenant-admin")).toMatchObject({ code: 1, stderr: expect.stringContaining("needs a tenant") });
    expect(await devTokenFailure("--role", "service", "--tenant", "acme")).toMatchObject({ code: 1, stderr: expect.stringContaining("--tenant is for") });
    expect(await devTokenFailure("--role", "service", "--ttl", "forever")).toMatchObject({ code: 2, stderr: expect.stringContaining("--ttl") });
    expect(await devTokenFailure("--role", "tenant-viewer", "--tenant", "no-such-tenant")).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('cannot look up tenant "no-such-tenant"'),
    });
  });

  it("keeps working across a restart: the key stays under the data dir", async () => {
    const token = await devToken("--role", "service");
    await stopServer();
    await startServer();
    expect((await call(token, "/v1/tenants/by-slug/acme")).status).toBe(200);
  });

  it("is refused by config outside dev", async () => {
    const result = await run(process.execPath, [MAIN, "serve"], { env: { ...env, APP_ENV: "prod" }, timeout: 20_000 }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(result).toMatchObject({ code: 1, stderr: expect.stringContaining('KEYCLOAK_ISSUER: "dev" (the built-in dev issuer) is allowed only with APP_ENV=dev') });
    expect(await run(process.execPath, [MAIN, "dev-token", "--role", "service"], { env: { ...env, APP_ENV: "stage" } }).catch((e: { code: number }) => e.code)).toBe(1);
  });
});
