import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseListenAddress } from "../../src/config.js";

describe("configuration from the environment", () => {
  it("has dev defaults that run on a fresh machine", () => {
    expect(loadConfig({})).toMatchObject({
      appEnv: "dev",
      listen: { host: undefined, port: 8090 },
      keycloakIssuer: "http://localhost:8080/realms/breakpilot-dev",
      databaseUrl: undefined,
      migrateOnStart: true,
      databaseWaitMs: 30_000,
      shutdownGraceMs: 15_000,
    });
  });

  it("does not migrate on start in stage and prod unless asked", () => {
    const url = "postgres://u:p@db:5432/registry";
    expect(loadConfig({ APP_ENV: "prod", DATABASE_URL: url }).migrateOnStart).toBe(false);
    expect(loadConfig({ APP_ENV: "stage", DATABASE_URL: url, MIGRATE_ON_START: "true" }).migrateOnStart).toBe(true);
    expect(loadConfig({ APP_ENV: "dev", MIGRATE_ON_START: "0" }).migrateOnStart).toBe(false);
  });

  it("requires DATABASE_URL outside dev", () => {
    expect(() => loadConfig({ APP_ENV: "prod" })).toThrow(/DATABASE_URL: required when APP_ENV=prod/);
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ APP_ENV: "", DATABASE_URL: "" })).toMatchObject({ appEnv: "dev", databaseUrl: undefined });
  });

  it.each([
    [{ APP_ENV: "production" }, /APP_ENV: expected one of dev, stage, prod/],
    [{ DATABASE_URL: "mysql://x" }, /DATABASE_URL: expected a postgres:\/\//],
    [{ MIGRATE_ON_START: "maybe" }, /MIGRATE_ON_START: expected true or false/],
    [{ KEYCLOAK_ISSUER: "not a url" }, /KEYCLOAK_ISSUER/],
    [{ DATABASE_WAIT_TIMEOUT: "-1" }, /DATABASE_WAIT_TIMEOUT/],
    [{ ADDR: "8090" }, /ADDR: expected host:port/],
    [{ ADDR: ":99999" }, /ADDR/],
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
