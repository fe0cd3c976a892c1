import DataLoader from "dataloader";

/** A batch may hold this many keys: one statement's array parameter, read through the index in one go. */
export const MAX_BATCH_KEYS = 128;

/**
 * Lookups of one kind made in the same turn of the event loop, sent to
 * PostgreSQL as one statement. Under load the hot reads of many calls arrive
 * together, and a round trip per lookup (the writev that wakes a backend, the
 * read of its answer, pg's and Slonik's work per query) is most of what an
 * uncached call costs; one statement for all of them costs little more than
 * one of them.
 *
 * This is not a cache and not single-flight across time: a lookup only joins a
 * statement that has not been sent yet, so its answer is read after the lookup
 * was made, exactly as if it had gone alone (DataLoader's memo is off). Lookups
 * are gathered until the event loop has run every callback that was ready
 * (setImmediate), so an idle server waits no longer than that one turn.
 *
 * `fetch` gets each key once and answers those it found; the others get
 * `missing`; `sent` hears how many keys each statement carries (for metrics).
 * Keys must be values the statement can take (callers check them first): one
 * key PostgreSQL rejects would fail every lookup batched with it.
 */
export function batchLookup<K, V>(
  fetch: (keys: readonly K[]) => Promise<ReadonlyMap<K, V>>,
  missing: V,
  sent: (keys: number) => void = () => {},
): (key: K) => Promise<V> {
  const loader = new DataLoader<K, V>(
    async (keys) => {
      // Each key once: with the memo off, calls asking for one tenant together bring it many times,
      // and a statement of one distinct key is the cheap one-key statement (see findTenantRecords).
      const distinct = keys.length === 1 ? keys : [...new Set(keys)];
      sent(distinct.length);
      const found = await fetch(distinct);
      return keys.map((key) => (found.has(key) ? found.get(key)! : missing));
    },
    { cache: false, maxBatchSize: MAX_BATCH_KEYS, batchScheduleFn: (dispatch) => setImmediate(dispatch) },
  );
  return (key) => loader.load(key);
}
