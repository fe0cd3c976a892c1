import type { ChangeNotice } from "../cache/change-notice.js";
import type { HotReads } from "../cache/hot-reads.js";
import type { DatabasePool } from "../db/pool.js";
import type { Logger } from "../logger.js";
import type { OutcomeMetrics } from "../observability/metrics.js";

/** What every handler factory may use; passed in, never imported as a singleton. */
export type ServiceDeps = {
  readonly db: DatabasePool;
  /** Now, injectable so expiry and grace periods can be tested without sleeping. */
  readonly clock: () => Date;
  readonly appEnv: "dev" | "stage" | "prod";
  readonly logger: Logger;
  /** Aborted when the server begins to shut down: stop timers, flush what is pending. */
  readonly shutdownSignal: AbortSignal;
  /** Counts outcomes (key verifications, entitlement reasons, audit events) for /metrics. */
  readonly metrics: OutcomeMetrics;
  /** Told of every change this replica commits (see audited). */
  readonly changes: { committed(notice: ChangeNotice): void };
  /** The hot reads, answered from the cache when it can (one query at most when it cannot). */
  readonly hot: HotReads;
};
