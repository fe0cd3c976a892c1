import { Writable } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createApp, type App, type AppDeps, type AuthSettings } from "../../src/app.js";
import { drainAndStop } from "../../src/cli/serve.js";
import type { CacheSettings } from "../../src/config.js";
import { loadMigrationPlan } from "../../src/db/migrations.js";
import type { DatabasePool } from "../../src/db/pool.js";
import type { AuditSigner } from "../../src/domain/audit-chain.js";
import { createLogger } from "../../src/logger.js";
import { DEFAULT_LIMITS, listen, type ServerLimits } from "../../src/transport/server.js";

export type TestServer = {
  readonly baseUrl: string;
  readonly port: number;
  /** Every log line the server wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The raw log text, for "this string appears nowhere" assertions. */
  logText(): string;
  /** The app behind the port: its change listener and cache statistics. */
  readonly app: App;
  close(): Promise<void>;
};

/** The real server on a real loopback port (port 0: the OS picks), logs captured. */
export type TestServerOptions = {
  readonly appEnv?: "dev" | "stage" | "prod";
  /** Default: AUTH_MODE=none, every call a platform admin. */
  readonly auth?: AuthSettings;
  readonly reflection?: boolean;
  /** A controllable clock, for expiry and grace periods without sleeping. */
  readonly clock?: () => Date;
  readonly cache?: CacheSettings;
  /** The audit checkpoint key; default: one for this server only. */
  readonly auditSigner?: AuditSigner;
  readonly audit?: { readonly checkpointIntervalMs: number; readonly retentionMs: number | undefined };
  /**
   * The listener's limits. Default: production's, except the connection caps:
   * every test client connects from 127.0.0.1 and many open a connection per call.
   */
  readonly limits?: ServerLimits;
  /** How long close() lets calls finish (default 2 s). */
  readonly graceMs?: number;
  readonly changeListener?: AppDeps["changeListener"];
};

const TEST_LIMITS: ServerLimits = { ...DEFAULT_LIMITS, maxConnections: 100_000, maxConnectionsPerAddress: 100_000 };

export async function startTestServer(db: DatabasePool, options: TestServerOptions = {}): Promise<TestServer> {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      raw.push(String(chunk));
      callback();
    },
  });
  const logger = createLogger("debug", sink);
  const { limits, graceMs: _graceMs, ...appOptions } = options;
  const app = createApp({ db, logger, migrationPlan: await loadMigrationPlan(), ...appOptions });
  // Tests start with the cache in use: it serves only once its change listener is connected.
  await app.changes.whenConnected(10_000);
  const server = await listen(app.handler, { host: "127.0.0.1", port: 0 }, logger, limits ?? TEST_LIMITS);
  return {
    baseUrl: `http://127.0.0.1:${server.port}`,
    port: server.port,
    get logs() {
      return raw.join("").split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    logText: () => raw.join(""),
    app,
    async close() {
      await drainAndStop(app, server, options.graceMs ?? 2_000, logger);
    },
  };
}

export type TransportName = "grpc" | "connect-json-h1" | "connect-binary-h2" | "grpc-web";
export const TRANSPORTS: readonly TransportName[] = ["grpc", "connect-json-h1", "connect-binary-h2", "grpc-web"];

/** A typed client of `service` over one of the protocols the port speaks. */
export function clientFor<T extends DescService>(service: T, baseUrl: string, transport: TransportName, headers?: Record<string, string>): Client<T> {
  const interceptors = headers
    ? [
        (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) =>
          async (req: Parameters<typeof next>[0]) => {
            for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
            return next(req);
          },
      ]
    : [];
  switch (transport) {
    case "grpc":
      return createClient(service, createGrpcTransport({ baseUrl, interceptors }));
    case "connect-json-h1":
      return createClient(service, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors }));
    case "connect-binary-h2":
      return createClient(service, createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, interceptors }));
    case "grpc-web":
      return createClient(service, createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }));
  }
}
