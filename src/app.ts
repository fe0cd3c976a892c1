import { createConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import { listAppliedMigrations } from "./db/queries/schema.js";
import { compareSchema, schemaProblem, type MigrationPlan } from "./db/migrations.js";
import type { DatabasePool } from "./db/pool.js";
import type { Logger } from "./logger.js";
import { createApiKeyHandlers } from "./service/api-keys.js";
import { createAuditHandlers } from "./service/audit.js";
import type { ServiceDeps } from "./service/deps.js";
import { createEntitlementHandlers } from "./service/entitlements.js";
import { createIdpHandlers } from "./service/idp.js";
import { createProjectHandlers } from "./service/projects.js";
import { createTenantHandlers } from "./service/tenants.js";
import { createObservingInterceptor } from "./transport/errors.js";
import { registerGrpcHealth, type Readiness } from "./transport/health.js";
import { createHttpHandler } from "./transport/http-handler.js";
import { REFLECTION_SERVICES, registerReflection, registryOf } from "./transport/reflection.js";
import type { RequestHandler } from "./transport/server.js";

export type AppDeps = {
  readonly db: DatabasePool;
  readonly logger: Logger;
  /** Loaded once at start-up; readiness compares the database against it. */
  readonly migrationPlan: MigrationPlan;
  readonly appEnv?: ServiceDeps["appEnv"];
  readonly clock?: () => Date;
};

export type App = {
  readonly handler: RequestHandler;
  readonly readiness: Readiness;
  /** Ends long-lived streams (health Watch) so a graceful shutdown is not held open by them. */
  beginShutdown(): void;
};

/** The composition root: everything the server needs, built from explicit dependencies. */
export function createApp({ db, logger, migrationPlan, appEnv = "dev", clock = () => new Date() }: AppDeps): App {
  const shutdown = new AbortController();
  const readiness: Readiness = {
    async check() {
      try {
        const problem = schemaProblem(compareSchema(migrationPlan, await listAppliedMigrations(db)));
        return problem ? { ready: false, reason: `schema not current: ${problem}` } : { ready: true };
      } catch {
        return { ready: false, reason: "database unavailable" };
      }
    },
  };

  const router = createConnectRouter({
    interceptors: [createObservingInterceptor(logger)],
    // Emit zero values too: REST and JSON clients see every field, e.g. "products": [].
    jsonOptions: { alwaysEmitImplicit: true },
    readMaxBytes: 4 * 1024 * 1024,
    acceptCompression: [compressionGzip, compressionBrotli],
    shutdownSignal: shutdown.signal,
  });
  const deps: ServiceDeps = { db, logger, appEnv, clock, shutdownSignal: shutdown.signal };
  // One module per resource; together they implement every RPC of the service.
  const implementation = {
    ...createTenantHandlers(deps),
    ...createProjectHandlers(deps),
    ...createEntitlementHandlers(deps),
    ...createIdpHandlers(deps),
    ...createApiKeyHandlers(deps),
    ...createAuditHandlers(deps),
  } satisfies Partial<ServiceImpl<typeof TenantRegistryService>>;
  router.service(TenantRegistryService, implementation);
  registerGrpcHealth(router, readiness, [TenantRegistryService.typeName], shutdown.signal);
  const served = [TenantRegistryService, Health, ...REFLECTION_SERVICES];
  registerReflection(router, registryOf(served), served);

  return {
    handler: createHttpHandler({ router, restServices: [TenantRegistryService], readiness, logger }),
    readiness,
    beginShutdown: () => shutdown.abort(),
  };
}
