import { createHash } from "node:crypto";
import { clone, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Interceptor, UnaryResponse } from "@connectrpc/connect";

export type ClientCacheOptions = {
  /** At most this many answers are kept; the least recently used go first (default 10,000). */
  readonly maxEntries?: number;
  /** No answer is served older than this (default 30 s), whatever the change feed says. */
  readonly maxAgeMs?: number;
  /**
   * VerifyApiKey answers are served no older than this (default 1 s): a rotated-out
   * secret's grace period and a product grant's expiry end without any write to watch.
   */
  readonly verifyMaxAgeMs?: number;
};

export type ClientCacheStats = {
  /** Answers served from the cache without a call. */
  readonly hits: number;
  /** Cacheable calls that went to the server (including every call while not live). */
  readonly misses: number;
  readonly entries: number;
  /** Whether the watch stream is up and flushed: only then is anything answered from the cache. */
  readonly live: boolean;
  /** Tenants whose answers a change notice dropped. */
  readonly invalidations: number;
  /** Times everything was dropped: each (re)subscription, server listener reconnect, or pause. */
  readonly flushes: number;
};

type Entry = { readonly message: Message; readonly tenantId: string; readonly expiresAt: number };

/** Where a cacheable answer says whose it is, and until when it may stand unwatched. */
type Rule = {
  readonly tenantOf: (answer: Message) => string | undefined;
  readonly expiryOf?: (answer: Message) => Timestamp | undefined;
  readonly verify?: boolean;
};

type AnyAnswer = { tenant?: { id: string }; tenantId?: string; expiresAt?: Timestamp };
const byTenant = (m: Message) => (m as unknown as AnyAnswer).tenant?.id || undefined;

const RULES: Readonly<Record<string, Rule>> = {
  GetTenant: { tenantOf: byTenant },
  GetTenantBySlug: { tenantOf: byTenant },
  // A check of an unknown tenant names none: it is not cached (a create would not invalidate it).
  CheckEntitlement: { tenantOf: (m) => (m as unknown as AnyAnswer).tenantId || undefined, expiryOf: (m) => (m as unknown as AnyAnswer).expiresAt },
  // An unknown key names no tenant: not cached, so guessing keys always reaches the server.
  VerifyApiKey: { tenantOf: byTenant, expiryOf: (m) => (m as unknown as AnyAnswer).expiresAt, verify: true },
};

export type AnswerCache = {
  readonly stats: ClientCacheStats;
  /** The watch stream is up and has flushed: drop everything, then serve. */
  flush(): void;
  /** The watch stream is down or paused: drop everything and serve nothing until the next flush. */
  pause(): void;
  /** Something of this tenant changed: drop its answers. */
  invalidate(tenantId: string): void;
  /** Answers cacheable calls from the cache while live, and keeps what the server answers. */
  readonly interceptor: Interceptor;
};

/**
 * The client's opt-in answer cache. Correctness rests on three rules: nothing is
 * served unless the change feed is live; a change drops the tenant's answers; and
 * an answer whose call began before a change (or a flush) of its tenant is not
 * kept, since it may predate that change.
 */
export function createAnswerCache(options: ClientCacheOptions = {}, now: () => number = Date.now): AnswerCache {
  const maxEntries = options.maxEntries ?? 10_000;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  const verifyMaxAgeMs = Math.min(options.verifyMaxAgeMs ?? 1_000, maxAgeMs);
  const entries = new Map<string, Entry>();
  const keysOfTenant = new Map<string, Set<string>>();
  // Every change bumps `seq`; a tenant remembers the seq of its last change, and a
  // flush or pause bumps `epoch`, so a call can tell whether anything overtook it.
  let seq = 0;
  let epoch = 0;
  const lastChange = new Map<string, number>();
  let live = false;
  const stats = { hits: 0, misses: 0, invalidations: 0, flushes: 0 };

  const forget = (key: string) => {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    const keys = keysOfTenant.get(entry.tenantId);
    keys?.delete(key);
    if (keys?.size === 0) keysOfTenant.delete(entry.tenantId);
  };
  const dropAll = () => {
    epoch += 1;
    stats.flushes += 1;
    entries.clear();
    keysOfTenant.clear();
    lastChange.clear();
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const rule = RULES[req.method.name];
    if (!rule || req.stream || req.service.typeName !== req.method.parent.typeName) return next(req);
    const key = cacheKey(req.method.name, req.method.input, req.message);
    if (live) {
      const entry = entries.get(key);
      if (entry && entry.expiresAt > now()) {
        // Most recently used last: Map order is the eviction order.
        entries.delete(key);
        entries.set(key, entry);
        stats.hits += 1;
        return {
          stream: false,
          service: req.service,
          method: req.method,
          header: new Headers(),
          trailer: new Headers(),
          message: clone(req.method.output, entry.message),
        } as UnaryResponse<DescMessage, DescMessage>;
      }
      if (entry) forget(key);
    }
    stats.misses += 1;
    const began = { seq, epoch };
    const res = await next(req);
    if (res.stream || !live || began.epoch !== epoch) return res;
    const tenantId = rule.tenantOf(res.message);
    if (!tenantId || (lastChange.get(tenantId) ?? 0) > began.seq) return res;
    const t = now();
    const expiry = rule.expiryOf?.(res.message);
    const expiresAt = Math.min(t + (rule.verify ? verifyMaxAgeMs : maxAgeMs), expiry ? timestampDate(expiry).getTime() : Infinity);
    if (expiresAt <= t) return res;
    forget(key);
    entries.set(key, { message: clone(req.method.output, res.message), tenantId, expiresAt });
    let keys = keysOfTenant.get(tenantId);
    if (!keys) keysOfTenant.set(tenantId, (keys = new Set()));
    keys.add(key);
    if (entries.size > maxEntries) forget(entries.keys().next().value!);
    return res;
  };

  return {
    get stats() {
      return { ...stats, entries: entries.size, live };
    },
    flush() {
      dropAll();
      live = true;
    },
    pause() {
      dropAll();
      live = false;
    },
    invalidate(tenantId) {
      seq += 1;
      stats.invalidations += 1;
      // Bounded: past this many tenants changed since the last flush, flushing is cheaper.
      if (lastChange.size >= 100_000) {
        const wasLive = live;
        dropAll();
        live = wasLive;
        return;
      }
      lastChange.set(tenantId, seq);
      for (const key of keysOfTenant.get(tenantId) ?? []) entries.delete(key);
      keysOfTenant.delete(tenantId);
    },
    interceptor,
  };
}

/** The request, hashed: the key never holds an API key's secret in the clear. */
function cacheKey(method: string, input: DescMessage, message: Message): string {
  return createHash("sha256").update(method).update("\0").update(toBinary(input, message)).digest("base64");
}
