import { LRUCache } from "lru-cache";
import type { CacheSettings } from "../config.js";
import type { Logger } from "../logger.js";
import type { CacheKey, ChangeNotice } from "./change-notice.js";
import type { ChangeListener } from "./change-listener.js";

/**
 * What one call's cached reads did, for tracing (cache.hit as a span
 * attribute): whoever wants it puts a note in the call's context
 * (cacheNoteKey) and the reads count into it. A call may read several entries
 * (VerifyApiKey: the key, then its tenant); it was answered from the cache
 * when misses and bypassed are both 0 and hits is not.
 */
export type CacheNote = { hits: number; misses: number; bypassed: number };

/**
 * The cache's figures as plain values, for metrics to read when scraped.
 * Counters only grow; `entries` and `listenerConnected` are current values.
 */
export type CacheStats = {
  readonly hits: number;
  readonly misses: number;
  /** Reads that went to PostgreSQL because the cache was off or the listener down. */
  readonly bypassed: number;
  /** Entries dropped for room (LRU) or age (CACHE_TTL). */
  readonly evictions: number;
  /** Entries dropped because a change notice named them, or by a flush. */
  readonly invalidations: number;
  readonly entries: number;
  readonly listenerConnected: boolean;
};

/** A loaded answer: `value` (null: known to be missing, a negative entry) and the tenant it belongs to. */
export type Loaded<V> = { readonly value: V | null; readonly tenantId: string | undefined };

export type ReadCache = {
  /**
   * The cached answer for `key`, or `load`'s (which the cache then keeps,
   * unless a change notice came while it loaded). Concurrent misses of one
   * key share one load. `load` may `put` further entries it learned
   * (a key's row and its tenant from one joined query).
   */
  read<V extends object | string>(
    key: CacheKey,
    load: (put: (key: CacheKey, loaded: Loaded<object | string>) => void) => Promise<Loaded<V>>,
    note?: CacheNote,
  ): Promise<V | null>;
  /** Drops what the notice names: this replica's own commits, before their notice arrives. */
  apply(notice: ChangeNotice): void;
  readonly stats: CacheStats;
  /** `fn` gets the lag of every notice the listener delivers: its publish time to its eviction, in ms. */
  onInvalidation(fn: (lagMs: number, notice: ChangeNotice) => void): () => void;
};

type Entry = { readonly value: object | string | null; readonly tenantId: string | undefined };

/**
 * The in-process read-through cache of the hot reads, kept honest by change
 * notices. Serving from it requires a connected listener: from the moment the
 * listener drops, every read goes to PostgreSQL (answers may be slower, never
 * stale); when it is back, everything is flushed before the cache is used again.
 *
 * Every notice (and every flush) also starts a new epoch: a load begun in an
 * earlier epoch may have read the database before the change committed, so
 * its answer is handed to its callers but not kept.
 */
export function createReadCache(settings: CacheSettings, listener: ChangeListener | undefined, logger: Logger): ReadCache {
  let hits = 0;
  let misses = 0;
  let bypassed = 0;
  let evictions = 0;
  let invalidations = 0;
  let epoch = 0;
  let usable = settings.enabled && listener?.connected === true;
  const lagWatchers = new Set<(lagMs: number, notice: ChangeNotice) => void>();
  const inFlight = new Map<string, Promise<Entry>>();
  // Which keys hold each tenant's entries, for notices that name a whole tenant.
  const byTenant = new Map<string, Set<string>>();

  const lru = new LRUCache<string, Entry>({
    max: settings.maxEntries,
    ttl: settings.ttlMs,
    // Age is judged on read; nothing runs in the background.
    ttlAutopurge: false,
    updateAgeOnGet: false,
    dispose(entry, key, reason) {
      if (entry.tenantId !== undefined) {
        const keys = byTenant.get(entry.tenantId);
        keys?.delete(key);
        if (keys?.size === 0) byTenant.delete(entry.tenantId);
      }
      if (reason === "evict" || reason === "expire") evictions++;
      else if (reason === "delete") invalidations++;
    },
  });

  function store(key: string, entry: Entry) {
    lru.set(key, entry);
    if (entry.tenantId === undefined) return;
    let keys = byTenant.get(entry.tenantId);
    if (!keys) byTenant.set(entry.tenantId, (keys = new Set()));
    keys.add(key);
  }

  function flush() {
    epoch++;
    inFlight.clear();
    byTenant.clear();
    lru.clear();
  }

  function evict(notice: ChangeNotice) {
    epoch++;
    for (const key of notice.keys) {
      inFlight.delete(key);
      lru.delete(key);
    }
    if (notice.tenantWide) {
      // Its entries' loads are not known by tenant until they finish: drop them all.
      inFlight.clear();
      for (const key of [...(byTenant.get(notice.tenantId) ?? [])]) lru.delete(key);
    }
  }

  function delivered(notice: ChangeNotice | undefined) {
    if (!notice) {
      flush();
      return;
    }
    evict(notice);
    const lag = Date.now() - notice.at;
    for (const fn of lagWatchers) fn(lag, notice);
  }

  if (settings.enabled && listener) {
    listener.subscribe(delivered);
    listener.onStateChange((state) => {
      // Flushed on both edges: down, nothing cached may be trusted; back, nothing
      // cached before (or loaded during) the outage may be trusted either.
      flush();
      usable = state === "connected";
      if (usable) logger.info("cache flushed and in use again");
    });
  }

  return {
    async read(key, load, note) {
      if (!usable) {
        bypassed++;
        if (note) note.bypassed++;
        return (await load(() => {})).value;
      }
      const cached = lru.get(key);
      if (cached !== undefined) {
        hits++;
        if (note) note.hits++;
        return cached.value as never;
      }
      misses++;
      if (note) note.misses++;
      let pending = inFlight.get(key);
      if (!pending) {
        const started = epoch;
        const keep = (k: string, entry: Entry) => {
          if (usable && epoch === started) store(k, entry);
        };
        pending = load(keep).then((loaded) => {
          keep(key, loaded);
          return loaded;
        });
        const mine = pending;
        inFlight.set(key, mine);
        void mine.then(
          () => inFlight.get(key) === mine && inFlight.delete(key),
          () => inFlight.get(key) === mine && inFlight.delete(key),
        );
      }
      return (await pending).value as never;
    },
    apply: evict,
    stats: {
      get hits() {
        return hits;
      },
      get misses() {
        return misses;
      },
      get bypassed() {
        return bypassed;
      },
      get evictions() {
        return evictions;
      },
      get invalidations() {
        return invalidations;
      },
      get entries() {
        return lru.size;
      },
      get listenerConnected() {
        return listener?.connected ?? false;
      },
    },
    onInvalidation(fn) {
      lagWatchers.add(fn);
      return () => lagWatchers.delete(fn);
    },
  };
}
