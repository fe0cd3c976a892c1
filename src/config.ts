import { z } from "zod";
import { cidrProblem } from "./auth/client-address.js";
import { DEFAULT_LIMITS, type ServerLimits } from "./transport/server.js";

/**
 * The service's configuration, parsed once from the environment at the edge.
 * Everything below main.ts receives this typed object, never process.env.
 */
export type Config = {
  readonly appEnv: "dev" | "stage" | "prod";
  /** host:port to listen on; an empty host means every interface. */
  readonly listen: { readonly host: string | undefined; readonly port: number };
  /** The OpenID issuer of access tokens; with KEYCLOAK_ISSUER=dev, this process's own dev issuer. */
  readonly keycloakIssuer: string;
  /** Set with KEYCLOAK_ISSUER=dev (dev only): the server also acts as the issuer, signing with this key. */
  readonly devIssuer: { readonly keyFile: string } | undefined;
  /** Unset only in dev, where an embedded PostgreSQL is started instead. */
  readonly databaseUrl: string | undefined;
  readonly migrateOnStart: boolean;
  /** How long `migrate up` and `serve` wait for the database to answer. */
  readonly databaseWaitMs: number;
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** How long graceful shutdown waits for in-flight calls before cutting them off. */
  readonly shutdownGraceMs: number;
  /** Where the embedded dev database keeps its data. */
  readonly embeddedDataDir: string;
  readonly auth: {
    /** oidc: bearer tokens (Keycloak access tokens or API keys). none: dev only, everyone is a platform admin. */
    readonly mode: "oidc" | "none";
    readonly audience: string;
    /** The claim naming a tenant-scoped principal's tenant id. */
    readonly tenantClaim: string;
    readonly clockSkewSec: number;
  };
  /** Proxies whose X-Forwarded-For is believed (IPs or CIDRs). */
  readonly trustedProxies: readonly string[];
  /** gRPC server reflection on the port (REFLECTION=off to hide the schema). */
  readonly reflection: boolean;
  /** A second listener serving only GET /metrics (METRICS_ADDR); /metrics is on the main port regardless. */
  readonly metricsListen: { readonly host: string | undefined; readonly port: number } | undefined;
  readonly tracing: TracingConfig;
  readonly cache: CacheSettings;
  readonly audit: {
    /** Ed25519 private key (PKCS#8 PEM) checkpoints are signed with; dev generates one under .data/. */
    readonly signingKeyFile: string | undefined;
    /** How often chain heads that moved are signed (and retention runs). */
    readonly checkpointIntervalMs: number;
    /** Events older than this are removed (per-tenant settings override it); undefined: kept forever. */
    readonly retentionMs: number | undefined;
  };
  /** TLS on the serving port; undefined: plaintext (h2c and HTTP/1.1). */
  readonly tls: TlsConfig | undefined;
  /** Connection caps, timeouts and HTTP/2 limits of the listener (README: Robustness). */
  readonly server: ServerLimits;
};

export type TlsConfig = {
  readonly certFile: string;
  readonly keyFile: string;
  /** Set: mutual TLS, callers must present a certificate this CA signed. */
  readonly clientCaFile: string | undefined;
};

/**
 * Traces, from the standard OTEL_* variables only. No endpoint means no
 * exporter, no provider and no per-call cost.
 */
export type TracingConfig = {
  /** The OTLP/HTTP traces URL (…/v1/traces); undefined: tracing is off. */
  readonly endpoint: string | undefined;
  readonly protocol: "http/protobuf" | "http/json";
  /** OTEL_EXPORTER_OTLP_HEADERS plus the traces-specific ones (which win), e.g. a SigNoz ingestion key. Never logged. */
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES, decoded. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: {
    readonly name: "always_on" | "always_off" | "traceidratio" | "parentbased_always_on" | "parentbased_always_off" | "parentbased_traceidratio";
    readonly ratio: number;
  };
};

/** The in-process read-through cache of the hot reads (see src/cache/). */
export type CacheSettings = {
  /** CACHE=off: every read goes to PostgreSQL. */
  readonly enabled: boolean;
  /** CACHE_MAX_ENTRIES: least recently used entries go first beyond this. */
  readonly maxEntries: number;
  /** CACHE_TTL: no entry is older than this, whatever the change notices say. */
  readonly ttlMs: number;
};

export const DEFAULT_CACHE_SETTINGS: CacheSettings = { enabled: true, maxEntries: 200_000, ttlMs: 60_000 };

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const boolish = z
  .enum(["true", "false", "1", "0", "yes", "no", "on", "off"], {
    error: "expected true or false",
  })
  .transform((v) => ["true", "1", "yes", "on"].includes(v));

