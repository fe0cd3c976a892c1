import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Logger } from "../logger.js";
import { CHANGE_CHANNEL, decodeChangeNotice, type ChangeNotice } from "./change-notice.js";

export type ListenerState = "connected" | "disconnected";

/**
 * This replica's one LISTEN session. Subscribers see every change committed
 * through any replica (this one included), in commit order, while the state is
 * "connected". Notices published while it is "disconnected" are lost: anything
 * that relies on seeing every change (the cache, a watch stream) must treat a
 * "disconnected" as "I may have missed changes" and resynchronise once it is
 * "connected" again.
 */
export type ChangeListener = {
  /** `fn` gets each notice; `undefined` means a notice this version cannot read: treat as "anything may have changed". */
  subscribe(fn: (notice: ChangeNotice | undefined) => void): () => void;
  /** `fn` gets every state change (not the current state: read `connected` for that). */
  onStateChange(fn: (state: ListenerState) => void): () => void;
  readonly connected: boolean;
  /** Resolves once connected (at once if already), or rejects when `timeoutMs` passes first. */
  whenConnected(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
};

export type ChangeListenerOptions = {
  readonly connectionUri: string;
  readonly logger: Logger;
  /**
   * How often the session proves that notices reach it, and how long a proof may
   * take: a notice published by another session must arrive. A connection that
   * died silently (no FIN, no RST) cannot deliver notices and cannot tell us, and
   * behind a pooler in transaction mode LISTEN is accepted and nothing ever
   * arrives while queries keep working: the heartbeat bounds how long either goes
   * unnoticed to about heartbeatMs + heartbeatTimeoutMs.
   */
  readonly heartbeatMs?: number;
  readonly heartbeatTimeoutMs?: number;
  /** Reconnect backoff: doubling from min to max, with jitter. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
};

export const LISTENER_HEARTBEAT_MS = 250;
export const LISTENER_HEARTBEAT_TIMEOUT_MS = 500;

/**
 * Starts the listener on a dedicated pg.Client, not a pooled connection: a
 * pool would hand the session back and LISTEN would go with it. A second
 * dedicated client publishes the heartbeat's probes, so that they travel the
 * way other replicas' notices do, and so that a busy pool cannot hold them up.
 * Reconnects with backoff for as long as it is open.
 */
export function createChangeListener({
  connectionUri,
  logger,
  heartbeatMs = LISTENER_HEARTBEAT_MS,
  heartbeatTimeoutMs = LISTENER_HEARTBEAT_TIMEOUT_MS,
  backoffMinMs = 100,
  backoffMaxMs = 5_000,
}: ChangeListenerOptions): ChangeListener {
  const subscribers = new Set<(notice: ChangeNotice | undefined) => void>();
  const stateWatchers = new Set<(state: ListenerState) => void>();
  const closing = new AbortController();
  let connected = false;
  let current: readonly pg.Client[] = [];

  function setState(next: boolean) {
    if (next === connected) return;
    connected = next;
    const state: ListenerState = next ? "connected" : "disconnected";
    for (const fn of stateWatchers) {
      try {
        fn(state);
      } catch (error) {
        logger.error({ err: error }, "change listener state subscriber failed");
      }
    }
  }

  function deliver(payload: string | undefined) {
    const notice = decodeChangeNotice(payload);
    if (!notice) logger.warn("unreadable change notice: treating it as a change to everything");
    for (const fn of subscribers) {
      try {
        fn(notice);
      } catch (error) {
        logger.error({ err: error }, "change notice subscriber failed");
      }
    }
  }

  /**
   * One session: resolves when it is lost (error, end, failed heartbeat) or the
   * listener closes. Connected only once a probe has come back: before that,
   * nothing says notices arrive at all.
   */
  async function session(client: pg.Client, prober: pg.Client): Promise<void> {
    // Everything this session registers goes when it ends: a listener that retries
    // for good (behind a pooler that swallows notices) must not pile them up.
    const cleanups: (() => void)[] = [];
    try {
      const lost = new Promise<unknown>((resolve) => {
        for (const c of [client, prober]) {
          c.on("error", resolve);
          c.on("end", () => resolve(new Error("connection ended")));
        }
        const onClosing = () => resolve(undefined);
        closing.signal.addEventListener("abort", onClosing, { once: true });
        cleanups.push(() => closing.signal.removeEventListener("abort", onClosing));
      });
      // A channel of this session's own: its probes wake no other replica's subscribers.
      const probeChannel = `tenant_registry_probe_${randomBytes(8).toString("hex")}`;
      let probeArrived: ((payload: string | undefined) => void) | undefined;
      // A change notice proves the path as well as a probe does.
      let noticedAt = -Infinity;
      client.on("notification", (message) => {
        if (message.channel === CHANGE_CHANNEL) {
          noticedAt = performance.now();
          deliver(message.payload);
        } else if (message.channel === probeChannel) {
          probeArrived?.(message.payload);
        }
      });
      await Promise.all([client.connect(), prober.connect()]);
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
      await client.query(`LISTEN ${probeChannel}`);

      let sent = 0;
      let deadline: NodeJS.Timeout | undefined;
      cleanups.push(() => clearTimeout(deadline));
      const probe = (hint = "") =>
        new Promise<void>((resolve, reject) => {
          const payload = String(++sent);
          deadline = setTimeout(() => {
            probeArrived = undefined;
            reject(new Error(`a notice published by another session did not arrive within ${heartbeatTimeoutMs} ms${hint}`));
          }, heartbeatTimeoutMs);
          probeArrived = (arrived) => {
            if (arrived !== payload) return;
            clearTimeout(deadline);
            probeArrived = undefined;
            resolve();
          };
          prober.query("SELECT pg_notify($1, $2)", [probeChannel, payload]).catch((error: unknown) => {
            clearTimeout(deadline);
            reject(error);
          });
        });
      const first = await Promise.race([
        probe(": LISTEN needs a session of its own (DATABASE_URL must not go through a pooler in transaction mode)").then(() => "arrived" as const, (error: unknown) => error),
        lost.then((reason) => reason ?? new Error("the listener was closed")),
      ]);
      if (first !== "arrived") throw first;
      logger.info("change listener connected");
      setState(true);

      const heartbeatFailed = new Promise<unknown>((resolve) => {
        let inFlight = false;
        const timer = setInterval(() => {
          // Under write traffic notices keep arriving and no probe (a committed NOTIFY) is needed.
          // Only one in the last half interval counts: a connection that dies right after it
          // is still found out within heartbeatMs + heartbeatTimeoutMs, as without notices.
          if (inFlight || performance.now() - noticedAt < heartbeatMs / 2) return;
          inFlight = true;
          probe().then(() => {
            inFlight = false;
          }, resolve);
        }, heartbeatMs);
        timer.unref();
        cleanups.push(() => clearInterval(timer));
      });
      const reason = await Promise.race([lost, heartbeatFailed]);
      if (!closing.signal.aborted) logger.warn({ err: reason }, "change listener connection lost: reads bypass the cache until it is back");
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }

  const connect = (application_name: string) =>
    new pg.Client({ connectionString: connectionUri, keepAlive: true, application_name, connectionTimeoutMillis: 5_000 });

  async function run() {
    for (let attempt = 0; !closing.signal.aborted; attempt++) {
      const client = connect("tenant-registry change listener");
      const prober = connect("tenant-registry change probe");
      current = [client, prober];
      // Errors after the session is over (a late socket error) must not crash the process.
      for (const c of current) c.on("error", () => {});
      try {
        await session(client, prober);
        // A session that got as far as connecting restarts the backoff.
        if (connected) attempt = -1;
      } catch (error) {
        if (!closing.signal.aborted) logger.warn({ err: error }, "change listener could not connect; retrying");
      }
      setState(false);
      for (const c of current) void c.end().catch(() => {});
      if (closing.signal.aborted) break;
      const backoff = Math.min(backoffMaxMs, backoffMinMs * 2 ** Math.min(attempt, 16));
      await sleep(backoff * (0.5 + Math.random() / 2), undefined, { signal: closing.signal }).catch(() => {});
    }
  }
  const running = run();

  const listener: ChangeListener = {
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    onStateChange(fn) {
      stateWatchers.add(fn);
      return () => stateWatchers.delete(fn);
    },
    get connected() {
      return connected;
    },
    whenConnected(timeoutMs) {
      if (connected) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          stop();
          reject(new Error(`change listener not connected after ${timeoutMs} ms`));
        }, timeoutMs);
        const stop = listener.onStateChange((state) => {
          if (state !== "connected") return;
          clearTimeout(timer);
          stop();
          resolve();
        });
      });
    },
    async close() {
      closing.abort();
      await running;
      await Promise.all(current.map((c) => c.end().catch(() => {})));
    },
  };
  return listener;
}
