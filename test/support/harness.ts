import type pg from "pg";
import { afterAll, beforeAll } from "vitest";
import type { DatabasePool } from "../../src/db/pool.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { startOidcIssuer, type OidcIssuer } from "./oidc-issuer.js";
import { startTestServer, type TestServer, type TestServerOptions } from "./server.js";

export type Harness = {
  readonly db: TestDatabase;
  readonly pool: DatabasePool;
  readonly server: TestServer;
  /** A plain pg client on the same database, for looking under the service. */
  readonly sql: pg.Client;
};

/**
 * A fresh database, the real server on it and a SQL client for one test file,
 * torn down after it. `assign` hands them to the file's own variables (and may
 * seed data); `options` may be computed once other fixtures (an OpenID issuer)
 * exist.
 */
export function useTestServer(
  assign: (harness: Harness) => unknown,
  options: TestServerOptions | (() => TestServerOptions | Promise<TestServerOptions>) = {},
): void {
  let db: TestDatabase | undefined;
  let server: TestServer | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    const pool = await db.pool();
    server = await startTestServer(pool, typeof options === "function" ? await options() : options);
    await assign({ db, pool, server, sql: await db.client() });
  });
  afterAll(async () => {
    await server?.close();
    await db?.drop();
  });
}

export type OidcHarness = Harness & { readonly issuer: OidcIssuer };

/**
 * useTestServer with authentication on: a real OpenID issuer in the test
 * process, and the server accepting its tokens. `options` may add to (or
 * replace) the server options once the issuer's URL is known.
 */
export function useOidcTestServer(
  assign: (harness: OidcHarness) => unknown,
  options: (issuer: OidcIssuer) => TestServerOptions = (issuer) => ({ auth: { mode: "oidc", issuer: issuer.issuer } }),
): void {
  let issuer: OidcIssuer | undefined;
  useTestServer(
    (harness) => assign({ ...harness, issuer: issuer! }),
    async () => {
      issuer = await startOidcIssuer();
      return options(issuer);
    },
  );
  afterAll(async () => issuer?.stop());
}
