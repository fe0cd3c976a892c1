import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseListenAddress } from "../../src/config.js";
import { DEFAULT_LIMITS } from "../../src/transport/server.js";

describe("configuration from the environment", () => {
  it("has dev defaults that run on a fresh machine", () => {
    expect(loadConfig({})).toMatchObject({
      appEnv: "dev",
      listen: { host: "127.0.0.1", port: 8090 }, // authentication is off: loopback only
      keycloakIssuer: "http://localhost:8080/realms/breakpilot-dev",
      databaseUrl: undefined,
      migrateOnStart: true,
      databaseWaitMs: 30_000,
      shutdownGraceMs: 15_000,
    });
  });

  const prod = { DATABASE_URL: "postgres://u:p@db:5432/registry", KEYCLOAK_ISSUER: "https://sso.example.com/realms/platform" };

  it("does not migrate on start in stage and prod unless asked", () => {
    expect(loadConfig({ APP_ENV: "prod", ...prod }).migrateOnStart).toBe(false);
    expect(loadConfig({ APP_ENV: "stage", ...prod, MIGRATE_ON_START: "true" }).migrateOnStart).toBe(true);
    expect(loadConfig({ APP_ENV: "dev", MIGRATE_ON_START: "0" }).migrateOnStart).toBe(false);
  });

  it("listens on every interface by default only when authentication is on", () => {
    expect(loadConfig({ AUTH_MODE: "oidc" }).listen).toEqual({ host: undefined, port: 8090 });
    expect(loadConfig({ ADDR: ":9000" }).listen).toEqual({ host: undefined, port: 9000 }); // asked for explicitly
  });

  it("requires DATABASE_URL outside dev", () => {
    expect(() => loadConfig({ APP_ENV: "prod" })).toThrow(/DATABASE_URL: required when APP_ENV=prod/);
  });

  it("authenticates with OIDC outside dev, and allows AUTH_MODE=none only in dev", () => {
    expect(loadConfig({}).auth).toEqual({ mode: "none", audience: "tenant-registry", tenantClaim: "tenant_id", clockSkewSec: 30 });
    expect(loadConfig({ AUTH_MODE: "oidc" }).auth.mode).toBe("oidc");
    expect(loadConfig({ APP_ENV: "stage", ...prod }).auth.mode).toBe("oidc");
    expect(() => loadConfig({ APP_ENV: "prod", ...prod, AUTH_MODE: "none" })).toThrow(/AUTH_MODE: none is allowed only with APP_ENV=dev/);
    expect(() => loadConfig({ APP_ENV: "stage", DATABASE_URL: prod.DATABASE_URL })).toThrow(/KEYCLOAK_ISSUER: required when APP_ENV=stage/);
    // The init container runs migrations with nothing but DATABASE_URL.
    expect(loadConfig({ APP_ENV: "prod", DATABASE_URL: prod.DATABASE_URL }, "migrate").databaseUrl).toBe(prod.DATABASE_URL);
    expect(loadConfig({ AUTH_AUDIENCE: "registry", AUTH_TENANT_CLAIM: "org", AUTH_CLOCK_SKEW: "5" }).auth).toMatchObject({
      audience: "registry",
      tenantClaim: "org",
      clockSkewSec: 5,
    });
  });

  it("parses TRUSTED_PROXIES and REFLECTION", () => {
    expect(loadConfig({ TRUSTED_PROXIES: "10.0.0.0/8, 192.168.1.1,::1/128" }).trustedProxies).toEqual(["10.0.0.0/8", "192.168.1.1", "::1/128"]);
    expect(loadConfig({}).reflection).toBe(true);
    expect(loadConfig({ REFLECTION: "off" }).reflection).toBe(false);
    expect(() => loadConfig({ TRUSTED_PROXIES: "10.0.0.0/33" })).toThrow(/TRUSTED_PROXIES: "10.0.0.0\/33" has an invalid prefix length/);
    expect(() => loadConfig({ TRUSTED_PROXIES: "proxy.internal" })).toThrow(/TRUSTED_PROXIES/);
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ APP_ENV: "", DATABASE_URL: "" })).toMatchObject({ appEnv: "dev", databaseUrl: undefined });
  });

  it("serves its own dev issuer with KEYCLOAK_ISSUER=dev, in dev only, at a URL with the fixed ADDR port", () => {
    expect(loadConfig({ AUTH_MODE: "oidc", KEYCLOAK_ISSUER: "dev" })).toMatchObject({
      keycloakIssuer: "http://127.0.0.1:8090/dev-issuer", // every interface: tokens name loopback
      devIssuer: { keyFile: ".data/dev-issuer-key.json" },
    });
    expect(loadConfig({ KEYCLOAK_ISSUER: "dev", ADDR: "[::1]:9000", DEV_ISSUER_KEY_FILE: "/tmp/k.json" })).toMatchObject({
      keycloakIssuer: "http://[::1]:9000/dev-issuer",
      devIssuer: { keyFile: "/tmp/k.json" },
    });
    expect(loadConfig({}).devIssuer).toBeUndefined();
    for (const appEnv of ["stage", "prod"]) {
      expect(() => loadConfig({ APP_ENV: appEnv, DATABASE_URL: prod.DATABASE_URL, KEYCLOAK_ISSUER: "dev" })).toThrow(
        new RegExp(`KEYCLOAK_ISSUER: "dev" \\(the built-in dev issuer\\) is allowed only with APP_ENV=dev \\(APP_ENV=${appEnv}\\)`),
      );
    }
    expect(() => loadConfig({ KEYCLOAK_ISSUER: "dev", ADDR: "127.0.0.1:0" })).toThrow(/KEYCLOAK_ISSUER: "dev" needs a fixed port in ADDR/);
  });

  it.each([
    [{ APP_ENV: "production" }, /APP_ENV: expected one of dev, stage, prod/],
    [{ DATABASE_URL: "mysql://x" }, /DATABASE_URL: expected a postgres:\/\//],
    [{ MIGRATE_ON_START: "maybe" }, /MIGRATE_ON_START: expected true or false/],
    [{ KEYCLOAK_ISSUER: "not a url" }, /KEYCLOAK_ISSUER/],
    [{ DATABASE_WAIT_TIMEOUT: "-1" }, /DATABASE_WAIT_TIMEOUT/],
    [{ ADDR: "8090" }, /ADDR: expected host:port/],
    [{ ADDR: ":99999" }, /ADDR/],
    [{ AUTH_MODE: "basic" }, /AUTH_MODE: expected oidc or none/],
    [{ REFLECTION: "maybe" }, /REFLECTION: expected on or off/],
  ])("names the variable in error for %j", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it.each([
    [":8090", { host: undefined, port: 8090 }],
    ["127.0.0.1:18090", { host: "127.0.0.1", port: 18090 }],
    ["[::1]:0", { host: "::1", port: 0 }],
    ["localhost:80", { host: "localhost", port: 80 }],
  ])("parses ADDR %j", (addr, expected) => {
    expect(parseListenAddress(addr)).toEqual(expected);
  });
});