// OTLP over gRPC is not offered: one HTTP exporter covers SigNoz and every collector.
const otlpProtocol = z.enum(["http/protobuf", "http/json"], { error: "expected http/protobuf or http/json (grpc is not supported)" });

// The OTel key=value,key=value form (values URL-encoded) of OTEL_RESOURCE_ATTRIBUTES and the header lists.
const keyValuePairs = z.string().transform((v, ctx) => {
  const pairs: Record<string, string> = {};
  for (const pair of v.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at <= 0) {
      // Not the pair itself: a header list may hold a credential.
      ctx.addIssue({ code: "custom", message: "expected key=value pairs separated by commas" });
      return z.NEVER;
    }
    try {
      pairs[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      ctx.addIssue({ code: "custom", message: "a key or value is not valid percent-encoding" });
      return z.NEVER;
    }
  }
  return pairs;
});

const seconds = z.coerce
  .number({ error: "expected a number of seconds" })
  .positive({ error: "expected a positive number of seconds" })
  .transform((s) => Math.round(s * 1000));

const wholeNumber = (atLeast: number) =>
  z.coerce.number({ error: "expected a whole number" }).int({ error: "expected a whole number" }).min(atLeast, { error: `expected at least ${atLeast}` });

const secondsOrOff = z.coerce
  .number({ error: "expected a number of seconds" })
  .min(0, { error: "expected 0 (off) or a positive number of seconds" })
  .transform((s) => Math.round(s * 1000));

const d = DEFAULT_LIMITS;
const listenerSchema = {
  MAX_CONNECTIONS: wholeNumber(1).default(d.maxConnections),
  MAX_CONNECTIONS_PER_ADDRESS: wholeNumber(1).default(d.maxConnectionsPerAddress),
  ABUSE_COOLDOWN: secondsOrOff.prefault(String(d.abuseCooldownMs / 1000)),
  FIRST_BYTE_TIMEOUT: seconds.prefault(String(d.firstByteTimeoutMs / 1000)),
  HEADERS_TIMEOUT: seconds.prefault(String(d.headersTimeoutMs / 1000)),
  REQUEST_TIMEOUT: seconds.prefault(String(d.requestTimeoutMs / 1000)),
  KEEP_ALIVE_TIMEOUT: seconds.prefault(String(d.keepAliveTimeoutMs / 1000)),
  MAX_HEADER_BYTES: wholeNumber(1024).default(d.maxHeaderBytes),
  H2_FIRST_STREAM_TIMEOUT: seconds.prefault(String(d.firstStreamTimeoutMs / 1000)),
  H2_IDLE_TIMEOUT: seconds.prefault(String(d.idleSessionTimeoutMs / 1000)),
  H2_MAX_CONCURRENT_STREAMS: wholeNumber(1).default(d.maxConcurrentStreams),
  H2_MAX_SESSION_MEMORY_MB: wholeNumber(1).default(d.maxSessionMemoryMb),
  H2_RESET_BURST: wholeNumber(1).default(d.resetBurst),
  H2_RESET_RATE: wholeNumber(1).default(d.resetRatePerSec),
};

