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
  /**
   * Invalidations remembered for loads still running (a load must not keep an answer
   * a notice made stale while it ran): only those since the oldest running load began.
   */
  readonly invalidationsHeld: number;
};

/**
 * A loaded answer: `value` (null: known to be missing, a negative entry), the
 * tenant it belongs to, and the entries it was derived from: an answer that
 * embeds a tenant (a slug's, a key's) goes whenever the tenant's entry is
 * invalidated, so a change notice names the tenant once, not every answer it is in.
 */
export type Loaded<V> = {
  readonly value: V | null;
  readonly tenantId: string | undefined;
  readonly dependsOn?: readonly CacheKey[];
};

/**
 * What a load may hand the cache besides its own answer. It returns the value
 * to embed in that answer: the one already cached under `key` when there is
 * one, else `loaded`'s. So 100k keys of one tenant share one cached tenant
 * instead of holding a copy each; a cached entry is as current as any hit.
 */
export type Put = <V extends object | string>(key: CacheKey, loaded: Loaded<V>) => V | null;

export type ReadCache = {
  /**
   * The cached answer for `key`, or `load`'s (which the cache then keeps,
   * unless a change notice came while it loaded). Concurrent misses of one
   * key share one load. `load` may `put` further entries it learned
   * (a key's row and its tenant from one joined query).
   */
  read<V extends object | string, A>(
    key: CacheKey,
    load: (arg: A, put: Put) => Promise<Loaded<V>>,
    arg: A,
    note?: CacheNote,
  ): Promise<V | null>;
  /** Drops what the notice names: this replica's own commits, before their notice arrives. */
  apply(notice: ChangeNotice): void;
  readonly stats: CacheStats;
  /** `fn` gets the lag of every notice the listener delivers: its publish time to its eviction, in ms. */
  onInvalidation(fn: (lagMs: number, notice: ChangeNotice) => void): () => void;
};

type Entry = Loaded<object | string>;
/** A load: the epoch it began in, and what it read with whether the cache kept it (no notice since concerns it). */
type Running = { readonly started: number; readonly pending: Promise<{ readonly entry: Entry; readonly fresh: boolean }> };

const ignore: Put = (_key, loaded) => loaded.value;

/**
 * The in-process read-through cache of the hot reads, kept honest by change
 * notices. Serving from it requires a connected listener: from the moment the
 * listener drops, every read goes to PostgreSQL (answers may be slower, never
 * stale); when it is back, everything is flushed before the cache is used again.
 *
 * A load that was running when a notice named its key (or an entry its answer
 * depends on, or its tenant as a whole), or when the cache was flushed, may
 * have read the database before that change committed: its answer is handed
 * to the callers that were waiting for it before the notice, but not kept, and
 * readers who joined it after that notice load anew.
 */
