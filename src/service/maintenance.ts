import { deleteIdempotencyKeysBefore } from "../db/queries/idempotency.js";
import type { ServiceDeps } from "./deps.js";

/** How long a create's idempotency key is remembered: a retry within this window replays. */
export const IDEMPOTENCY_KEY_RETENTION_MS = 24 * 60 * 60 * 1000;
const INTERVAL_MS = 60 * 60 * 1000;

/**
 * Housekeeping off the request path: hourly, forget idempotency keys past
 * their retention so the table does not grow without bound. Failures are
 * logged and retried next hour; stops on shutdown.
 */
export function startMaintenance(
  { db, clock, logger, shutdownSignal }: Pick<ServiceDeps, "db" | "clock" | "logger" | "shutdownSignal" | "appEnv">,
  intervalMs = INTERVAL_MS,
): void {
  const run = async () => {
    try {
      const removed = await deleteIdempotencyKeysBefore(db, new Date(clock().getTime() - IDEMPOTENCY_KEY_RETENTION_MS));
      if (removed > 0) logger.info({ removed }, "forgot expired idempotency keys");
    } catch (error) {
      logger.warn({ err: error }, "idempotency key cleanup failed; will retry");
    }
  };
  const timer = setInterval(() => void run(), intervalMs);
  timer.unref();
  shutdownSignal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