const envSchema = z.object({
  ...listenerSchema,
  APP_ENV: z.enum(["dev", "stage", "prod"], { error: "expected one of dev, stage, prod" }).default("dev"),
  ADDR: z.string().optional(),
  KEYCLOAK_ISSUER: z
    .union([z.literal("dev"), z.url({ protocol: /^https?$/ })], { error: 'expected an http(s) URL, or "dev" for the built-in dev issuer' })
    .default("http://localhost:8080/realms/breakpilot-dev"),
  DEV_ISSUER_KEY_FILE: z.string().default(".data/dev-issuer-key.json"),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { error: "expected a postgres:// or postgresql:// URL" })
    .optional(),
  MIGRATE_ON_START: boolish.optional(),
  DATABASE_WAIT_TIMEOUT: seconds.prefault("30"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  SHUTDOWN_GRACE_PERIOD: seconds.prefault("15"),
  EMBEDDED_PG_DATA_DIR: z.string().default(".data/postgres"),
  AUTH_MODE: z.enum(["oidc", "none"], { error: "expected oidc or none" }).optional(),
  AUTH_AUDIENCE: z.string().default("tenant-registry"),
  AUTH_TENANT_CLAIM: z.string().default("tenant_id"),
  AUTH_CLOCK_SKEW: z.coerce.number({ error: "expected a number of seconds" }).int().min(0).max(300).default(30),
  TRUSTED_PROXIES: z
    .string()
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
    .superRefine((entries, ctx) => {
      for (const entry of entries) {
        const problem = cidrProblem(entry);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      }
    })
    .default([]),
  REFLECTION: z.enum(["on", "off"], { error: "expected on or off" }).default("on"),
  METRICS_ADDR: z.string().optional(),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  TLS_CLIENT_CA_FILE: z.string().optional(),
  OTEL_SDK_DISABLED: boolish.default(false),
  OTEL_TRACES_EXPORTER: z.enum(["otlp", "none"], { error: "expected otlp or none" }).default("otlp"),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.default("http/protobuf"),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_HEADERS: keyValuePairs.default({}),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValuePairs.default({}),
  OTEL_SERVICE_NAME: z.string().optional(),
  OTEL_RESOURCE_ATTRIBUTES: keyValuePairs.default({}),
  OTEL_TRACES_SAMPLER: z
    .enum(["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"], {
      error: "expected always_on, always_off, traceidratio or their parentbased_ forms",
    })
    .default("parentbased_always_on"),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number({ error: "expected a ratio between 0 and 1" }).min(0).max(1).default(1),
  CACHE: z.enum(["on", "off"], { error: "expected on or off" }).default("on"),
  CACHE_MAX_ENTRIES: z.coerce
    .number({ error: "expected a whole number of entries" })
    .int({ error: "expected a whole number of entries" })
    .min(1, { error: "expected at least 1 entry (CACHE=off switches the cache off)" })
    .max(100_000_000, { error: "expected at most 100000000 entries" })
    .default(DEFAULT_CACHE_SETTINGS.maxEntries),
  CACHE_TTL: seconds.prefault(String(DEFAULT_CACHE_SETTINGS.ttlMs / 1000)),
  AUDIT_SIGNING_KEY_FILE: z.string().optional(),
  AUDIT_CHECKPOINT_INTERVAL: seconds.prefault("3600"),
  AUDIT_RETENTION: z
    .string()
    .regex(/^[1-9][0-9]*[dhms]$/, { error: 'expected a whole number of days, hours, minutes or seconds, e.g. "365d"' })
    .transform((v) => Number(v.slice(0, -1)) * { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 }[v.at(-1) as "d" | "h" | "m" | "s"])
    .optional(),
});

/** Every variable the service reads (the deploy manifests may name no other). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

/** Parses ADDR: ":8090", "127.0.0.1:8090", "[::1]:8090", "localhost:0". */
export function parseListenAddress(addr: string, variable = "ADDR"): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError(`${variable}: expected host:port (e.g. ":8090" or "127.0.0.1:8090"), got "${addr}"`);
  }
  const host = match[1] ?? match[2];
  return { host: host === "" ? undefined : host, port };
}

/** Where this process serves its dev issuer: loopback when it listens on every interface. */
function devIssuerUrl(listen: { host: string | undefined; port: number }): string {
  const wildcard = listen.host === undefined || listen.host === "0.0.0.0" || listen.host === "::";
  const host = wildcard ? "127.0.0.1" : listen.host!.includes(":") ? `[${listen.host}]` : listen.host;
  return `http://${host}:${listen.port}/dev-issuer`;
}

/**
 * `purpose` "migrate" skips what only serving needs (the token issuer), so an
 * init container runs with nothing but DATABASE_URL; "offline" (`audit verify
 * --file`) also skips the database, which it never opens.
 */
