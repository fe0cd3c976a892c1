import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/health/v1/health_pb.js";

export type Readiness = {
  /** Whether this instance can serve: the database answers and its schema is current. */
  check(): Promise<{ ready: boolean; reason?: string }>;
};

const WATCH_INTERVAL_MS = 5_000;

/**
 * grpc.health.v1: "" (the whole server) and every served service share one
 * status, because every one of them needs the same database.
 */
export function registerGrpcHealth(
  router: ConnectRouter,
  readiness: Readiness,
  serviceNames: readonly string[],
  shutdown: AbortSignal,
): void {
  const known = new Set(["", ...serviceNames]);
  const status = async () => ((await readiness.check()).ready ? Status.SERVING : Status.NOT_SERVING);

  router.service(Health, {
    async check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return { status: await status() };
    },
    async list() {
      const current = await status();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: current }])) };
    },
    async *watch(req, ctx: HandlerContext) {
      // Per the protocol an unknown service is reported, not failed, and the call stays open.
      let last: Status | undefined;
      const stop = AbortSignal.any([ctx.signal, shutdown]);
      while (!stop.aborted) {
        const current = known.has(req.service) ? await status() : Status.SERVICE_UNKNOWN;
        if (current !== last) {
          last = current;
          yield { status: current };
        }
        await sleep(WATCH_INTERVAL_MS, stop);
      }
    },
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Readiness answered from one shared check at most every `ttlMs`: probes,
 * /readyz and every grpc Watch stream are open to anyone, and must not be able
 * to turn into a query storm against the database pool.
 */
export function cachedReadiness(readiness: Readiness, ttlMs: number, now: () => number = Date.now): Readiness {
  let last: { at: number; result: Promise<{ ready: boolean; reason?: string }> } | undefined;
  return {
    check() {
      const t = now();
      if (!last || t - last.at >= ttlMs) last = { at: t, result: readiness.check() };
      return last.result;
    },
  };
}
