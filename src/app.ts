import { Code, ConnectError, createConnectRouter, createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import { createApiKeyAuthenticator } from "./auth/api-key-authenticator.js";
import { createAuthenticator, type Authenticator } from "./auth/authenticate.js";
import { createClientAddressResolver } from "./auth/client-address.js";
import { createAuthInterceptor } from "./auth/interceptor.js";
import { createOidcVerifier } from "./auth/oidc.js";
import { assertEveryRpcHasAPolicy } from "./auth/permissions.js";
import { DEV_PLATFORM_ADMIN } from "./auth/principal.js";
import { createTenantLookup } from "./auth/tenant-lookup.js";
import { createChangeListener, type ChangeListener, type ChangeListenerOptions } from "./cache/change-listener.js";
import { createHotReads } from "./cache/hot-reads.js";
import { createReadCache, type CacheStats, type ReadCache } from "./cache/read-cache.js";
import { DEFAULT_CACHE_SETTINGS, type CacheSettings } from "./config.js";
import { compareSchema, schemaProblem, type MigrationPlan } from "./db/migrations.js";
import type { DatabasePool } from "./db/pool.js";
import { listAppliedMigrations } from "./db/queries/schema.js";
import type { Logger } from "./logger.js";
import { createApiKeyUsageTracker } from "./service/api-key-usage.js";
import { createApiKeyVerifier, type ApiKeyVerifier } from "./service/api-key-verifier.js";
import { createApiKeyHandlers } from "./service/api-keys.js";
import { createAuditHandlers } from "./service/audit.js";
import { chainBaseReader, startAuditHousekeeping } from "./service/audit-chain.js";
import { createAuditChainHandlers } from "./service/audit-chain-handlers.js";
import { createAuditRetentionHandlers } from "./service/audit-retention-handlers.js";
import { ephemeralAuditSigner } from "./service/audit-signing-key.js";
import type { AuditSigner } from "./domain/audit-chain.js";
import type { ServiceDeps } from "./service/deps.js";
import { createChangeHandlers } from "./service/changes.js";
import { createEntitlementHandlers } from "./service/entitlements.js";
import { createIdpHandlers } from "./service/idp.js";
import { startMaintenance } from "./service/maintenance.js";
import { createProjectHandlers } from "./service/projects.js";
import { createTenantHandlers } from "./service/tenants.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { TRACING_OFF, type Tracing } from "./observability/tracing.js";
import { createCanonicalIdsInterceptor } from "./transport/canonical-ids.js";
import { createNoNulInterceptor } from "./transport/no-nul.js";
import { createClientFaultGate, strictUtf8Decoder } from "./transport/client-faults.js";
import { createObservingInterceptor } from "./transport/observe.js";
import { cachedReadiness, registerGrpcHealth, type Readiness } from "./transport/health.js";
import { createWholeUnaryHandlers } from "./transport/whole-unary.js";
import { createHttpHandler } from "./transport/http-handler.js";
import { createRestHandler } from "./transport/rest.js";
import { REFLECTION_SERVICES, registerReflection, registryOf } from "./transport/reflection.js";
import type { RequestHandler } from "./transport/server.js";

export type AuthSettings = {
  /** none: dev only, every call is a platform admin. oidc: bearer tokens or API keys. */
  readonly mode: "oidc" | "none";
  /** The OpenID issuer (KEYCLOAK_ISSUER); required for oidc. */
  readonly issuer?: string;
  readonly audience?: string;
  readonly tenantClaim?: string;
  readonly clockSkewSec?: number;
  readonly trustedProxies?: readonly string[];
  /** How often an unknown key id may refetch the issuer's keys (tests shorten it). */
  readonly jwksCooldownMs?: number;
};

export type AppDeps = {
  readonly db: DatabasePool;
  readonly logger: Logger;
  /** Loaded once at start-up; readiness compares the database against it. */
  readonly migrationPlan: MigrationPlan;
  readonly appEnv?: ServiceDeps["appEnv"];
  readonly clock?: () => Date;
  readonly auth?: AuthSettings;
  /** gRPC server reflection (v1 and v1alpha); on unless switched off. */
  readonly reflection?: boolean;
  /** Default: a registry of this app's own (tests scrape it through /metrics). */
  readonly metrics?: Metrics;
  /** Default: off. */
  readonly tracing?: Tracing;
  /** The hot-read cache (CACHE, CACHE_MAX_ENTRIES, CACHE_TTL). */
  readonly cache?: CacheSettings;
  /** Open GET documents served beside /healthz (the dev issuer's discovery and JWKS). */
  readonly openDocuments?: ReadonlyMap<string, unknown>;
  /** Signs audit checkpoints; a key for this process only unless given (serve loads AUDIT_SIGNING_KEY_FILE). */
  readonly auditSigner?: AuditSigner;
  readonly audit?: { readonly checkpointIntervalMs: number; readonly retentionMs: number | undefined };
  /** Heartbeat and reconnect timing of the change listener (tests widen the backoff to watch an outage). */
  readonly changeListener?: Pick<ChangeListenerOptions, "heartbeatMs" | "heartbeatTimeoutMs" | "backoffMinMs" | "backoffMaxMs">;
};

function authenticatorFor(auth: AuthSettings, verifyKey: ApiKeyVerifier, logger: Logger): Authenticator {
  // AUTH_MODE=none (config allows it in dev only): every call is the dev platform admin.
  if (auth.mode === "none") return async () => DEV_PLATFORM_ADMIN;
  if (!auth.issuer) throw new Error("AUTH_MODE=oidc needs an issuer (KEYCLOAK_ISSUER)");
  return createAuthenticator({
    oidc: createOidcVerifier({
      issuer: auth.issuer,
      audience: auth.audience,
      clockToleranceSec: auth.clockSkewSec,
      tenantClaim: auth.tenantClaim,
      jwksCooldownMs: auth.jwksCooldownMs,
    }),
    apiKeys: createApiKeyAuthenticator(verifyKey),
    logger,
  });
}

export type App = {
  readonly handler: RequestHandler;
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  /**
   * The drain begins: streams that would never end by themselves (health Watch)
   * end now; calls with an answer coming keep running.
   */
  beginDrain(): void;
  /** Ends the calls still running (Unavailable) and stops timers, so a graceful shutdown completes. */
  beginShutdown(): void;
  /** After the listener has closed: writes what is still pending (API-key usage), closes the change listener. */
  drain(): Promise<void>;
  /** Every change committed through any replica (the WatchChanges feed), and the listener's state. */
  readonly changes: ChangeListener;
  /** Hits, misses, evictions, entries, listener state; invalidation lag through onInvalidation. */
  readonly cacheStats: CacheStats;
  readonly onInvalidation: ReadCache["onInvalidation"];
};

// Probes and Watch streams share one readiness query per second at most.
const READINESS_TTL_MS = 1_000;
// The largest request message any protocol accepts (REST has its own, equal limit).
const READ_MAX_BYTES = 4 * 1024 * 1024;

/** The composition root: everything the server needs, built from explicit dependencies. */
export function createApp({
  db,
  logger,
  migrationPlan,
  appEnv = "dev",
  clock = () => new Date(),
  auth = { mode: "none" },
  reflection = true,
  metrics = createMetrics(),
  tracing = TRACING_OFF,
  cache: cacheSettings = DEFAULT_CACHE_SETTINGS,
  openDocuments,
  auditSigner = ephemeralAuditSigner(),
  audit = { checkpointIntervalMs: 60 * 60 * 1000, retentionMs: undefined },
  changeListener = {},
}: AppDeps): App {
  assertEveryRpcHasAPolicy(TenantRegistryService);
  const shutdown = new AbortController();
  const drain = new AbortController();
  const readiness: Readiness = cachedReadiness({
    async check() {
      try {
        const problem = schemaProblem(compareSchema(migrationPlan, await listAppliedMigrations(db)));
        return problem ? { ready: false, reason: `schema not current: ${problem}` } : { ready: true };
      } catch {
        return { ready: false, reason: "database unavailable" };
      }
    },
  }, READINESS_TTL_MS);

  metrics.watchPool(() => db.state());
  // One LISTEN session per replica, on its own connection to the pool's database.
  const changes = createChangeListener({ ...changeListener, connectionUri: db.configuration.connectionUri, logger });
  const cache = createReadCache(cacheSettings, changes, logger);
  metrics.watchCache(cache.stats, cache.onInvalidation);
  const hot = createHotReads(db, cache, metrics.hotLookupsBatched);
  const deps: ServiceDeps = { db, logger, appEnv, clock, shutdownSignal: shutdown.signal, metrics, changes: { committed: cache.apply }, hot };
  const usage = createApiKeyUsageTracker(deps);
  const verifyKey = createApiKeyVerifier(deps, usage);
  startMaintenance(deps);
  startAuditHousekeeping({ ...deps, signer: auditSigner, ...audit });
  const served = [TenantRegistryService, Health, ...(reflection ? REFLECTION_SERVICES : [])];

  // REST runs the same implementations through this same interceptor list as the Connect router.
  const interceptors = [
    createObservingInterceptor({ logger, metrics, tracing }),
    createCanonicalIdsInterceptor(),
    createNoNulInterceptor(),
    createAuthInterceptor({
      authenticate: authenticatorFor(auth, verifyKey, logger),
      openServices: new Set(served.filter((s) => s !== TenantRegistryService).map((s) => s.typeName)),
      governedService: TenantRegistryService.typeName,
      tenants: createTenantLookup(hot),
      clientAddress: createClientAddressResolver(auth.trustedProxies ?? []),
      db,
      logger,
      metrics,
    }),
  ];
  // Emit zero values too: REST and JSON clients see every field, e.g. "products": [].
  // connect-es reads `textDecoder` from the JSON options (its JsonSerializationOptions)
  // although the router's type does not list it: a named object passes it through.
  const jsonOptions = { alwaysEmitImplicit: true, textDecoder: strictUtf8Decoder() };
  // One object: the Connect unary handlers below must answer exactly as this router does.
  const routerOptions = {
    interceptors,
    jsonOptions,
    requestGate: createClientFaultGate(logger),
    readMaxBytes: READ_MAX_BYTES,
    acceptCompression: [compressionGzip, compressionBrotli],
    shutdownSignal: shutdown.signal,
  };
  const router = createConnectRouter(routerOptions);
  // One module per resource; together they implement every RPC of the service.
  const implementation = {
    ...createTenantHandlers(deps),
    ...createProjectHandlers(deps),
    ...createEntitlementHandlers(deps),
    ...createIdpHandlers(deps),
    ...createApiKeyHandlers(deps, verifyKey),
    ...createAuditHandlers(deps),
    ...createAuditChainHandlers(deps, auditSigner),
    ...createAuditRetentionHandlers(deps, audit.retentionMs),
    // A watch never ends by itself: it ends when the drain begins, like health Watch.
    ...createChangeHandlers({ shutdownSignal: AbortSignal.any([drain.signal, shutdown.signal]) }, changes),
  } satisfies ServiceImpl<typeof TenantRegistryService>;
  const { exportAuditEvents, ...unaryAndWatch } = implementation;
  router.service(TenantRegistryService, unaryAndWatch);
  // Exports go out uncompressed, whatever the client accepts (identity is always
  // allowed): gzip cost ~10 µs of server CPU per event, as much as reading and
  // encoding the event together, and halves only the hashes. This registration
  // replaces the stand-in service() made for the missing method (the HTTP handler
  // keeps the last handler registered for a path).
  router.rpc(TenantRegistryService.method.exportAuditEvents, exportAuditEvents, { acceptCompression: [] });
  const implementationSpec = createServiceImplSpec<typeof TenantRegistryService>(TenantRegistryService, implementation);
  const rest = createRestHandler({
    services: [implementationSpec],
    interceptors,
    jsonOptions,
    shutdownSignal: shutdown.signal,
    logger,
    auditSigner,
    auditChainBase: chainBaseReader(db),
    clock,
  });
  registerGrpcHealth(router, readiness, [TenantRegistryService.typeName], AbortSignal.any([drain.signal, shutdown.signal]));
  if (reflection) registerReflection(router, registryOf(served), served);

  return {
    handler: createHttpHandler({
      router,
      rest,
      readiness,
      logger,
      metrics: metrics.registry,
      readMaxBytes: READ_MAX_BYTES,
      // TenantRegistryService's unary calls (health and reflection keep connect's handler).
      wholeUnary: createWholeUnaryHandlers([implementationSpec], routerOptions),
      ...(openDocuments ? { openDocuments } : {}),
    }),
    metrics,
    readiness,
    beginDrain: () => drain.abort(),
    // Calls still running see Unavailable ("retry elsewhere"), not a bare abort.
    beginShutdown: () => shutdown.abort(new ConnectError("the server is shutting down; retry", Code.Unavailable)),
    // Uses noted while draining would otherwise be lost with the process.
    drain: async () => {
      await usage.flush();
      await changes.close();
    },
    changes,
    cacheStats: cache.stats,
    onInvalidation: cache.onInvalidation,
  };
}