export function loadConfig(env: Record<string, string | undefined>, purpose: "serve" | "migrate" | "offline" = "serve"): Config {
  // Treat VAR= (set but empty) as unset, the way shells and compose files usually mean it.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  const e = parsed.data;
  const production = e.APP_ENV !== "dev";
  if (production && purpose !== "offline" && e.DATABASE_URL === undefined) {
    throw new ConfigError(
      `DATABASE_URL: required when APP_ENV=${e.APP_ENV} (the embedded PostgreSQL is for dev only)`,
    );
  }
  const authMode = e.AUTH_MODE ?? (production ? "oidc" : "none");
  if (authMode === "none" && production) {
    throw new ConfigError(`AUTH_MODE: none is allowed only with APP_ENV=dev (APP_ENV=${e.APP_ENV} requires oidc)`);
  }
  if (production && purpose === "serve" && present["KEYCLOAK_ISSUER"] === undefined) {
    throw new ConfigError(`KEYCLOAK_ISSUER: required when APP_ENV=${e.APP_ENV} (the issuer of the access tokens to accept)`);
  }
  // With authentication off, the default is loopback only: an unauthenticated
  // platform admin must never be one unset variable away from the network.
  const listen = parseListenAddress(e.ADDR ?? (authMode === "none" ? "127.0.0.1:8090" : ":8090"));
  const devIssuer = e.KEYCLOAK_ISSUER === "dev";
  if (devIssuer && production) {
    throw new ConfigError(`KEYCLOAK_ISSUER: "dev" (the built-in dev issuer) is allowed only with APP_ENV=dev (APP_ENV=${e.APP_ENV})`);
  }
  if (devIssuer && listen.port === 0) {
    throw new ConfigError("KEYCLOAK_ISSUER: \"dev\" needs a fixed port in ADDR: the issuer's URL, and so every token's iss, contains it");
  }
  if ((e.TLS_CERT_FILE === undefined) !== (e.TLS_KEY_FILE === undefined)) {
    throw new ConfigError(`${e.TLS_CERT_FILE === undefined ? "TLS_CERT_FILE" : "TLS_KEY_FILE"}: required when ${e.TLS_CERT_FILE === undefined ? "TLS_KEY_FILE" : "TLS_CERT_FILE"} is set`);
  }
  if (e.TLS_CLIENT_CA_FILE !== undefined && e.TLS_CERT_FILE === undefined) {
    throw new ConfigError("TLS_CLIENT_CA_FILE: mutual TLS needs TLS_CERT_FILE and TLS_KEY_FILE too");
  }
  return {
    appEnv: e.APP_ENV,
    listen,
    keycloakIssuer: devIssuer ? devIssuerUrl(listen) : e.KEYCLOAK_ISSUER,
    devIssuer: devIssuer ? { keyFile: e.DEV_ISSUER_KEY_FILE } : undefined,
    databaseUrl: e.DATABASE_URL,
    migrateOnStart: e.MIGRATE_ON_START ?? !production,
    databaseWaitMs: e.DATABASE_WAIT_TIMEOUT,
    logLevel: e.LOG_LEVEL,
    shutdownGraceMs: e.SHUTDOWN_GRACE_PERIOD,
    embeddedDataDir: e.EMBEDDED_PG_DATA_DIR,
    auth: { mode: authMode, audience: e.AUTH_AUDIENCE, tenantClaim: e.AUTH_TENANT_CLAIM, clockSkewSec: e.AUTH_CLOCK_SKEW },
    trustedProxies: e.TRUSTED_PROXIES,
    reflection: e.REFLECTION === "on",
    tls:
      e.TLS_CERT_FILE === undefined || e.TLS_KEY_FILE === undefined
        ? undefined
        : { certFile: e.TLS_CERT_FILE, keyFile: e.TLS_KEY_FILE, clientCaFile: e.TLS_CLIENT_CA_FILE },
    metricsListen: e.METRICS_ADDR === undefined ? undefined : parseListenAddress(e.METRICS_ADDR, "METRICS_ADDR"),
    tracing: {
      endpoint:
        e.OTEL_SDK_DISABLED || e.OTEL_TRACES_EXPORTER === "none"
          ? undefined
          : (e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
            (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined ? undefined : `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`)),
      protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? e.OTEL_EXPORTER_OTLP_PROTOCOL,
      headers: { ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
      serviceName: e.OTEL_SERVICE_NAME ?? e.OTEL_RESOURCE_ATTRIBUTES["service.name"] ?? "tenant-registry",
      resourceAttributes: e.OTEL_RESOURCE_ATTRIBUTES,
      sampler: { name: e.OTEL_TRACES_SAMPLER, ratio: e.OTEL_TRACES_SAMPLER_ARG },
    },
    cache: { enabled: e.CACHE === "on", maxEntries: e.CACHE_MAX_ENTRIES, ttlMs: e.CACHE_TTL },
    audit: {
      signingKeyFile: e.AUDIT_SIGNING_KEY_FILE,
      checkpointIntervalMs: e.AUDIT_CHECKPOINT_INTERVAL,
      retentionMs: e.AUDIT_RETENTION,
    },
    server: {
      maxConnections: e.MAX_CONNECTIONS,
      maxConnectionsPerAddress: e.MAX_CONNECTIONS_PER_ADDRESS,
      abuseCooldownMs: e.ABUSE_COOLDOWN,
      firstByteTimeoutMs: e.FIRST_BYTE_TIMEOUT,
      headersTimeoutMs: e.HEADERS_TIMEOUT,
      requestTimeoutMs: e.REQUEST_TIMEOUT,
      keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT,
      maxHeaderBytes: e.MAX_HEADER_BYTES,
      firstStreamTimeoutMs: e.H2_FIRST_STREAM_TIMEOUT,
      idleSessionTimeoutMs: e.H2_IDLE_TIMEOUT,
      maxConcurrentStreams: e.H2_MAX_CONCURRENT_STREAMS,
      maxSessionMemoryMb: e.H2_MAX_SESSION_MEMORY_MB,
      resetBurst: e.H2_RESET_BURST,
      resetRatePerSec: e.H2_RESET_RATE,
    },
  };
}
