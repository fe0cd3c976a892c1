import type { Client } from "@connectrpc/connect";
import type { TenantRegistryService } from "../../gen/breakpilot/tenantregistry/v1/tenant_registry_service_pb.js";
import type { AnswerCache } from "./cache.js";

export type WatchOptions = {
  /** Only this tenant's changes (and answers); default: every tenant the credential may see. */
  readonly tenantId?: string;
  /** A stream silent for this long is presumed dead and resubscribed (the server beats every 15 s). Default 45 s. */
  readonly idleTimeoutMs?: number;
  /** Resubscription backoff: full jitter, doubling from this (default 100 ms) up to maxDelayMs (default 5 s). */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
};

export type Watcher = {
  /** Resolves once the cache is live (subscribed and flushed); at once if it is. */
  whenLive(): Promise<void>;
  close(): void;
};

/**
 * Keeps one WatchChanges stream open and feeds the cache: flush makes it live,
 * a change drops a tenant's answers, and a pause, an error, an end or a silent
 * stream takes it off until the next subscription has flushed.
 */
export function startWatching(
  client: Client<typeof TenantRegistryService>,
  cache: AnswerCache,
  options: WatchOptions = {},
  random: () => number = Math.random,
): Watcher {
  const closed = new AbortController();
  const idleTimeoutMs = options.idleTimeoutMs ?? 45_000;
  const base = options.baseDelayMs ?? 100;
  const cap = options.maxDelayMs ?? 5_000;
  let waiting: (() => void)[] = [];
  const becameLive = () => {
    const resolve = waiting;
    waiting = [];
    resolve.forEach((r) => r());
  };

  async function subscribeOnce(): Promise<boolean> {
    const stream = new AbortController();
    const stop = () => stream.abort();
    closed.signal.addEventListener("abort", stop, { once: true });
    let idle = setTimeout(stop, idleTimeoutMs);
    let flushed = false;
    try {
      for await (const res of client.watchChanges({ tenantId: options.tenantId ?? "" }, { signal: stream.signal, timeoutMs: 0 })) {
        clearTimeout(idle);
        idle = setTimeout(stop, idleTimeoutMs);
        switch (res.event.case) {
          case "flush":
            cache.flush();
            flushed = true;
            becameLive();
            break;
          case "change":
            cache.invalidate(res.event.value.tenantId);
            break;
          case "paused":
            cache.pause();
            break;
          default:
            break; // heartbeat, or an event this client does not know yet
        }
      }
    } catch {
      // Down, cut, refused or silent: all mean the same here; the loop resubscribes.
    } finally {
      clearTimeout(idle);
      closed.signal.removeEventListener("abort", stop);
      cache.pause();
    }
    return flushed;
  }

  void (async () => {
    let attempt = 0;
    while (!closed.signal.aborted) {
      attempt = (await subscribeOnce()) ? 0 : attempt + 1;
      if (closed.signal.aborted) break;
      await sleep(random() * Math.min(cap, base * 2 ** attempt), closed.signal);
    }
  })();

  return {
    whenLive: () => (cache.stats.live ? Promise.resolve() : new Promise<void>((resolve) => waiting.push(resolve))),
    close: () => closed.abort(),
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