describe("listener limits", () => {
  it("default to the documented values and are set by their env vars", () => {
    expect(loadConfig({}).server).toEqual(DEFAULT_LIMITS);
    const set = loadConfig({
      MAX_CONNECTIONS: "50",
      MAX_CONNECTIONS_PER_ADDRESS: "5",
      ABUSE_COOLDOWN: "0",
      H2_FIRST_STREAM_TIMEOUT: "2.5",
      H2_RESET_BURST: "10",
      H2_RESET_RATE: "3",
      H2_MAX_SESSION_MEMORY_MB: "256",
    }).server;
    expect(set).toMatchObject({
      maxConnections: 50,
      maxConnectionsPerAddress: 5,
      abuseCooldownMs: 0,
      firstStreamTimeoutMs: 2_500,
      resetBurst: 10,
      resetRatePerSec: 3,
      maxSessionMemoryMb: 256,
    });
  });

  it("refuse nonsense, naming the variable", () => {
    expect(() => loadConfig({ MAX_CONNECTIONS: "0" })).toThrow(/MAX_CONNECTIONS: expected at least 1/);
    expect(() => loadConfig({ H2_RESET_RATE: "lots" })).toThrow(/H2_RESET_RATE: expected a whole number/);
    expect(() => loadConfig({ H2_IDLE_TIMEOUT: "-1" })).toThrow(/H2_IDLE_TIMEOUT/);
  });
});