export function createReadCache(settings: CacheSettings, listener: ChangeListener | undefined, logger: Logger): ReadCache {
  let hits = 0;
  let misses = 0;
  let bypassed = 0;
  let evictions = 0;
  let invalidations = 0;
  // Every invalidation and flush is a new epoch; loads remember the one they started in.
  let epoch = 0;
  let flushedAt = 0;
  // How many loads are running, by the epoch they started in: in insertion order, which
  // is ascending (an epoch is added only while it is the current one), so the first is the oldest.
  const running = new Map<number, number>();
  // What was invalidated (keys, and "tenant:<id>" for whole tenants) at which epoch, in
  // ascending order of epoch, kept only while a load that started before it still runs.
  const invalidatedAt = new Map<string, number>();
  let usable = settings.enabled && listener?.connected === true;
  const lagWatchers = new Set<(lagMs: number, notice: ChangeNotice) => void>();
  // The running load of each key that misses.
  const inFlight = new Map<string, Running>();
  // Which keys hold each tenant's entries, for notices that name a whole tenant.
  const byTenant = new Map<string, Set<string>>();
  // Which entries were derived from an entry (kept while they are cached, whether it still is or not).
  const dependents = new Map<string, Set<string>>();

  const index = (map: Map<string, Set<string>>, owner: string, key: string) => {
    let keys = map.get(owner);
    if (!keys) map.set(owner, (keys = new Set()));
    keys.add(key);
  };
  const unindex = (map: Map<string, Set<string>>, owner: string, key: string) => {
    const keys = map.get(owner);
    keys?.delete(key);
    if (keys?.size === 0) map.delete(owner);
  };

  // Made once the change listener is connected (or at the first store), not before
  // the server is ready: lru-cache allocates all of its slots up front (33 ms beside
  // a 600 ms start at the default 200k entries), and with CACHE=off none are needed.
  let lru: LRUCache<string, Entry> | undefined;
  const createLru = () =>
    new LRUCache<string, Entry>({
      max: settings.maxEntries,
      ttl: settings.ttlMs,
      // Age is judged on read; nothing runs in the background.
      ttlAutopurge: false,
      updateAgeOnGet: false,
      dispose(entry, key, reason) {
        if (entry.tenantId !== undefined) unindex(byTenant, entry.tenantId, key);
        if (entry.dependsOn) for (const owner of entry.dependsOn) unindex(dependents, owner, key);
        if (reason === "evict" || reason === "expire") evictions++;
        else if (reason === "delete") invalidations++;
      },
    });

  function store(key: string, entry: Entry) {
    // Set first: replacing an entry disposes of the old one, which unindexes the key.
    (lru ??= createLru()).set(key, entry);
    if (entry.tenantId !== undefined) index(byTenant, entry.tenantId, key);
    if (entry.dependsOn) for (const owner of entry.dependsOn) index(dependents, owner, key);
  }

  function invalidated(name: string) {
    if (running.size === 0) return;
    // Moved to the end, so that the map stays in ascending order of epoch.
    invalidatedAt.delete(name);
    invalidatedAt.set(name, epoch);
  }

  function loadStarted(started: number) {
    running.set(started, (running.get(started) ?? 0) + 1);
  }

  function loadEnded(started: number) {
    const left = running.get(started)! - 1;
    if (left > 0) {
      running.set(started, left);
      return;
    }
    running.delete(started);
    // What was invalidated at or before the oldest running load began cannot fail
    // any running load's check (stillFresh): those entries go.
    const oldest = running.keys().next().value ?? Infinity;
    for (const [name, at] of invalidatedAt) {
      if (at > oldest) break;
      invalidatedAt.delete(name);
    }
  }

  /** Whether a load started at `started` may keep its answer for `key`: nothing it rests on changed since. */
  function stillFresh(started: number, key: string, entry: Entry): boolean {
    if (!usable || flushedAt > started) return false;
    if ((invalidatedAt.get(key) ?? 0) > started) return false;
    if (entry.tenantId !== undefined && (invalidatedAt.get(`tenant:${entry.tenantId}`) ?? 0) > started) return false;
    if (entry.dependsOn) for (const owner of entry.dependsOn) if ((invalidatedAt.get(owner) ?? 0) > started) return false;
    return true;
  }

  function drop(key: string) {
    invalidated(key);
    lru?.delete(key);
    const derived = dependents.get(key);
    if (derived) for (const k of [...derived]) lru?.delete(k);
  }

  function flush() {
    flushedAt = ++epoch;
    lru?.clear();
    byTenant.clear();
    dependents.clear();
  }

  function evict(notice: ChangeNotice) {
    epoch++;
    for (const key of notice.keys) drop(key);
    if (notice.tenantWide) {
      invalidated(`tenant:${notice.tenantId}`);
      for (const key of [...(byTenant.get(notice.tenantId) ?? [])]) drop(key);
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
      if (usable) {
        // Off the request path: the first miss need not allocate the slots.
        lru ??= createLru();
        logger.info("cache flushed and in use again");
      }
    });
  }

  /** The running load of `key`, or a new one; what it read, and whether a notice since it began concerns that. */
  function loadOnce<V extends object | string, A>(key: string, load: (arg: A, put: Put) => Promise<Loaded<V>>, arg: A): Running {
    const current = inFlight.get(key);
    if (current) return current;
    const started = epoch;
    const keep = (k: string, entry: Entry): boolean => {
      const fresh = stillFresh(started, k, entry);
      if (fresh) store(k, entry);
      return fresh;
    };
    const put: Put = (k, entry) => {
      const existing = lru?.get(k);
      if (existing !== undefined) return existing.value as typeof entry.value;
      keep(k, entry);
      return entry.value;
    };
    loadStarted(started);
    const pending = load(arg, put)
      .then((loaded) => ({ entry: loaded as Entry, fresh: keep(key, loaded) }))
      .finally(() => loadEnded(started));
    const mine: Running = { started, pending };
    inFlight.set(key, mine);
    void pending.then(
      () => inFlight.get(key) === mine && inFlight.delete(key),
      () => inFlight.get(key) === mine && inFlight.delete(key),
    );
    return mine;
  }

  /**
   * Concurrent misses of a key share one load. A load that began before a notice may
   * have read the database before that change committed, and which entries its answer
   * rests on (its tenant, what it depends on) is known only when it ends: a reader who
   * joined after a notice, handed an answer that such a notice concerns, loads anew.
   */
  async function loadShared<V extends object | string, A>(key: string, load: (arg: A, put: Put) => Promise<Loaded<V>>, arg: A): Promise<Entry> {
    const joinedAt = epoch;
    const joined = loadOnce(key, load, arg);
    const { entry, fresh } = await joined.pending;
    if (fresh || joinedAt === joined.started) return entry;
    return (await loadOnce(key, load, arg).pending).entry;
  }

  return {
    async read(key, load, arg, note) {
      if (!usable) {
        bypassed++;
        if (note) note.bypassed++;
        return (await load(arg, ignore)).value as never;
      }
      const cached = lru?.get(key);
      if (cached !== undefined) {
        hits++;
        if (note) note.hits++;
        return cached.value as never;
      }
      misses++;
      if (note) note.misses++;
      return (await loadShared(key, load, arg)).value as never;
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
        return lru?.size ?? 0;
      },
      get listenerConnected() {
        return listener?.connected ?? false;
      },
      get invalidationsHeld() {
        return invalidatedAt.size;
      },
    },
    onInvalidation(fn) {
      lagWatchers.add(fn);
      return () => lagWatchers.delete(fn);
    },
  };
}
