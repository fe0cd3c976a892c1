/**
 * tenant-registry/client: a typed client of TenantRegistryService for sibling
 * services. Imports nothing of the server (no database driver): only the
 * generated stubs and Connect.
 */
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import { createAnswerCache, type ClientCacheOptions, type ClientCacheStats } from "./cache.js";
import { createWideWindowSessionManager } from "./http2-windows.js";
import { createRetryInterceptor, type RetryOptions } from "./retry.js";
import { startWatching, type WatchOptions } from "./watch.js";

export type TenantRegistryClientOptions = {
  /** e.g. "http://tenant-registry:8090" (plaintext h2c or HTTP/1.1) or an https:// URL. */
  readonly baseUrl: string;
  /** gRPC (HTTP/2), or Connect (binary; HTTP/1.1 unless httpVersion says "2"). Default "grpc". */
  readonly protocol?: "grpc" | "connect";
  /** For protocol "connect" only: default "1.1". */
  readonly httpVersion?: "1.1" | "2";
  /** A bearer credential sent on every call: an access token or a tenant API key. */
  readonly token?: string;
  /** Asked before every attempt, so it can refresh (e.g. a client-credentials grant with its own cache). */
  readonly tokenProvider?: () => string | Promise<string>;
  /** The deadline of a unary call that sets none itself (default 5 s; retries happen within it); server streams have none by default. */
  readonly timeoutMs?: number;
  /** Retries of safe calls on Unavailable: a count, or the backoff in detail (default 2 retries). */
  readonly retries?: number | RetryOptions;
  /** Run outermost-first, around the cache, retries and authentication (e.g. tracing). */
  readonly interceptors?: readonly Interceptor[];
  /**
   * Opt-in: answer repeated GetTenant, GetTenantBySlug, CheckEntitlement and VerifyApiKey
   * calls from memory, kept current by a WatchChanges stream (see the README). One cache
   * per client, so one credential's view: do not share a client between principals.
   */
  readonly cache?: boolean | (ClientCacheOptions & WatchOptions);
};

export type ClientCache = {
  readonly stats: ClientCacheStats;
  /** Resolves once the watch stream is up and has flushed (at once if it is). */
  whenLive(): Promise<void>;
};

export type TenantRegistryClient = Client<typeof TenantRegistryService> & {
  /** The answer cache, when `cache` was asked for. */
  readonly cache: ClientCache | undefined;
  /** Ends the cache's watch stream; without a cache there is nothing to end. */
  close(): void;
};

export function createTenantRegistryClient(options: TenantRegistryClientOptions): TenantRegistryClient {
  if (options.token !== undefined && options.tokenProvider !== undefined) {
    throw new TypeError("createTenantRegistryClient: give token or tokenProvider, not both");
  }
  const retries: RetryOptions = typeof options.retries === "number" ? { max: options.retries } : (options.retries ?? {});
  const cacheOptions = options.cache === true ? {} : options.cache || undefined;
  const cache = cacheOptions ? createAnswerCache(cacheOptions) : undefined;
  const interceptors = [
    ...(options.interceptors ?? []),
    // Outside the retries: a hit costs no attempt; a miss is retried like any call.
    ...(cache ? [cache.interceptor] : []),
    createRetryInterceptor(retries),
    ...(options.token !== undefined || options.tokenProvider ? [createBearerInterceptor(options)] : []),
  ];
  const transport = transportFactory(options, interceptors);
  const client = createClient(TenantRegistryService, transport(options.timeoutMs ?? 5_000));
  // A default deadline suits a call that answers once. A server stream runs as long as its data
  // (an export of a million events) or for good (a watch): it has none unless the caller gives one.
  const streams = createClient(TenantRegistryService, transport(undefined));
  for (const method of TenantRegistryService.methods) {
    if (method.methodKind === "server_streaming") Object.assign(client, { [method.localName]: streams[method.localName as keyof typeof streams] });
  }
  const watcher = cache && cacheOptions ? startWatching(client, cache, cacheOptions) : undefined;
  return Object.assign(client, {
    cache: cache && watcher ? { get stats() { return cache.stats; }, whenLive: () => watcher.whenLive() } : undefined,
    close: () => watcher?.close(),
  });
}

/**
 * The client's transports, by default deadline. Over HTTP/2 they share one
 * connection, whose flow-control windows are wide enough for a long stream
 * (see http2-windows.ts).
 */
function transportFactory(options: TenantRegistryClientOptions, interceptors: Interceptor[]): (defaultTimeoutMs: number | undefined) => Transport {
  const grpc = (options.protocol ?? "grpc") === "grpc";
  const sessionManager = grpc || options.httpVersion === "2" ? createWideWindowSessionManager(options.baseUrl) : undefined;
  return (defaultTimeoutMs) => {
    const common = { baseUrl: options.baseUrl, interceptors, ...(defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs }) };
    if (grpc) return createGrpcTransport({ ...common, sessionManager });
    return sessionManager
      ? createConnectTransport({ ...common, httpVersion: "2", sessionManager, useBinaryFormat: true })
      : createConnectTransport({ ...common, httpVersion: "1.1", useBinaryFormat: true });
  };
}

/** Innermost, so every retry asks the provider again and a refreshed token is used. */
function createBearerInterceptor(options: Pick<TenantRegistryClientOptions, "token" | "tokenProvider">): Interceptor {
  const { token, tokenProvider } = options;
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${tokenProvider ? await tokenProvider() : token}`);
    return next(req);
  };
}

export { createRetryInterceptor, isSafeToRetry, type RetryOptions } from "./retry.js";
export type { ClientCacheOptions, ClientCacheStats } from "./cache.js";
export type { WatchOptions } from "./watch.js";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/tenant_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/project_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/entitlement_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/idp_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/api_key_pb.js";
export * from "../../gen/breakpilot/tenantregistry/v1/audit_pb.js";
