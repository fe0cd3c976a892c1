import { recordApiKeysUsed } from "../db/queries/api-keys.js";
import type { ServiceDeps } from "./deps.js";

/**
 * last_used_at, kept roughly and off the request path: verification only
 * notes the key in memory; a timer writes all noted keys with one statement
 * every few seconds. A key is written at most once a minute: touch() skips keys
 * whose stored last_used_at is under a minute old or whose write is pending,
 * and the UPDATE itself skips rows written less than a minute before.
 */
export type ApiKeyUsageTracker = {
  /** Notes a use of the key at `now`; `lastUsedAt` is the value the verification lookup read. */
  touch(keyId: string, lastUsedAt: Date | null, now: Date): void;
  /** Writes every noted use now. Never rejects: failures are logged and the uses dropped. */
  flush(): Promise<void>;
  /** Keys noted and not yet written (including a write in progress). */
  readonly pending: number;
};

export const USAGE_RESOLUTION_MS = 60_000;
export const USAGE_FLUSH_INTERVAL_MS = 5_000;
// A bound on memory if the database stays away: beyond it, uses are not noted.
const MAX_PENDING = 100_000;

export function createApiKeyUsageTracker(
  { db, logger, shutdownSignal }: Pick<ServiceDeps, "db" | "logger" | "shutdownSignal">,
  { flushIntervalMs = USAGE_FLUSH_INTERVAL_MS }: { flushIntervalMs?: number } = {},
): ApiKeyUsageTracker {
  let noted = new Map<string, Date>();
  const writing = new Set<string>();

  async function flush(): Promise<void> {
    if (noted.size === 0) return;
    const batch = noted;
    noted = new Map();
    for (const id of batch.keys()) writing.add(id);
    try {
      await recordApiKeysUsed(db, [...batch].map(([id, at]) => ({ id, at })));
    } catch (error) {
      logger.warn({ err: error, keys: batch.size }, "could not record api key usage (last_used_at); dropped");
    } finally {
      for (const id of batch.keys()) writing.delete(id);
    }
  }

  const timer = setInterval(() => void flush(), flushIntervalMs);
  // Never keeps the process alive on its own.
  timer.unref();
  const stop = () => {
    clearInterval(timer);
    void flush();
  };
  if (shutdownSignal.aborted) stop();
  else shutdownSignal.addEventListener("abort", stop, { once: true });

  return {
    touch(keyId, lastUsedAt, now) {
      if (lastUsedAt !== null && now.getTime() - lastUsedAt.getTime() < USAGE_RESOLUTION_MS) return;
      if (noted.has(keyId) || writing.has(keyId) || noted.size >= MAX_PENDING) return;
      noted.set(keyId, now);
    },
    flush,
    get pending() {
      return noted.size + writing.size;
    },
  };
}
